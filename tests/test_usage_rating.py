"""Rating usage (simtopup.usage.rating) against an independent model, and its ordering and
concurrency properties.

Bundles and credit are bought the way a reseller buys them (orders.actions); only bundle
windows are moved afterwards, to put usage before, inside and after them.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simtopup.catalog.pricing import get_plan
from simtopup.devices.inventory import create_device
from simtopup.devices.models import Device
from simtopup.ledger.actions import system_account
from simtopup.ledger.audit import audit
from simtopup.ledger.models import BYTES, Account, Transfer
from simtopup.orders.models import Order, OrderStatus
from simtopup.resellers.actions import create_reseller, place_reseller_topup, wholesale_price
from simtopup.resellers.models import Reseller
from simtopup.usage import rating
from simtopup.usage.models import Bundle, UsageRecord
from simtopup.usage.rating import IngestResult, UsageIn, authorization, ingest
from tests.support import GB, MB, Actors, eid, iccid

TARIFF = 10  # fen per started MB (tests.support.make_plans)
CREDIT = 5000  # the credit-50 plan puts ¥50 on the card
_numbers = itertools.count(10_000)


# --- set-up -------------------------------------------------------------------------------


def rich_reseller() -> Reseller:
    reseller, _key = create_reseller(f"Agent {next(_numbers)}", initial_float=10**9)
    return reseller


def new_device() -> Device:
    n = next(_numbers)
    return create_device(kind="esim", iccid=iccid(n), eid=eid(n))


def buy(
    reseller: Reseller,
    device: Device,
    plan_code: str,
    window: tuple[datetime, datetime] | None = None,
) -> Order:
    """A reseller top-up as the reseller API places it; optionally move the bundle window."""
    plan = get_plan(plan_code)
    with transaction.atomic(durable=True):
        order = place_reseller_topup(
            reseller, device, plan, wholesale_price(reseller, plan), f"ref-{next(_numbers)}"
        )
    assert order.status == OrderStatus.FULFILLED
    if window is not None:
        assert Bundle.objects.filter(order=order).update(starts_at=window[0], expires_at=window[1])
    return order


def usage(rid: str, device: Device, size: int, started: datetime, seconds: int = 60) -> UsageIn:
    assert device.iccid is not None
    return UsageIn(rid, device.iccid, size, started, started + timedelta(seconds=seconds))


def balance(account_id: int) -> int:
    return Account.objects.values_list("balance", flat=True).get(pk=account_id)


def split(rid: str) -> tuple[int, int, int, int]:
    r = UsageRecord.objects.get(record_id=rid)
    return (r.bundle_bytes, r.payg_bytes, r.charged, r.overage_bytes)


def assert_every_byte_accounted() -> None:
    records = list(UsageRecord.objects.all())
    for r in records:
        assert r.bytes == r.bundle_bytes + r.payg_bytes + r.overage_bytes, r.record_id
    consumed = system_account("data_consumed", BYTES)
    into = Transfer.objects.filter(unit=BYTES, destination=consumed).aggregate(s=Sum("amount"))
    assert (into["s"] or 0) == sum(r.bytes for r in records)
    charged = Transfer.objects.filter(kind="payg_charge").aggregate(s=Sum("amount"))["s"] or 0
    assert charged == sum(r.charged for r in records)
    assert audit() == []


# --- direct rating ------------------------------------------------------------------------


def test_the_started_mb_is_charged_whole_but_only_its_bytes_count(actors: Actors) -> None:
    reseller, device = rich_reseller(), new_device()
    buy(reseller, device, "credit-50")
    now = timezone.now()
    result = ingest(
        [
            usage("exact", device, 3 * MB, now),
            usage("one-byte", device, 1, now + timedelta(seconds=1)),
            usage("just-over", device, MB + 1, now + timedelta(seconds=2)),
            usage("zero", device, 0, now + timedelta(seconds=3)),
        ]
    )
    assert (result.accepted, result.duplicates, result.rejected) == (4, 0, [])
    assert split("exact") == (0, 3 * MB, 3 * TARIFF, 0)
    assert split("one-byte") == (0, 1, TARIFF, 0)
    assert split("just-over") == (0, MB + 1, 2 * TARIFF, 0)
    assert split("zero") == (0, 0, 0, 0)
    device.refresh_from_db()
    assert balance(device.credit_account_id) == CREDIT - 6 * TARIFF
    assert_every_byte_accounted()


def test_credit_pays_only_for_the_whole_mb_it_can_afford(actors: Actors) -> None:
    reseller, device = rich_reseller(), new_device()
    buy(reseller, device, "credit-50")
    now = timezone.now()
    ingest([usage("most", device, 499 * MB + 7, now)])  # 500 started MB: all the credit
    assert split("most") == (0, 499 * MB + 7, CREDIT, 0)
    assert balance(device.credit_account_id) == 0
    ingest([usage("more", device, 3, now + timedelta(seconds=1))])
    assert split("more") == (0, 0, 0, 3)
    assert balance(device.overage_account_id) == -3
    device.refresh_from_db()
    assert authorization(device)["reason"] == "insufficient_balance"
    assert_every_byte_accounted()


def test_a_record_spans_bundles_then_credit_then_overage(actors: Actors) -> None:
    reseller, device = rich_reseller(), new_device()
    now = timezone.now()
    hour, day = timedelta(hours=1), timedelta(days=1)
    buy(reseller, device, "day-1g", (now - hour, now + day))  # expires first
    buy(reseller, device, "day-1g", (now - hour, now + 2 * day))
    buy(reseller, device, "credit-50")
    ingest([usage("big", device, 2 * GB + 500 * MB + MB // 2 + 10, now)])
    # 2 GB from the bundles, 500 MB of credit, and half a MB the credit cannot start
    assert split("big") == (2 * GB, 500 * MB, CREDIT, MB // 2 + 10)
    assert_every_byte_accounted()


def test_bundles_are_drained_in_expiry_order_then_by_age(actors: Actors) -> None:
    reseller, device = rich_reseller(), new_device()
    now = timezone.now()
    start, end = now - timedelta(hours=1), now + timedelta(days=3)
    late = buy(reseller, device, "month-20g", (start, end + timedelta(days=1)))
    first = buy(reseller, device, "day-1g", (start, end))
    second = buy(reseller, device, "day-1g", (start, end))  # same expiry: the older goes first
    ingest([usage("r1", device, 1 * GB + 10, now)])

    def left(order: Order) -> int:
        return Bundle.objects.select_related("account").get(order=order).account.balance

    assert (left(first), left(second), left(late)) == (0, 1 * GB - 10, 20 * GB)
    assert_every_byte_accounted()


def test_an_old_record_drains_the_bundle_that_was_valid_when_it_started(
    actors: Actors,
) -> None:
    """A batch mixes late-delivered records with fresh ones: each drains only the bundles
    valid when it started, so the old record takes the expired bundle's data, not today's."""
    reseller, device = rich_reseller(), new_device()
    now = timezone.now()
    old = buy(reseller, device, "day-1g", (now - timedelta(days=3), now - timedelta(days=2)))
    buy(reseller, device, "day-1g", (now - timedelta(hours=1), now + timedelta(days=1)))
    result = ingest(
        [
            usage("then", device, 10, now - timedelta(days=2, hours=12)),
            usage("now", device, 20, now),
        ]
    )
    assert result.accepted == 2
    assert split("then") == (10, 0, 0, 0)
    assert split("now") == (20, 0, 0, 0)
    assert Bundle.objects.get(order=old).account.balance == 1 * GB - 10
    assert_every_byte_accounted()


def test_every_record_is_counted_once_in_the_response(actors: Actors) -> None:
    reseller, device = rich_reseller(), new_device()
    buy(reseller, device, "day-1g")
    now = timezone.now()
    backwards = UsageIn("b", device.iccid or "", 1, now, now - timedelta(seconds=1))
    ingest([usage("a", device, 1, now)])
    records = [
        usage("a", device, 1, now),  # rated in an earlier batch
        backwards,
        usage("c", device, 1, now),
        usage("c", device, 1, now),  # twice in this batch
        UsageIn("d", iccid(9_999_999), 1, now, now),
        usage("b", device, 1, now),  # the rejected id, now correct: rated
    ]
    result = ingest(records)
    assert result == IngestResult(
        accepted=2,
        duplicates=2,
        rejected=[
            {"id": "b", "code": "invalid_time_range"},
            {"id": "d", "code": "unknown_device"},
        ],
    )
    assert result.accepted + result.duplicates + len(result.rejected) == len(records)
    assert_every_byte_accounted()


# --- the model ----------------------------------------------------------------------------


@dataclass
class ModelBundle:
    starts: datetime
    expires: datetime
    balance: int
    order: int  # creation order: the tie-break after expiry


@dataclass
class ModelDevice:
    payg: bool
    credit: int
    bundles: list[ModelBundle]
    overage: int = 0


@dataclass
class Scenario:
    devices: list[tuple[list[tuple[str, int]], bool]]  # (bundles (plan, offset h), payg?)
    batches: list[list[tuple[str, int, int, int, int]]]  # (id, device, bytes, offset min, s)
    orders: list[list[int]] = field(default_factory=list)  # a listing order per batch


PLANS = {"day-1g": (1 * GB, 24), "month-20g": (20 * GB, 720)}
SIZES = st.one_of(st.integers(0, 3 * MB), st.integers(0, 2 * GB), st.integers(0, 25 * GB))


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    devices = [
        (
            draw(
                st.lists(
                    st.tuples(
                        st.sampled_from(sorted(PLANS)),
                        st.sampled_from([-800, -30, -2, 0, 5]),
                    ),
                    max_size=3,
                )
            ),
            draw(st.booleans()),
        )
        for _ in range(2)
    ]
    ids = [f"r{i:02d}" for i in range(draw(st.integers(1, 14)))]
    records: list[tuple[str, int, int, int, int]] = []
    for rid in ids:
        if records and draw(st.integers(0, 5)) == 0:
            records.append(draw(st.sampled_from(records)))  # the network resends a record
            continue
        offset = draw(st.sampled_from([-900, -40, -3, -1, 0, 1, 6, 30])) * 60 + draw(
            st.integers(0, 59)
        )
        seconds = draw(st.sampled_from([0, 60, 3600, -1]))  # -1: ends before it starts
        records.append((rid, draw(st.integers(0, 1)), draw(SIZES), offset, seconds))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(records) - 1)), max_size=2)))
    batches = [records[a:b] for a, b in itertools.pairwise([0, *cuts, len(records)])]
    batches = [b for b in batches if b]
    orders = [draw(st.permutations(range(len(b)))) for b in batches]
    return Scenario(devices, batches, orders)


def model_run(
    scenario: Scenario, base: datetime
) -> tuple[list[IngestResult], dict[str, tuple[int, int, int, int]], list[ModelDevice]]:
    """The rules, written again independently: soonest-expiring bundle first (then oldest)
    among those whose [starts, expires) holds the record's start; then whole started MB of
    credit for pay-per-use cards; the rest is overage. Records of a batch are rated in time
    order (then id); an id is rated once, ever."""
    devices = []
    for bundles, payg in scenario.devices:
        owned = []
        for n, (plan, offset) in enumerate(bundles):
            size, hours = PLANS[plan]
            starts = base + timedelta(hours=offset)
            owned.append(ModelBundle(starts, starts + timedelta(hours=hours), size, n))
        owned.sort(key=lambda b: (b.expires, b.order))
        devices.append(ModelDevice(payg, CREDIT if payg else 0, owned))
    rated: dict[str, tuple[int, int, int, int]] = {}
    results = []
    for batch in scenario.batches:
        result, seen, todo = IngestResult(), set(), []
        for rid, d, size, offset, seconds in batch:
            if seconds < 0:
                result.rejected.append({"id": rid, "code": "invalid_time_range"})
            elif rid in seen or rid in rated:
                result.duplicates += 1
            else:
                seen.add(rid)
                todo.append((base + timedelta(minutes=offset), rid, d, size))
        for started, rid, d, size in sorted(todo):
            device, left = devices[d], size
            from_bundles = from_credit = charged = 0
            for b in device.bundles:
                if b.starts <= started < b.expires:
                    take = min(left, b.balance)
                    b.balance -= take
                    left -= take
                    from_bundles += take
            if left and device.payg:
                mbs = min((left + MB - 1) // MB, device.credit // TARIFF)
                charged, from_credit = mbs * TARIFF, min(left, mbs * MB)
                device.credit -= charged
                left -= from_credit
            device.overage += left
            rated[rid] = (from_bundles, from_credit, charged, left)
            result.accepted += 1
        results.append(result)
    return results, rated, devices


def check_against_the_model(scenario: Scenario) -> None:
    """Run ``scenario`` twice on fresh, identical pairs of devices: once with every batch as
    drawn, once with every batch in another order. Both must match the model exactly."""
    base = timezone.now().replace(microsecond=0)
    expected_results, expected_rating, expected_devices = model_run(scenario, base)
    reseller = rich_reseller()
    for copy in ("as-drawn", "reordered"):
        prefix = f"x{next(_numbers)}-"
        pair = []
        for bundles, payg in scenario.devices:
            device = new_device()
            for plan, offset in bundles:
                starts = base + timedelta(hours=offset)
                buy(reseller, device, plan, (starts, starts + timedelta(hours=PLANS[plan][1])))
            if payg:
                buy(reseller, device, "credit-50")
            pair.append(device)
        for batch, order, expected in zip(
            scenario.batches, scenario.orders, expected_results, strict=True
        ):
            records = [
                usage(prefix + rid, pair[d], size, base + timedelta(minutes=offset), seconds)
                for rid, d, size, offset, seconds in batch
            ]
            if copy == "reordered":
                records = [records[i] for i in order]
            result = ingest(records)
            assert (result.accepted, result.duplicates) == (
                expected.accepted,
                expected.duplicates,
            ), copy
            got = sorted((r["id"].removeprefix(prefix), r["code"]) for r in result.rejected)
            assert got == sorted((r["id"], r["code"]) for r in expected.rejected), copy
        rated = {
            r.record_id.removeprefix(prefix): (
                r.bundle_bytes,
                r.payg_bytes,
                r.charged,
                r.overage_bytes,
            )
            for r in UsageRecord.objects.filter(record_id__startswith=prefix)
        }
        assert rated == expected_rating, copy
        for device, model in zip(pair, expected_devices, strict=True):
            owned = (
                Bundle.objects.filter(device=device)
                .select_related("account")
                .order_by("expires_at", "id")
            )
            assert [b.account.balance for b in owned] == [b.balance for b in model.bundles]
            assert balance(device.credit_account_id) == model.credit
            assert balance(device.overage_account_id) == -model.overage


def test_rating_agrees_with_the_model_in_any_listing_order(actors: Actors) -> None:
    # The examples share the test's transaction, each on devices of its own; the ledger as a
    # whole is audited once they have all run.
    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(scenario=scenarios())
    def examples(scenario: Scenario) -> None:
        check_against_the_model(scenario)

    examples()
    assert UsageRecord.objects.exists()
    assert_every_byte_accounted()


# --- ordering independence and concurrency ------------------------------------------------


def two_devices_with_data(reseller: Reseller) -> tuple[Device, Device]:
    a, b = new_device(), new_device()
    for device in (a, b):
        buy(reseller, device, "day-1g")
        buy(reseller, device, "credit-50")
    return a, b


def interleaved(a: Device, b: Device, prefix: str, now: datetime) -> list[UsageIn]:
    """Records for A and B at the same instants, enough to run through bundle and credit."""
    sizes = [300 * MB, 700 * MB + 1, 200 * MB + 3, 400 * MB]
    records = []
    for i, size in enumerate(sizes):
        records.append(usage(f"{prefix}a{i}", a, size, now))
        records.append(usage(f"{prefix}b{i}", b, size + MB, now))
    return records


def outcome(a: Device, b: Device, prefix: str) -> list[Any]:
    rows = UsageRecord.objects.filter(record_id__startswith=prefix).order_by("record_id")
    return [
        [(r.record_id.removeprefix(prefix), split(r.record_id)) for r in rows],
        *[
            (
                [x.account.balance for x in Bundle.objects.filter(device=d)],
                balance(d.credit_account_id),
                balance(d.overage_account_id),
            )
            for d in (a, b)
        ],
    ]


def test_a_batch_rates_the_same_with_device_a_or_device_b_first(actors: Actors) -> None:
    reseller = rich_reseller()
    a1, b1 = two_devices_with_data(reseller)
    a2, b2 = two_devices_with_data(reseller)
    now = timezone.now()  # after the purchases: inside the bundles' windows
    forward = interleaved(a1, b1, "fwd-", now)
    backward = interleaved(a2, b2, "bwd-", now)
    a_first = sorted(forward, key=lambda r: r.iccid != a1.iccid)  # A's records, then B's
    b_first = sorted(backward, key=lambda r: r.iccid != b2.iccid)  # B's records, then A's
    assert ingest(a_first).accepted == ingest(b_first).accepted == 8
    assert outcome(a1, b1, "fwd-") == outcome(a2, b2, "bwd-")
    # and it really ran through every source: bundle, then credit, then overage
    (_rows, (bundles, credit, overage), _b) = outcome(a1, b1, "fwd-")
    assert (bundles, credit) == ([0], 0)
    assert overage < 0
    assert_every_byte_accounted()


def run_in_threads(jobs: list[Callable[[], Any]], timeout: float = 60) -> list[Any]:
    """Release ``jobs`` together, one thread (and database connection) each."""
    start = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []

    def work(i: int, job: Callable[[], Any]) -> None:
        try:
            start.wait(timeout)
            results[i] = job()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=work, args=(i, job), daemon=True) for i, job in enumerate(jobs)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(t.is_alive() for t in threads), f"still running after {timeout} s"
    if errors:
        raise errors[0]
    return results


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_over_two_devices_in_opposite_orders_neither_deadlock_nor_double_charge(
    actors: Actors,
) -> None:
    """On PostgreSQL two batches that lock A then B and B then A deadlock at once unless
    every batch locks in one global order; here eight of them race, each sent twice."""
    a, b = two_devices_with_data(rich_reseller())
    now = timezone.now()  # after the purchases: inside the bundles' windows
    jobs: list[Callable[[], IngestResult]] = []
    sent: dict[str, int] = {}
    for n in range(8):
        records = interleaved(a, b, f"t{n}-", now + timedelta(seconds=n))
        for r in records:
            sent[r.id] = r.bytes
        ordered = sorted(records, key=lambda r: r.iccid != (a.iccid if n % 2 else b.iccid))
        jobs += [partial(ingest, ordered), partial(ingest, ordered[::-1])]
    results = run_in_threads(jobs)
    assert sum(r.accepted for r in results) == len(sent) == 64
    assert sum(r.duplicates for r in results) == 64
    assert all(r.rejected == [] for r in results)
    rows = {r.record_id: r for r in UsageRecord.objects.all()}
    assert {rid: r.bytes for rid, r in rows.items()} == sent
    for d in (a, b):
        mine = [r for r in rows.values() if r.device_id == d.pk]
        bundle = Bundle.objects.get(device=d)
        assert sum(r.bundle_bytes for r in mine) == 1 * GB - bundle.account.balance
        assert sum(r.charged for r in mine) == CREDIT - balance(d.credit_account_id)
        assert sum(r.overage_bytes for r in mine) == -balance(d.overage_account_id)
        # the race ran through everything: the bundle and the credit are both used up
        assert (bundle.account.balance, balance(d.credit_account_id)) == (0, 0)
    assert_every_byte_accounted()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_record_id_inserted_by_a_racing_batch_is_a_duplicate_not_an_error(
    actors: Actors, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Force the interleaving: after our batch has read which ids are already rated, a
    competing batch commits the same id (for another device, so it takes none of our locks).
    Our insert then hits the unique record id; the retry must see a duplicate, charge
    nothing, and roll back everything the first attempt posted."""
    if connection.vendor == "sqlite":
        pytest.skip("SQLite has one writer: the competitor could not commit inside our batch")
    a, b = two_devices_with_data(rich_reseller())
    now = timezone.now()  # after the purchases: inside the bundles' windows
    system_account("data_consumed", BYTES)  # so neither side creates it under the other
    real_schedule = rating.tariff_schedule
    raced = threading.Event()
    competitor: list[IngestResult] = []

    # The tariff is read right after the batch has read which ids are already rated: the
    # moment to let the competitor commit.
    def schedule_after_a_competitor_commits() -> Callable[[datetime], int]:
        if not raced.is_set():  # only our first attempt; the competitor passes straight on
            raced.set()
            competitor.extend(
                run_in_threads([lambda: ingest([usage("same", b, 5 * MB, now)])], timeout=30)
            )
        return real_schedule()

    monkeypatch.setattr(rating, "tariff_schedule", schedule_after_a_competitor_commits)
    ours = ingest([usage("same", a, 7 * MB, now), usage("mine", a, 3 * MB, now)])
    assert competitor[0].accepted == 1
    assert (ours.accepted, ours.duplicates, ours.rejected) == (1, 1, [])
    same = UsageRecord.objects.get(record_id="same")
    assert (same.device_id, same.bytes) == (b.pk, 5 * MB)
    assert UsageRecord.objects.get(record_id="mine").device_id == a.pk
    assert Bundle.objects.get(device=a).account.balance == 1 * GB - 3 * MB
    assert Bundle.objects.get(device=b).account.balance == 1 * GB - 5 * MB
    assert_every_byte_accounted()
