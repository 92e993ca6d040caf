"""The network API (/network/v1): signed usage reports and the policy server's authorization
check, through the HTTP stack with bundles and credit bought through the reseller API."""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.conf import settings
from django.db.models import Sum
from django.test import Client
from django.utils import timezone

from simtopup.catalog.models import PaygTariff
from simtopup.core import signing
from simtopup.core.signing import sign
from simtopup.devices.models import Device, DeviceStatus
from simtopup.ledger.audit import audit
from simtopup.ledger.models import BYTES, Account, Transfer
from simtopup.usage import rating
from simtopup.usage.models import Bundle, UsageRecord
from tests.support import GB, MB, Actors, iccid, network_get, network_post, post_json

USAGE = "/network/v1/usage"


def usage_sig(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """A v2 signature of ``POST /network/v1/usage`` with ``body``."""
    return sign(secret, "POST", USAGE, body, timestamp)


TARIFF = 10  # fen per started MB (tests.support.make_plans)


# --- helpers ------------------------------------------------------------------------------


def topup(alice: Client, device: Device, plan: str) -> None:
    response = post_json(
        alice,
        "/reseller/v1/topups",
        {"device": device.iccid, "plan": plan, "reference": f"{plan}-{time.monotonic_ns()}"},
    )
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "fulfilled"


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def record(
    rid: str,
    device: Device | str,
    size: int,
    *,
    started: datetime | None = None,
    seconds: int = 60,
) -> dict[str, Any]:
    started = started or timezone.now()
    return {
        "id": rid,
        "iccid": device if isinstance(device, str) else device.iccid,
        "bytes": size,
        "started_at": rfc3339(started),
        "ended_at": rfc3339(started + timedelta(seconds=seconds)),
    }


def report(*records: dict[str, Any]) -> Any:
    return network_post(Client(), USAGE, {"records": list(records)})


def authorize(device: Device | str) -> dict[str, Any]:
    number = device if isinstance(device, str) else device.iccid
    response = network_get(Client(), f"/network/v1/devices/{number}/authorization")
    assert response.status_code == 200, response.content
    return dict(response.json())


def raw_post(body: bytes, signature: str | None) -> Any:
    headers = {} if signature is None else {"X-Simtopup-Signature": signature}
    return Client().post(USAGE, data=body, content_type="application/json", headers=headers)


def balance(account_id: int) -> int:
    return Account.objects.values_list("balance", flat=True).get(pk=account_id)


def credit(device: Device) -> int:
    return balance(device.credit_account_id)


def bundle_balances(device: Device) -> list[int]:
    """Remaining bytes of the device's bundles, soonest-expiring first."""
    return [
        b.account.balance
        for b in Bundle.objects.filter(device=device)
        .select_related("account")
        .order_by("expires_at", "id")
    ]


def snapshot() -> tuple[Any, ...]:
    """Everything rating may change: records, transfers, every cached balance."""
    return (
        list(UsageRecord.objects.values_list("record_id", "bytes").order_by("record_id")),
        Transfer.objects.count(),
        list(Account.objects.values_list("code", "balance").order_by("code")),
    )


USAGE_KEY = re.compile(r"usage:(?P<record>.+):(?:bundle:\d+|charge|payg|overage)")


def assert_every_byte_accounted() -> None:
    """Each record splits exactly into bundle + pay-per-use + overage bytes, the ledger's
    BYTES transfers into data_consumed carry exactly the usage, per record and in total, the
    money charged is on the ledger, and the ledger audits clean."""
    records = list(UsageRecord.objects.all())
    consumed = Account.objects.filter(code=f"system:data_consumed:{BYTES}").first()
    into: dict[str, int] = defaultdict(int)
    charged: dict[str, int] = defaultdict(int)
    for key, kind, unit, destination, amount in Transfer.objects.filter(
        idempotency_key__startswith="usage:"
    ).values_list("idempotency_key", "kind", "unit", "destination_id", "amount"):
        match = USAGE_KEY.fullmatch(key)
        assert match, key
        if unit == BYTES and consumed is not None and destination == consumed.pk:
            into[match["record"]] += amount
        if kind == "payg_charge":
            charged[match["record"]] += amount
    for r in records:
        assert r.bytes == r.bundle_bytes + r.payg_bytes + r.overage_bytes, r.record_id
        assert into.get(r.record_id, 0) == r.bytes, r.record_id
        assert charged.get(r.record_id, 0) == r.charged, r.record_id
    assert set(into) <= {r.record_id for r in records}
    total = Transfer.objects.filter(unit=BYTES, destination=consumed).aggregate(s=Sum("amount"))
    assert (total["s"] or 0) == sum(r.bytes for r in records)
    assert audit() == []


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response.headers["Content-Type"] == "application/problem+json"
    body = dict(response.json())
    assert body["code"] == code
    assert body["status"] == status
    assert body["type"].endswith(code)
    assert body["detail"]
    return body


# --- signatures ---------------------------------------------------------------------------


def _signed_body(actors: Actors) -> bytes:
    return json.dumps({"records": [record("sig-1", actors.device, 5 * MB)]}).encode()


@pytest.mark.parametrize(
    ("make_header", "code"),
    [
        (lambda body, now: None, "unauthenticated"),
        (lambda body, now: "", "unauthenticated"),
        (lambda body, now: usage_sig("not the network secret", body, now), "invalid_signature"),
        (
            lambda body, now: usage_sig(settings.NETWORK_SECRET, body + b" ", now),
            "invalid_signature",
        ),
        (
            lambda body, now: usage_sig(settings.NETWORK_SECRET, body, now).replace("t=", "t=1"),
            "invalid_signature",
        ),
        (lambda body, now: "garbage", "invalid_signature"),
        (lambda body, now: "t=abc,v1=" + "0" * 64, "invalid_signature"),
        (
            lambda body, now: usage_sig(settings.NETWORK_SECRET, body, now).split(",")[0],
            "invalid_signature",
        ),
        (lambda body, now: "t=" + "9" * 400 + ",v1=" + "0" * 64, "invalid_signature"),
        (lambda body, now: f"t={now},v1=é" + "0" * 63, "invalid_signature"),
        (
            lambda body, now: usage_sig(settings.NETWORK_SECRET, body, now - 301),
            "signature_expired",
        ),
        (
            lambda body, now: usage_sig(settings.NETWORK_SECRET, body, now + 301),
            "signature_expired",
        ),
    ],
    ids=[
        "missing",
        "empty",
        "wrong-secret",
        "tampered-body",
        "tampered-timestamp",
        "garbage",
        "non-numeric-timestamp",
        "no-mac",
        "absurd-timestamp",
        "non-ascii-mac",
        "301s-old",
        "301s-ahead",
    ],
)
def test_unsigned_or_badly_signed_usage_is_refused_and_changes_nothing(
    actors: Actors,
    alice: Client,
    make_header: Any,
    code: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topup(alice, actors.device, "day-1g")
    body = _signed_body(actors)
    before = snapshot()
    # The server's clock is frozen at the second the header is made for: a boundary case such
    # as "301 s ahead" must not become 300 s when the wall clock ticks between the two.
    now = int(time.time())
    monkeypatch.setattr(signing, "time", SimpleNamespace(time=lambda: float(now)))
    response = raw_post(body, make_header(body, now))
    assert_problem(response, 401, code)
    assert snapshot() == before
    assert UsageRecord.objects.count() == 0


@pytest.mark.parametrize("skew", [-290, 290])
def test_it_accepts_a_signature_within_the_skew_window(
    actors: Actors, alice: Client, skew: int
) -> None:
    topup(alice, actors.device, "day-1g")
    body = _signed_body(actors)
    response = raw_post(body, usage_sig(settings.NETWORK_SECRET, body, int(time.time()) + skew))
    assert response.status_code == 200, response.content
    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}


def test_it_accepts_any_of_several_macs_during_secret_rotation(actors: Actors) -> None:
    body = _signed_body(actors)
    good = usage_sig(settings.NETWORK_SECRET, body)
    t, mac = good.split(",")
    old = usage_sig("the old secret", body, int(t.removeprefix("t="))).split(",")[1]
    response = raw_post(body, f"{t},{old},{mac}")
    assert response.status_code == 200, response.content


def test_authorization_needs_a_valid_signature(actors: Actors) -> None:
    path = f"/network/v1/devices/{actors.device.iccid}/authorization"
    assert_problem(Client().get(path), 401, "unauthenticated")
    forged = sign("not the network secret", "GET", path, b"")
    assert_problem(
        Client().get(path, headers={"X-Simtopup-Signature": forged}), 401, "invalid_signature"
    )
    stale = sign(settings.NETWORK_SECRET, "GET", path, b"", int(time.time()) - 400)
    assert_problem(
        Client().get(path, headers={"X-Simtopup-Signature": stale}), 401, "signature_expired"
    )


def test_the_openapi_document_describes_the_signature() -> None:
    schema = Client().get("/api/openapi.json").json()
    operation = schema["paths"]["/network/v1/usage"]["post"]
    (requirement,) = operation["security"]
    (name,) = requirement
    scheme = schema["components"]["securitySchemes"][name]
    assert scheme["type"] == "apiKey"
    assert scheme["in"] == "header"
    assert scheme["name"] == "X-Simtopup-Signature"
    authorization = schema["paths"]["/network/v1/devices/{iccid}/authorization"]["get"]
    assert authorization["security"] == operation["security"]


# --- rating -------------------------------------------------------------------------------


def test_it_drains_the_soonest_expiring_bundle_first(actors: Actors, alice: Client) -> None:
    device = actors.device
    topup(alice, device, "month-20g")  # bought first, but expires last
    topup(alice, device, "day-1g")
    response = report(record("r1", device, 1 * GB + 300 * MB))
    assert response.status_code == 200, response.content
    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert bundle_balances(device) == [0, 20 * GB - 300 * MB]  # day first, then month
    usage = UsageRecord.objects.get(record_id="r1")
    assert (usage.bundle_bytes, usage.payg_bytes, usage.overage_bytes) == (1 * GB + 300 * MB, 0, 0)
    assert usage.device_id == device.pk
    assert usage.charged == 0
    assert_every_byte_accounted()


def test_pay_per_use_charges_each_started_mb_after_the_bundles(
    actors: Actors, alice: Client
) -> None:
    device = actors.device
    topup(alice, device, "credit-50")  # ¥50 on the card, pay-per-use
    topup(alice, device, "day-1g")
    assert credit(device) == 5000
    response = report(record("r1", device, 1 * GB + MB + MB // 2))  # 1.5 MB beyond the bundle
    assert response.json()["accepted"] == 1
    usage = UsageRecord.objects.get(record_id="r1")
    assert usage.bundle_bytes == 1 * GB
    assert usage.payg_bytes == MB + MB // 2
    assert usage.charged == 2 * TARIFF  # two started MB
    assert usage.overage_bytes == 0
    assert credit(device) == 5000 - 2 * TARIFF
    report(record("r2", device, 1))  # a single byte starts a MB
    assert UsageRecord.objects.get(record_id="r2").charged == TARIFF
    assert credit(device) == 5000 - 3 * TARIFF
    assert_every_byte_accounted()


def test_what_neither_bundles_nor_credit_cover_is_overage(actors: Actors, alice: Client) -> None:
    payg, plain = actors.devices[0], actors.devices[1]
    topup(alice, payg, "credit-50")  # 5000 fen: 500 MB at 10 fen
    topup(alice, plain, "day-1g")
    response = report(
        record("p1", payg, 600 * MB + 5),
        record("n1", plain, 1 * GB + 12345),
    )
    assert response.json() == {"accepted": 2, "duplicates": 0, "rejected": []}
    p1 = UsageRecord.objects.get(record_id="p1")
    assert (p1.bundle_bytes, p1.payg_bytes, p1.overage_bytes) == (0, 500 * MB, 100 * MB + 5)
    assert p1.charged == 5000
    assert credit(payg) == 0
    n1 = UsageRecord.objects.get(record_id="n1")
    assert (n1.bundle_bytes, n1.payg_bytes, n1.overage_bytes) == (1 * GB, 0, 12345)
    assert credit(plain) == 0
    # overage is owed data: the device's overage account goes below zero by exactly that
    assert balance(payg.overage_account_id) == -(100 * MB + 5)
    assert balance(plain.overage_account_id) == -12345
    assert_every_byte_accounted()


def test_credit_is_never_charged_for_a_device_that_is_not_pay_per_use(
    actors: Actors, alice: Client
) -> None:
    device = actors.device
    topup(alice, device, "day-1g")
    report(record("r1", device, 2 * GB))
    usage = UsageRecord.objects.get(record_id="r1")
    assert (usage.bundle_bytes, usage.payg_bytes, usage.overage_bytes) == (1 * GB, 0, 1 * GB)
    assert not Transfer.objects.filter(kind="payg_charge").exists()
    assert_every_byte_accounted()


def test_a_suspended_cards_credit_is_not_charged(actors: Actors, alice: Client) -> None:
    device = actors.device
    topup(alice, device, "credit-50")
    Device.objects.filter(pk=device.pk).update(status=DeviceStatus.SUSPENDED)
    report(record("r1", device, 3 * MB))
    usage = UsageRecord.objects.get(record_id="r1")
    assert (usage.payg_bytes, usage.charged, usage.overage_bytes) == (0, 0, 3 * MB)
    assert credit(device) == 5000
    assert_every_byte_accounted()


def test_usage_outside_a_bundles_window_does_not_drain_it(actors: Actors, alice: Client) -> None:
    device = actors.device
    topup(alice, device, "day-1g")
    bundle = Bundle.objects.get(device=device)
    start, end = bundle.starts_at, bundle.expires_at
    response = report(
        record("before", device, 1 * MB, started=start - timedelta(seconds=1)),
        record("at-expiry", device, 2 * MB, started=end),
        record("after", device, 3 * MB, started=end + timedelta(hours=1)),
    )
    assert response.json() == {"accepted": 3, "duplicates": 0, "rejected": []}
    assert bundle_balances(device) == [1 * GB]
    for rid, size in (("before", MB), ("at-expiry", 2 * MB), ("after", 3 * MB)):
        usage = UsageRecord.objects.get(record_id=rid)
        assert (usage.bundle_bytes, usage.overage_bytes) == (0, size), rid
    # the window is [starts_at, expires_at): its first and last instants count
    report(
        record("at-start", device, 4 * MB, started=start),
        record("last-moment", device, 5 * MB, started=end - timedelta(microseconds=1)),
    )
    assert UsageRecord.objects.get(record_id="at-start").bundle_bytes == 4 * MB
    assert UsageRecord.objects.get(record_id="last-moment").bundle_bytes == 5 * MB
    assert bundle_balances(device) == [1 * GB - 9 * MB]
    assert_every_byte_accounted()


def test_an_expired_bundle_is_skipped_for_a_valid_one(actors: Actors, alice: Client) -> None:
    device = actors.device
    topup(alice, device, "day-1g")
    now = timezone.now()
    Bundle.objects.filter(device=device).update(
        starts_at=now - timedelta(days=2), expires_at=now - timedelta(days=1)
    )
    topup(alice, device, "month-20g")
    report(record("r1", device, 7 * MB))
    assert bundle_balances(device) == [1 * GB, 20 * GB - 7 * MB]
    assert_every_byte_accounted()


def test_it_accepts_an_iccid_as_printed(actors: Actors, alice: Client) -> None:
    device = actors.device
    topup(alice, device, "day-1g")
    number = str(device.iccid)
    printed = f"{number[:4]} {number[4:8]}-{number[8:]}F"
    response = report(record("r1", printed, 1000))
    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert UsageRecord.objects.get(record_id="r1").device_id == device.pk


def test_a_failure_while_posting_rolls_back_the_whole_batch(
    actors: Actors, alice: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = actors.device
    topup(alice, device, "credit-50")
    topup(alice, device, "day-1g")
    before = snapshot()
    real_post = rating.post_legs

    def post_then_crash(*args: Any) -> Any:
        real_post(*args)  # the transfers and balances are written …
        raise RuntimeError("the database went away")  # … then the batch fails

    monkeypatch.setattr(rating, "post_legs", post_then_crash)
    response = report(record("r1", device, 2 * GB), record("r2", device, 5))
    assert_problem(response, 500, "server_error")
    assert snapshot() == before  # records, transfers and balances: all or nothing
    monkeypatch.undo()
    assert report(record("r1", device, 2 * GB)).json()["accepted"] == 1
    assert_every_byte_accounted()


# --- duplicates and rejections ------------------------------------------------------------


def test_a_repeated_record_id_is_never_charged_twice(actors: Actors, alice: Client) -> None:
    device = actors.device
    topup(alice, device, "credit-50")
    first = report(record("r1", device, 3 * MB), record("r1", device, 3 * MB))
    assert first.json() == {"accepted": 1, "duplicates": 1, "rejected": []}
    assert credit(device) == 5000 - 3 * TARIFF
    later = report(record("r1", device, 3 * MB), record("r2", device, MB))
    assert later.json() == {"accepted": 1, "duplicates": 1, "rejected": []}
    # the whole batch again, as a network retry would send it
    again = report(record("r1", device, 3 * MB), record("r2", device, MB))
    assert again.json() == {"accepted": 0, "duplicates": 2, "rejected": []}
    assert credit(device) == 5000 - 4 * TARIFF
    assert UsageRecord.objects.count() == 2
    assert Transfer.objects.filter(kind="payg_charge").count() == 2
    assert_every_byte_accounted()


def test_a_duplicate_with_other_numbers_keeps_the_first_rating(
    actors: Actors, alice: Client
) -> None:
    device = actors.device
    topup(alice, device, "day-1g")
    report(record("r1", device, 10 * MB))
    response = report(record("r1", device, 900 * MB))
    assert response.json() == {"accepted": 0, "duplicates": 1, "rejected": []}
    assert UsageRecord.objects.get(record_id="r1").bytes == 10 * MB
    assert bundle_balances(device) == [1 * GB - 10 * MB]


def test_unknown_devices_and_backwards_times_are_rejected_per_record(
    actors: Actors, alice: Client
) -> None:
    device = actors.device
    topup(alice, device, "day-1g")
    now = timezone.now()
    backwards = record("back", device, MB, started=now)
    backwards["ended_at"] = rfc3339(now - timedelta(seconds=1))
    response = report(
        record("ok", device, MB),
        record("ghost", iccid(999), MB),
        record("nonsense", "not-an-iccid", MB),
        backwards,
        record("instant", device, 0, seconds=0),
    )
    assert response.status_code == 200, response.content
    assert response.json() == {
        "accepted": 2,
        "duplicates": 0,
        "rejected": [
            {"id": "ghost", "code": "unknown_device"},
            {"id": "nonsense", "code": "unknown_device"},
            {"id": "back", "code": "invalid_time_range"},
        ],
    }
    assert set(UsageRecord.objects.values_list("record_id", flat=True)) == {"ok", "instant"}
    assert bundle_balances(device) == [1 * GB - MB]
    # a rejected record is not remembered: sent again, corrected, it is rated
    fixed = record("back", device, MB)
    assert report(fixed).json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert_every_byte_accounted()


def test_an_empty_batch_is_fine(actors: Actors) -> None:
    response = report()
    assert response.status_code == 200
    assert response.json() == {"accepted": 0, "duplicates": 0, "rejected": []}


# --- bad input ----------------------------------------------------------------------------


def _good(actors: Actors) -> dict[str, Any]:
    return record("r1", actors.device, MB)


def _with(actors: Actors, **changes: Any) -> dict[str, Any]:
    return {"records": [{**_good(actors), **changes}]}


def _without(actors: Actors, name: str) -> dict[str, Any]:
    rec = _good(actors)
    del rec[name]
    return {"records": [rec]}


@pytest.mark.parametrize(
    ("make_body", "field"),
    [
        (lambda a: {"records": [], "extra": 1}, "extra"),
        (lambda a: _with(a, colour="blue"), "records.0.colour"),
        (lambda a: _with(a, bytes="lots"), "records.0.bytes"),
        (lambda a: _with(a, bytes="100"), "records.0.bytes"),
        (lambda a: _with(a, bytes=True), "records.0.bytes"),
        (lambda a: _with(a, bytes=1.5), "records.0.bytes"),
        (lambda a: _with(a, bytes=-1), "records.0.bytes"),
        (lambda a: _with(a, id=7), "records.0.id"),
        (lambda a: _with(a, id=""), "records.0.id"),
        (lambda a: _with(a, iccid=None), "records.0.iccid"),
        (lambda a: _with(a, id="r\x001"), "records.0.id"),
        (lambda a: _with(a, iccid=a.device.iccid + "\x00"), "records.0.iccid"),
        (lambda a: _with(a, started_at="2026-11-26T08:00:00"), "records.0.started_at"),
        (lambda a: _with(a, ended_at="2026-11-26T08:00:00"), "records.0.ended_at"),
        (lambda a: _with(a, started_at="yesterday"), "records.0.started_at"),
        (lambda a: _without(a, "bytes"), "records.0.bytes"),
        (lambda a: _without(a, "id"), "records.0.id"),
        (lambda a: _without(a, "ended_at"), "records.0.ended_at"),
        (lambda a: {}, "records"),
        (lambda a: {"records": {"id": "r1"}}, "records"),
        (lambda a: {"records": ["r1"]}, "records.0"),
    ],
    ids=[
        "unknown-top-field",
        "unknown-record-field",
        "bytes-word",
        "bytes-numeric-string",
        "bytes-boolean",
        "bytes-fraction",
        "bytes-negative",
        "id-number",
        "id-empty",
        "iccid-null",
        "id-nul-character",
        "iccid-nul-character",
        "started-naive",
        "ended-naive",
        "started-word",
        "missing-bytes",
        "missing-id",
        "missing-ended",
        "missing-records",
        "records-object",
        "record-string",
    ],
)
def test_invalid_usage_is_a_validation_error_and_changes_nothing(
    actors: Actors, alice: Client, make_body: Any, field: str
) -> None:
    topup(alice, actors.device, "day-1g")
    before = snapshot()
    # a valid record next to the bad one: the whole batch is refused, not half of it
    body = make_body(actors)
    if isinstance(body.get("records"), list):
        body["records"].insert(0, record("fine", actors.device, MB))
        field = field.replace("records.0", "records.1")
    response = network_post(Client(), USAGE, body)
    problem = assert_problem(response, 422, "validation_error")
    assert field in [e["field"] for e in problem["errors"]], problem["errors"]
    assert all(e["code"] and e["message"] for e in problem["errors"])
    assert snapshot() == before


@pytest.mark.parametrize(
    "body",
    [b'{"records": [', b"not json", b"[]", b'"records"', b"", b"\xff\xfe{}"],
    ids=["truncated", "text", "array", "string", "empty", "bad-utf8"],
)
def test_malformed_json_is_refused(actors: Actors, body: bytes) -> None:
    before = snapshot()
    response = raw_post(body, usage_sig(settings.NETWORK_SECRET, body))
    assert_problem(response, 400, "malformed_json")
    assert snapshot() == before


def test_more_than_a_thousand_records_are_refused(actors: Actors, alice: Client) -> None:
    topup(alice, actors.device, "day-1g")
    before = snapshot()
    records = [record(f"r{i}", actors.device, 1) for i in range(1001)]
    response = network_post(Client(), USAGE, {"records": records})
    assert_problem(response, 422, "too_many_records")
    assert snapshot() == before


def test_a_thousand_records_are_rated_in_one_batch(actors: Actors, alice: Client) -> None:
    topup(alice, actors.device, "day-1g")
    records = [record(f"r{i}", actors.devices[i % 2], 1000 + i) for i in range(1000)]
    response = network_post(Client(), USAGE, {"records": records})
    assert response.status_code == 200, response.content
    assert response.json() == {"accepted": 1000, "duplicates": 0, "rejected": []}
    on_first = sum(1000 + i for i in range(0, 1000, 2))
    assert bundle_balances(actors.device) == [1 * GB - on_first]
    assert_every_byte_accounted()


def test_a_body_over_one_mib_is_refused(actors: Actors) -> None:
    before = snapshot()
    body = json.dumps(
        {"records": [record("r1", actors.device, 1)], "padding": "x" * (1024 * 1024)}
    ).encode()
    response = raw_post(body, usage_sig(settings.NETWORK_SECRET, body))
    assert_problem(response, 413, "payload_too_large")
    assert snapshot() == before


# --- authorization ------------------------------------------------------------------------


def test_a_bundle_allows_data_until_it_is_used_up(actors: Actors, alice: Client) -> None:
    device = actors.device
    assert authorize(device) == {"allowed": False, "remaining_bytes": 0, "reason": "no_data"}
    topup(alice, device, "day-1g")
    assert authorize(device) == {"allowed": True, "remaining_bytes": 1 * GB, "reason": "bundle"}
    report(record("r1", device, 1 * GB - 1))
    assert authorize(device) == {"allowed": True, "remaining_bytes": 1, "reason": "bundle"}
    report(record("r2", device, 1))
    assert authorize(device) == {"allowed": False, "remaining_bytes": 0, "reason": "no_data"}
    report(record("r3", device, 5 * MB))  # usage the network let through anyway: overage
    assert authorize(device) == {"allowed": False, "remaining_bytes": 0, "reason": "no_data"}
    assert_every_byte_accounted()


def test_pay_per_use_allows_data_while_credit_buys_a_mb(actors: Actors, alice: Client) -> None:
    device = actors.device
    topup(alice, device, "credit-50")
    topup(alice, device, "day-1g")
    assert authorize(device)["reason"] == "bundle"
    report(record("r1", device, 1 * GB))  # the bundle is gone, credit remains
    assert authorize(device) == {"allowed": True, "remaining_bytes": 0, "reason": "payg_credit"}
    report(record("r2", device, 499 * MB))  # 4990 fen: 10 fen left, exactly one MB
    assert credit(device) == TARIFF
    assert authorize(device) == {"allowed": True, "remaining_bytes": 0, "reason": "payg_credit"}
    # a dearer tariff from now on: 10 fen no longer buys a MB
    PaygTariff.objects.create(
        currency="CNY", price_per_mb=TARIFF + 1, effective_from=timezone.now()
    )
    assert authorize(device) == {
        "allowed": False,
        "remaining_bytes": 0,
        "reason": "insufficient_balance",
    }
    PaygTariff.objects.filter(price_per_mb=TARIFF + 1).delete()
    report(record("r3", device, 2 * MB))  # one MB paid, one MB overage
    assert credit(device) == 0
    usage = UsageRecord.objects.get(record_id="r3")
    assert (usage.payg_bytes, usage.overage_bytes, usage.charged) == (MB, MB, TARIFF)
    assert authorize(device) == {
        "allowed": False,
        "remaining_bytes": 0,
        "reason": "insufficient_balance",
    }
    assert_every_byte_accounted()


@pytest.mark.parametrize("status", [DeviceStatus.SUSPENDED, DeviceStatus.RETIRED])
def test_a_suspended_or_retired_device_is_not_allowed(
    actors: Actors, alice: Client, status: DeviceStatus
) -> None:
    device = actors.device
    topup(alice, device, "day-1g")
    topup(alice, device, "credit-50")
    Device.objects.filter(pk=device.pk).update(status=status)
    answer = authorize(device)
    assert answer["allowed"] is False
    assert answer["remaining_bytes"] == 1 * GB
    assert answer["reason"] == "device_not_rechargeable"


def test_a_bundle_not_yet_started_does_not_allow_data(actors: Actors, alice: Client) -> None:
    device = actors.device
    topup(alice, device, "day-1g")
    later = timezone.now() + timedelta(hours=1)
    Bundle.objects.filter(device=device).update(
        starts_at=later, expires_at=later + timedelta(days=1)
    )
    assert authorize(device) == {"allowed": False, "remaining_bytes": 0, "reason": "no_data"}


def test_authorization_of_an_unknown_iccid_is_not_found(actors: Actors) -> None:
    response = network_get(Client(), f"/network/v1/devices/{iccid(999)}/authorization")
    assert_problem(response, 404, "unknown_device")
    response = network_get(Client(), "/network/v1/devices/hello/authorization")
    assert_problem(response, 404, "unknown_device")


def test_authorization_accepts_an_iccid_as_printed(actors: Actors, alice: Client) -> None:
    topup(alice, actors.device, "day-1g")
    printed = f"{actors.device.iccid}F"
    assert authorize(printed)["reason"] == "bundle"


def test_times_are_utc_whatever_offset_the_network_sends(actors: Actors, alice: Client) -> None:
    device = actors.device
    topup(alice, device, "day-1g")
    start = Bundle.objects.get(device=device).starts_at + timedelta(minutes=5)
    beijing = start.astimezone(UTC).astimezone(timezone.get_fixed_timezone(480))
    body = record("r1", device, MB)
    body["started_at"] = beijing.isoformat()
    body["ended_at"] = (beijing + timedelta(minutes=1)).isoformat()
    assert report(body).json()["accepted"] == 1
    usage = UsageRecord.objects.get(record_id="r1")
    assert usage.started_at == start
    assert usage.bundle_bytes == MB
