"""The lean real-time reads (usage/reads.py) answer exactly what the ORM computation they
replaced answered, on generated cards: bundles expired, active, not yet started, drained and
long gone; pay-per-use credit above, at and below the tariff; tariffs past and future;
suspended and retired cards; cards known only by IMEI or serial; someone else's card. And
each is one SQL statement."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simtopup.accounts.models import AppToken, Customer
from simtopup.accounts.tokens import authenticate_token, hash_token, issue_token, revoke_token
from simtopup.api.serializers import rfc3339
from simtopup.catalog.models import PaygTariff
from simtopup.devices.inventory import create_device
from simtopup.devices.models import RECHARGEABLE, Device, DeviceStatus
from simtopup.ledger.models import BYTES, Account, AccountKind
from simtopup.usage.models import Bundle
from simtopup.usage.reads import (
    EXPIRED_BUNDLES_SHOWN,
    authorization_by_iccid,
    authorization_of,
    device_balance,
    device_balance_by_token,
    remaining_by_device,
)
from tests.customer_support import app_client, login_customer
from tests.support import GB, MB, Actors, iccid, imei, network_get

serial_numbers = itertools.count(1)


# --- the ORM computations the lean reads replaced (the reference) -------------------------


def orm_remaining(device: Device, now: Any) -> int:
    ids = Bundle.objects.filter(device=device, starts_at__lte=now, expires_at__gt=now).values(
        "account_id"
    )
    return sum(Account.objects.filter(id__in=ids, balance__gt=0).values_list("balance", flat=True))


def orm_status(bundle: Bundle, now: Any) -> str:
    if bundle.expires_at <= now:
        return "expired"
    if bundle.starts_at > now:
        return "upcoming"
    if bundle.account.balance <= 0:
        return "used_up"
    return "active"


def orm_balance(device: Device, now: Any) -> dict[str, Any]:
    bundles = (
        Bundle.objects.filter(device=device, expires_at__gt=now - EXPIRED_BUNDLES_SHOWN)
        .select_related("account", "plan")
        .order_by("expires_at", "pk")
    )
    items = []
    for b in bundles:
        status = orm_status(b, now)
        items.append(
            (
                b.plan.code,
                b.granted_bytes,
                max(b.account.balance, 0) if status != "expired" else 0,
                rfc3339(b.starts_at),
                rfc3339(b.expires_at),
                status,
            )
        )
    credit = Account.objects.get(pk=device.credit_account_id)
    return {
        "device": device.masked,
        "remaining_bytes": orm_remaining(device, now),
        "bundles": items,
        "credit": (credit.balance, credit.unit),
        "payg": device.payg,
    }


def orm_authorization(device: Device, now: Any) -> dict[str, object]:
    remaining = orm_remaining(device, now)
    if device.status not in RECHARGEABLE:
        return {"allowed": False, "remaining_bytes": remaining, "reason": "device_not_rechargeable"}
    if remaining > 0:
        return {"allowed": True, "remaining_bytes": remaining, "reason": "bundle"}
    if device.payg:
        credit = Account.objects.values_list("balance", flat=True).get(pk=device.credit_account_id)
        row = PaygTariff.objects.filter(effective_from__lte=now).first()
        tariff = row.price_per_mb if row else django_settings.DEFAULT_PAYG_TARIFF_PER_MB
        if credit >= tariff:
            return {"allowed": True, "remaining_bytes": 0, "reason": "payg_credit"}
        return {"allowed": False, "remaining_bytes": 0, "reason": "insufficient_balance"}
    return {"allowed": False, "remaining_bytes": 0, "reason": "no_data"}


def lean_balance(customer: Customer, device: Device, now: Any) -> dict[str, Any] | None:
    read = device_balance(customer.pk, device.pk, now)
    if read is None:
        return None
    return {
        "device": read.device,
        "remaining_bytes": read.remaining_bytes,
        "bundles": [
            (
                b.plan,
                b.granted_bytes,
                b.remaining_bytes,
                rfc3339(b.starts_at),
                rfc3339(b.expires_at),
                b.status,
            )
            for b in read.bundles
        ],
        "credit": (read.credit, read.currency),
        "payg": read.payg,
    }


# --- generated cards ----------------------------------------------------------------------

HOUR = 3600
# Bundle windows relative to "now", in seconds: the edges (starts or ends exactly now,
# expired exactly 30 days ago) are drawn often.
EDGES = [0, 1, -1, -30 * 24 * HOUR, -30 * 24 * HOUR + 1, -30 * 24 * HOUR - 1]
offsets = st.one_of(st.sampled_from(EDGES), st.integers(-60 * 24 * HOUR, 60 * 24 * HOUR))
bundle_spec = st.tuples(
    offsets,  # starts_at - now
    st.integers(1, 40 * 24 * HOUR),  # length
    st.one_of(st.just(0), st.integers(1, 3 * GB)),  # bytes left (0: drained)
    st.sampled_from(["day-1g", "month-20g"]),
)
card_spec = st.fixed_dictionaries(
    {
        "identifier": st.sampled_from(["iccid", "imei", "serial"]),
        "status": st.sampled_from(list(DeviceStatus)),
        "payg": st.booleans(),
        "credit": st.one_of(st.sampled_from([0, 9, 10, 11]), st.integers(0, 100000)),
        "bundles": st.lists(bundle_spec, max_size=6),
        # tariffs: (effective_from - now in seconds, price); none → the default tariff
        "tariffs": st.lists(
            st.tuples(st.sampled_from([0, 1, -1, -HOUR, HOUR]), st.integers(1, 20)),
            max_size=3,
        ),
        "mine": st.booleans(),
    }
)


def make_card(spec: dict[str, Any], plans: dict[str, Any], owner: Customer, now: Any) -> Device:
    return card_from_spec(
        spec, plans, owner if spec["mine"] else None, now, label="reads", base=5000, unit=1
    )


def card_from_spec(
    spec: dict[str, Any],
    plans: dict[str, Any],
    holder: Customer | None,
    now: Any,
    *,
    label: str,
    base: int,
    unit: int,
) -> Device:
    """A card as ``spec`` draws it (also tests/test_hot_reads.py's): identifier, status,
    pay-per-use, credit, bundles (windows in ``unit`` seconds from ``now``) and tariffs."""
    n = next(serial_numbers)
    identifiers = {
        "iccid": {"iccid": iccid(base + n)},
        "imei": {"imei": imei(base + n)},
        "serial": {"serial": f"{label[:2].upper()}-{base + n:05d}"},
    }[spec["identifier"]]
    device = create_device(kind="sim", **identifiers)
    Device.objects.filter(pk=device.pk).update(
        status=spec["status"], payg=spec["payg"], owner=holder
    )
    Account.objects.filter(pk=device.credit_account_id).update(balance=spec["credit"])
    for k, (start, length, left, plan) in enumerate(spec["bundles"]):
        account = Account.objects.create(
            code=f"bundle:{label}:{n}:{k}", kind=AccountKind.BUNDLE, unit=BYTES, balance=left
        )
        starts = now + timedelta(seconds=start * unit)
        Bundle.objects.create(
            device=device,
            plan=plans[plan],
            account=account,
            granted_bytes=max(left, GB),
            starts_at=starts,
            expires_at=starts + timedelta(seconds=length * unit),
        )
    PaygTariff.objects.all().delete()
    for offset, price in spec["tariffs"]:
        PaygTariff.objects.create(
            currency="CNY", price_per_mb=price, effective_from=now + timedelta(seconds=offset)
        )
    device.refresh_from_db()
    return device


@given(spec=card_spec)
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_the_lean_reads_answer_what_the_orm_answered(actors: Actors, spec: dict[str, Any]) -> None:
    owner, _created = Customer.objects.get_or_create(phone="+8613800138000")
    now = timezone.now()
    device = make_card(spec, actors.plans, owner, now)

    expected = orm_balance(device, now) if spec["mine"] else None
    assert lean_balance(owner, device, now) == expected
    raw, _row = issue_token(owner)
    by_token = device_balance_by_token(hash_token(raw), device.pk, now)
    assert by_token == (
        None if expected is None else (device_balance(owner.pk, device.pk, now), None)
    )
    assert authorization_of(device.pk, now) == orm_authorization(device, now)
    other = actors.device.pk  # no bundles
    assert remaining_by_device([device.pk, other], now) == {
        device.pk: orm_remaining(device, now),
        other: 0,
    }
    if device.iccid:
        assert authorization_by_iccid(device.iccid, now) == orm_authorization(device, now)


def test_a_card_that_is_not_mine_or_not_there_reads_as_none(actors: Actors) -> None:
    alice, _ = Customer.objects.get_or_create(phone="+8613800138000")
    bob, _ = Customer.objects.get_or_create(phone="+8613900139000")
    device = actors.device
    Device.objects.filter(pk=device.pk).update(owner=alice)
    assert device_balance(alice.pk, device.pk) is not None
    assert device_balance(bob.pk, device.pk) is None
    assert device_balance(alice.pk, 10**9) is None
    assert authorization_by_iccid(iccid(999)) is None
    assert authorization_of(10**9) is None


def test_each_read_is_one_statement(actors: Actors) -> None:
    alice, _ = Customer.objects.get_or_create(phone="+8613800138000")
    device = make_card(
        {
            "identifier": "iccid",
            "status": DeviceStatus.ACTIVE,
            "payg": True,
            "credit": 500,
            "bundles": [(-HOUR, 24 * HOUR, GB, "day-1g"), (HOUR, HOUR, MB, "day-1g")],
            "tariffs": [],
            "mine": True,
        },
        actors.plans,
        alice,
        timezone.now(),
    )
    # The first use on a connection also prepares the statement (PostgreSQL).
    device_balance(alice.pk, device.pk)
    authorization_by_iccid(device.iccid or "")
    with CaptureQueriesContext(connection) as balance_queries:
        read = device_balance(alice.pk, device.pk)
    assert read is not None
    assert len(read.bundles) == 2
    assert len(balance_queries) == 1
    with CaptureQueriesContext(connection) as authorization_queries:
        answer = authorization_by_iccid(device.iccid or "")
    assert answer is not None
    assert answer["reason"] == "bundle"
    assert len(authorization_queries) == 1


def test_the_balance_endpoint_is_one_statement(actors: Actors) -> None:
    """Past the first call (which records the token's use), a poll is one statement: the
    balance with the token check in it (api/hot_reads.py)."""
    token, customer = login_customer("+8613800138000")
    Device.objects.filter(pk=actors.device.pk).update(owner=customer)
    app: Client = app_client(token)
    url = f"/api/v1/devices/{actors.device.pk}/balance"
    assert app.get(url).status_code == 200
    assert app.get(url).status_code == 200  # prepared on first use (PostgreSQL)
    with CaptureQueriesContext(connection) as queries:
        response = app.get(url)
    assert response.status_code == 200, response.content
    assert response.json()["device"] == actors.device.masked
    assert len(queries) == 1, [q["sql"] for q in queries]


def test_the_balance_by_token_is_the_balance_of_the_tokens_holder(actors: Actors) -> None:
    alice, _ = Customer.objects.get_or_create(phone="+8613800138000")
    bob, _ = Customer.objects.get_or_create(phone="+8613900139000")
    Device.objects.filter(pk=actors.device.pk).update(owner=alice)
    raw, row = issue_token(alice)
    bobs, _row = issue_token(bob)
    now = timezone.now()
    found = device_balance_by_token(hash_token(raw), actors.device.pk, now)
    assert found == (device_balance(alice.pk, actors.device.pk, now), None)
    AppToken.objects.filter(pk=row.pk).update(last_used_at=now)
    found = device_balance_by_token(hash_token(raw), actors.device.pk, now)
    assert found is not None
    assert found[1] == now
    assert device_balance_by_token(hash_token(bobs), actors.device.pk, now) is None
    assert device_balance_by_token(hash_token(raw), actors.devices[1].pk, now) is None
    assert device_balance_by_token(hash_token(raw), 2**63, now) is None
    revoke_token(row)
    assert device_balance_by_token(hash_token(raw), actors.device.pk, now) is None


def test_the_card_list_reads_remaining_data_in_one_statement(actors: Actors) -> None:
    """The list costs the same statements for one card as for five (no query per card)."""
    token, customer = login_customer("+8613800138000")
    app = app_client(token)
    now = timezone.now()
    spec = {
        "identifier": "iccid",
        "status": DeviceStatus.ACTIVE,
        "payg": False,
        "credit": 0,
        "bundles": [(-HOUR, 24 * HOUR, 7 * MB, "day-1g"), (-HOUR, 2 * HOUR, 0, "day-1g")],
        "tariffs": [],
        "mine": True,
    }
    counts = []
    for cards in (1, 5):
        Device.objects.filter(owner=customer).update(owner=None)
        made = [make_card(spec, actors.plans, customer, now) for _ in range(cards)]
        assert app.get("/api/v1/devices").status_code == 200
        with CaptureQueriesContext(connection) as queries:
            items = app.get("/api/v1/devices").json()["items"]
        assert sorted(i["id"] for i in items) == sorted(d.pk for d in made)
        assert [i["remaining_bytes"] for i in items] == [7 * MB] * cards
        counts.append(len(queries))
    assert counts[0] == counts[1]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements: PostgreSQL")
def test_on_postgresql_the_reads_are_prepared_statements(actors: Actors) -> None:
    authorization_by_iccid(actors.device.iccid or "")
    with CaptureQueriesContext(connection) as queries:
        prepared = authorization_by_iccid(actors.device.iccid or "")
    assert [q["sql"].split("(")[0] for q in queries] == ["EXECUTE simtopup_authorization_by_iccid"]
    # Behind a transaction-mode pooler the same statement runs as plain text.
    connection.settings_dict["DISABLE_SERVER_SIDE_CURSORS"] = True
    try:
        with CaptureQueriesContext(connection) as queries:
            plain = authorization_by_iccid(actors.device.iccid or "")
    finally:
        del connection.settings_dict["DISABLE_SERVER_SIDE_CURSORS"]
    assert queries[0]["sql"].startswith("SELECT")
    assert plain == prepared == {"allowed": False, "remaining_bytes": 0, "reason": "no_data"}


def test_the_token_check_reads_what_the_orm_reads(actors: Actors) -> None:
    raw, customer = login_customer("+8613800138000")
    issue_token(customer, "second")
    token = authenticate_token(raw)
    assert token is not None
    stored = AppToken.objects.select_related("customer").get(token_hash=hash_token(raw))
    for field in AppToken._meta.concrete_fields:
        assert getattr(token, field.attname) == getattr(stored, field.attname), field.name
    for field in Customer._meta.concrete_fields:
        assert getattr(token.customer, field.attname) == getattr(stored.customer, field.attname)
    assert token.last_used_at is not None
    assert token.customer.created_at.tzinfo is not None
    assert not token._state.adding
    assert authenticate_token(raw + "x") is None
    revoke_token(stored)
    assert authenticate_token(raw) is None


def test_the_authorization_endpoint_is_one_statement(actors: Actors) -> None:
    url = f"/network/v1/devices/{actors.device.iccid}/authorization"
    assert network_get(Client(), url).status_code == 200  # prepared on first use
    with CaptureQueriesContext(connection) as queries:
        response = network_get(Client(), url)
    assert response.status_code == 200, response.content
    assert response.json() == {"allowed": False, "remaining_bytes": 0, "reason": "no_data"}
    assert len(queries) == 1, [q["sql"] for q in queries]
