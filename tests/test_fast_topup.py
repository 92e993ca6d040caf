"""The reseller top-up hot path (resellers/fast_sale.py, hooked in by api/fast_topup.py).

On PostgreSQL a plainly valid sale runs as one SQL function call; everything else goes to
the general path. These tests check that the hot path is really taken (so the rest of the
suite, which runs on PostgreSQL too, exercises it), that each refusal leaves nothing behind
and each hand-over is counted, and that its SQL helpers agree with the Python they copy.
That both paths write the same rows is tests/test_fast_sale_differential.py's job: every
row of every table, after generated sequences of sales.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum import luhn

from simtopup.core.money import to_decimal_string
from simtopup.devices.models import Device, DeviceStatus, mask
from simtopup.ledger.audit import audit
from simtopup.ledger.models import Account, Transfer
from simtopup.orders.models import Order
from simtopup.resellers.actions import revoke_api_key, suspend
from simtopup.resellers.fast_sale import FUNCTION
from simtopup.resellers.models import ApiKey, FastSaleFallback, ResellerPrice
from simtopup.usage.models import Bundle, UsageRecord
from tests.support import Actors, float_of, iccid, post_json, reseller_client

pytestmark = pytest.mark.django_db
postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="the hot path exists on PostgreSQL only (SQLite always takes the general one)",
)


def sell(
    key: str, device: str, plan: str = "day-1g", reference: str = "r-1", idem: str | None = None
) -> Any:
    headers = {"Idempotency-Key": idem} if idem else {}
    return post_json(
        reseller_client(key),
        "/reseller/v1/topups",
        {"device": device, "plan": plan, "reference": reference},
        **headers,
    )


def hot_path_statements(queries: list[dict[str, Any]]) -> list[str]:
    return [q["sql"] for q in queries if FUNCTION in q["sql"]]


@postgresql_only
def test_a_plain_sale_is_one_function_call(actors: Actors) -> None:
    with CaptureQueriesContext(connection) as captured:
        response = sell(actors.alice_key, actors.device.iccid, idem="one-call")
    assert response.status_code == 201, response.content
    sql = [q["sql"] for q in captured.captured_queries]
    assert len(hot_path_statements(captured.captured_queries)) == 1
    # Nothing else touched a table: no ORM insert, no second read of the order.
    assert not [s for s in sql if re.search(r"\b(INSERT|UPDATE|orders_order)\b", s)], sql


@postgresql_only
def test_the_general_path_answers_when_the_hot_path_is_off(actors: Actors, settings: Any) -> None:
    settings.FAST_TOPUP = False
    with CaptureQueriesContext(connection) as captured:
        response = sell(actors.alice_key, actors.device.iccid)
    assert response.status_code == 201
    assert hot_path_statements(captured.captured_queries) == []


@postgresql_only
def test_a_hot_path_sale_replays_and_refuses_another_body(actors: Actors) -> None:
    first = sell(actors.alice_key, actors.device.iccid, idem="k")
    again = sell(actors.alice_key, actors.device.iccid, idem="k")
    other = sell(actors.alice_key, actors.device.iccid, reference="other", idem="k")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    assert Order.objects.count() == 1
    assert float_of(actors.alice) == 100000 - 460


@postgresql_only
def test_responses_carry_the_same_security_headers(actors: Actors, settings: Any) -> None:
    hot = sell(actors.alice_key, actors.devices[1].iccid, reference="h")
    settings.FAST_TOPUP = False
    general = sell(actors.alice_key, actors.devices[2].iccid, reference="g")
    for name in (
        "Content-Type",
        "X-Content-Type-Options",
        "Referrer-Policy",
        "Cross-Origin-Opener-Policy",
        "X-Frame-Options",
        "Content-Security-Policy",
    ):
        assert hot.headers.get(name) == general.headers.get(name), name
    assert hot.headers["Content-Type"] == "application/json"


def _mistyped(identifier: str) -> str:
    return identifier[:-1] + str((int(identifier[-1]) + 1) % 10)


def _refusals(actors: Actors) -> list[tuple[str, dict[str, Any], int, str]]:
    return [
        # (what, sale arguments, status, code)
        ("float too low", {"key": actors.bob_key, "plan": "month-20g"}, 402, "insufficient_float"),
        ("unknown plan", {"plan": "no-such-plan"}, 422, "unknown_plan"),
        ("unknown device", {"device": iccid(999)}, 422, "unknown_device"),
        ("bad check digit", {"device": _mistyped(iccid(1))}, 422, "check_digit_mismatch"),
        ("wrong key", {"key": "sk_not-a-key"}, 401, "unauthenticated"),
    ]


@pytest.mark.parametrize("index", range(5))
@postgresql_only
def test_refusals_come_from_the_general_path_and_change_nothing(actors: Actors, index: int) -> None:
    what, args, status, code = _refusals(actors)[index]
    floats = (float_of(actors.alice), float_of(actors.bob))
    transfers = Transfer.objects.count()
    response = sell(
        args.get("key", actors.alice_key),
        args.get("device", actors.device.iccid),
        args.get("plan", "day-1g"),
        idem=f"refused-{index}",
    )
    assert response.status_code == status, (what, response.content)
    assert response.json()["code"] == code, what
    assert Order.objects.count() == 0
    assert Transfer.objects.count() == transfers
    assert (float_of(actors.alice), float_of(actors.bob)) == floats
    assert audit() == []


@postgresql_only
def test_suspended_revoked_duplicate_and_unrechargeable(actors: Actors) -> None:
    assert sell(actors.alice_key, actors.device.iccid, reference="dup").status_code == 201
    duplicate = sell(actors.alice_key, actors.devices[1].iccid, reference="dup")
    assert (duplicate.status_code, duplicate.json()["code"]) == (409, "duplicate_reference")

    Device.objects.filter(pk=actors.devices[2].pk).update(status=DeviceStatus.SUSPENDED)
    blocked = sell(actors.alice_key, actors.devices[2].iccid, reference="blocked")
    assert (blocked.status_code, blocked.json()["code"]) == (422, "device_not_rechargeable")

    suspend(actors.bob)
    suspended = sell(actors.bob_key, actors.device.iccid, reference="s")
    assert (suspended.status_code, suspended.json()["code"]) == (403, "reseller_suspended")

    revoke_api_key(ApiKey.objects.get(reseller=actors.alice).pk)
    revoked = sell(actors.alice_key, actors.device.iccid, reference="r")
    assert revoked.status_code == 401
    assert Order.objects.count() == 1
    assert audit() == []


def _fallbacks() -> dict[str, int]:
    return dict(FastSaleFallback.objects.values_list("reason", "count"))


@postgresql_only
def test_every_hand_over_to_the_general_path_is_logged_and_counted_by_reason(
    actors: Actors, caplog: pytest.LogCaptureFixture
) -> None:
    """A fallback used to be silent: now each names its reason in the log and in /metrics."""
    caplog.set_level(logging.INFO, logger="simtopup.resellers.fast_sale")
    assert sell(actors.alice_key, actors.device.iccid, reference="a", idem="k").status_code == 201
    assert _fallbacks() == {}
    cases = [
        (
            lambda: sell(actors.alice_key, actors.device.iccid, reference="a", idem="k"),
            201,
            "idempotency_key_seen",
        ),
        (
            lambda: sell(actors.alice_key, actors.devices[1].iccid, reference="a"),
            409,
            "duplicate_reference",
        ),
        (lambda: sell("sk_not-a-key", actors.device.iccid, reference="b"), 401, "unknown_key"),
        (lambda: sell(actors.alice_key, iccid(999), reference="c"), 422, "unknown_device"),
        (lambda: sell(actors.alice_key, actors.device.iccid, "nope", "d"), 422, "unknown_plan"),
        (
            lambda: sell(actors.bob_key, actors.device.iccid, "month-20g", "e"),
            402,
            "insufficient_float",
        ),
        (
            lambda: reseller_client(actors.alice_key).post(
                "/reseller/v1/topups", data="{}", content_type="application/json"
            ),
            422,
            "request_shape",
        ),
    ]
    for send, status, reason in cases:
        before = _fallbacks().get(reason, 0)
        response = send()
        assert response.status_code == status, (reason, response.content)
        assert _fallbacks().get(reason, 0) == before + 1, reason
        assert f"handed to the general path ({reason})" in caplog.text
    Device.objects.filter(pk=actors.devices[2].pk).update(status=DeviceStatus.SUSPENDED)
    assert sell(actors.alice_key, actors.devices[2].iccid, reference="f").status_code == 422
    suspend(actors.bob)
    assert sell(actors.bob_key, actors.device.iccid, reference="g").status_code == 403
    counted = _fallbacks()
    assert counted["device_not_rechargeable"] == counted["reseller_suspended"] == 1
    metrics = Client().get("/metrics").content.decode()
    for reason, count in counted.items():
        assert f'simtopup_fast_path_fallbacks_total{{reason="{reason}"}} {count}' in metrics


@postgresql_only
def test_a_credit_sale_is_one_function_call(actors: Actors) -> None:
    with CaptureQueriesContext(connection) as captured:
        response = sell(actors.alice_key, actors.device.iccid, "credit-50", idem="credit")
    assert response.status_code == 201, response.content
    sql = [q["sql"] for q in captured.captured_queries]
    assert len(hot_path_statements(captured.captured_queries)) == 1
    assert not [s for s in sql if re.search(r"\b(INSERT|UPDATE|orders_order)\b", s)], sql
    order = Order.objects.get()
    # The card gets the face value (¥50.00); Alice pays it less her 8 % discount.
    assert (order.retail_amount, order.amount) == (5000, 4600)
    actors.device.credit_account.refresh_from_db()
    assert actors.device.credit_account.balance == 5000
    assert float_of(actors.alice) == 100000 - 4600
    device = Device.objects.get(pk=actors.device.pk)
    assert device.payg
    assert device.status == DeviceStatus.ACTIVE
    assert response.json()["charged"] == {"amount": "46.00", "currency": "CNY"}
    assert audit() == []


@postgresql_only
def test_a_credit_sale_the_float_cannot_cover_changes_nothing(actors: Actors) -> None:
    """Bob's ¥50.00 float cannot pay ¥53.00: the function undoes its writes, the general
    path answers insufficient_float, and the card's credit is untouched."""
    ResellerPrice.objects.create(reseller=actors.bob, plan=actors.plans["credit-50"], price=5300)
    response = sell(actors.bob_key, actors.device.iccid, "credit-50", idem="too-much")
    assert (response.status_code, response.json()["code"]) == (402, "insufficient_float")
    actors.device.credit_account.refresh_from_db()
    assert actors.device.credit_account.balance == 0
    assert float_of(actors.bob) == 5000
    assert Order.objects.count() == 0
    assert not Device.objects.get(pk=actors.device.pk).payg
    assert audit() == []


@pytest.mark.parametrize("sqlstate_error", ["DeadlockDetected", "SerializationFailure"])
@postgresql_only
def test_a_deadlock_victim_is_answered_by_the_general_path(
    actors: Actors, monkeypatch: pytest.MonkeyPatch, sqlstate_error: str
) -> None:
    """PostgreSQL may pick the function's statement as a deadlock's victim (two first sales of
    one new card, a bundle and a credit, each holding a row the other needs): the statement
    wrote nothing, and the sale goes on through the general path instead of failing."""
    import psycopg.errors
    from django.db import OperationalError

    from simtopup.resellers import fast_sale

    def victim(params: list[Any]) -> None:
        cause = getattr(psycopg.errors, sqlstate_error)("chosen as the victim")
        raise OperationalError("chosen as the victim") from cause

    monkeypatch.setattr(fast_sale, "_call", victim)
    response = sell(actors.alice_key, actors.device.iccid, "credit-50", idem="victim")
    assert response.status_code == 201, response.content
    assert Order.objects.get().status == "fulfilled"
    actors.device.credit_account.refresh_from_db()
    assert actors.device.credit_account.balance == 5000
    assert audit() == []


@postgresql_only
@pytest.mark.parametrize("field", ["device", "plan", "reference"])
def test_a_nul_character_is_a_clear_422_on_both_paths(
    actors: Actors, settings: Any, field: str
) -> None:
    body = {"device": actors.device.iccid, "plan": "day-1g", "reference": "r"}
    body[field] += "\x00"
    for fast in (True, False):
        settings.FAST_TOPUP = fast
        response = post_json(reseller_client(actors.alice_key), "/reseller/v1/topups", body)
        assert response.status_code == 422, response.content
        problem = response.json()
        assert problem["code"] == "validation_error"
        assert problem["errors"][0]["field"] == field
        assert problem["errors"][0]["code"] == "invalid_characters"
    assert Order.objects.count() == 0


def test_whitespace_is_stripped_as_the_schema_strips_it(actors: Actors) -> None:
    response = sell(actors.alice_key, f"  {actors.device.iccid} ", " day-1g ", "  ref  ")
    assert response.status_code == 201, response.content
    assert response.json()["reference"] == "ref"
    assert response.json()["plan"] == "day-1g"


def _sql(expression: str, *params: Any) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {expression}", params)
        return cursor.fetchone()[0]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789", min_size=1, max_size=24))
@postgresql_only
def test_the_sql_luhn_digit_is_stdnums(number: str) -> None:
    assert str(_sql("simtopup_luhn_check_digit(%s)", number)) == luhn.calc_check_digit(number)


@settings(max_examples=200, deadline=None)
@given(
    st.text(
        alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
        min_size=1,
        max_size=40,
    )
)
@postgresql_only
def test_the_sql_mask_is_pythons(identifier: str) -> None:
    assert _sql("simtopup_mask(%s)", identifier) == mask(identifier)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=-(10**15), max_value=10**15),
    st.sampled_from(["CNY", "HKD", "USD", "JPY", "KRW", "BHD", "KWD", "CLF", "XAU"]),
)
@postgresql_only
def test_the_sql_money_format_is_pythons(minor: int, currency: str) -> None:
    assert _sql("simtopup_money(%s, %s)", minor, currency) == to_decimal_string(minor, currency)


def test_accounts_are_permanent_and_transfers_name_real_ones(actors: Actors) -> None:
    """Transfers carry no foreign-key constraint (ledger migration 0004); the database still
    refuses a transfer naming a missing account, and renumbering (and, on PostgreSQL,
    deleting) an account."""
    from django.db import DatabaseError, IntegrityError, transaction

    account = actors.alice.float_account
    if connection.vendor == "postgresql":  # SQLite keeps DELETE for Django's test flush
        with (
            pytest.raises(DatabaseError, match="permanent"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute("DELETE FROM ledger_account WHERE id = %s", [account.pk])
    with pytest.raises(DatabaseError, match="permanent"), transaction.atomic():
        Account.objects.filter(pk=account.pk).update(id=account.pk + 10**9)
    with pytest.raises(IntegrityError), transaction.atomic():
        Transfer.objects.create(
            source=account,
            destination_id=account.pk + 10**9,
            amount=1,
            unit="CNY",
            kind="test",
            idempotency_key="dangling",
        )
    assert Account.objects.filter(pk=account.pk).exists()
    assert audit() == []


def test_a_nul_character_in_a_query_parameter_is_a_clear_422(actors: Actors) -> None:
    response = reseller_client(actors.alice_key).get("/reseller/v1/topups?reference=a%00b")
    assert response.status_code == 422, response.content
    assert response.json()["errors"][0] == {
        "field": "reference",
        "code": "invalid_characters",
        "message": "Must not contain the NUL character.",
    }


def test_plans_resellers_and_devices_are_permanent_and_rows_name_real_ones(
    actors: Actors,
) -> None:
    """Orders and bundles point at plans and resellers, usage records at devices, without
    foreign-key constraints (core/integrity.py); the database keeps the guarantee."""
    from django.db import DatabaseError, IntegrityError, transaction

    from simtopup.catalog.models import Plan
    from simtopup.resellers.models import Reseller

    plan = actors.plans["day-1g"]
    for table, pk in (
        ("catalog_plan", plan.pk),
        ("resellers_reseller", actors.bob.pk),
        ("devices_device", actors.devices[4].pk),
    ):
        if connection.vendor == "postgresql":  # SQLite keeps DELETE for Django's test flush
            with (
                pytest.raises(DatabaseError, match="permanent"),
                transaction.atomic(),
                connection.cursor() as cursor,
            ):
                cursor.execute(f"DELETE FROM {table} WHERE id = %s", [pk])
        model = {"catalog_plan": Plan, "resellers_reseller": Reseller}.get(table, Device)
        with pytest.raises(DatabaseError, match="permanent"), transaction.atomic():
            model.objects.filter(pk=pk).update(id=pk + 10**6)
    assert sell(actors.alice_key, actors.device.iccid).status_code == 201
    order = Order.objects.get()
    bundle = Bundle.objects.get(order=order)
    for field, value in (("plan_id", 10**6), ("reseller_id", 10**6)):
        with pytest.raises(IntegrityError), transaction.atomic():
            Order.objects.create(
                **{
                    "channel": order.channel,
                    "status": "paid",
                    "device_id": order.device_id,
                    "plan_id": order.plan_id,
                    "reseller_id": order.reseller_id,
                    "amount": 1,
                    "retail_amount": 1,
                    "currency": "CNY",
                    field: value,
                }
            )
    for model, pk in ((Bundle, bundle.pk), (Order, order.pk)):
        with pytest.raises(IntegrityError), transaction.atomic():
            model.objects.filter(pk=pk).update(plan_id=10**6)
    with pytest.raises(IntegrityError), transaction.atomic():
        Order.objects.filter(pk=order.pk).update(reseller_id=10**6)
    account = Account.objects.create(code="bundle:test", kind="bundle", unit="BYTES")
    with pytest.raises(IntegrityError), transaction.atomic():
        Bundle.objects.create(
            device_id=bundle.device_id,
            plan_id=10**6,
            account=account,
            granted_bytes=1,
            starts_at=bundle.starts_at,
            expires_at=bundle.expires_at,
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        UsageRecord.objects.create(
            record_id="r-missing-device",
            device_id=10**6,
            bytes=0,
            started_at=bundle.starts_at,
            ended_at=bundle.starts_at,
        )
    assert Order.objects.count() == 1
    assert not UsageRecord.objects.exists()
    assert audit() == []
