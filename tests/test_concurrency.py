"""Real concurrency: many threads, each with its own database connection, through the HTTP
stack at once. Committed data only (``transaction=True``), so the database's own locking and
constraints decide who wins — on SQLite as on PostgreSQL."""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.models import Sum
from django.test import Client
from django.utils import timezone

from simtopup.ledger.actions import system_account
from simtopup.ledger.audit import audit
from simtopup.ledger.models import BYTES, Account, AccountKind, Transfer
from simtopup.orders.models import Order, OrderStatus
from simtopup.resellers.actions import create_reseller
from simtopup.usage.models import UsageRecord
from tests.support import MB, Actors, float_of, network_post, post_json, reseller_client

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def run_concurrently[T](
    jobs: list[Callable[[], T]], *, threads: int, timeout: float = 60
) -> list[T]:
    """Run ``jobs`` on ``threads`` threads released together by a barrier; each thread has its
    own database connection, closed when it ends. Results come back in job order; the first
    exception a job raised is raised here."""
    pending: queue.SimpleQueue[tuple[int, Callable[[], T]]] = queue.SimpleQueue()
    for item in enumerate(jobs):
        pending.put(item)
    results: dict[int, T] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def work() -> None:
        try:
            start.wait(timeout)
            while True:
                try:
                    index, job = pending.get_nowait()
                except queue.Empty:
                    return
                try:
                    results[index] = job()
                except BaseException as exc:
                    errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + timeout
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
    assert not any(w.is_alive() for w in workers), f"jobs still running after {timeout} s"
    if errors:
        raise errors[0]
    assert len(results) == len(jobs)
    return [results[i] for i in range(len(jobs))]


def topup_job(key: str, body: dict[str, Any], **headers: str) -> Callable[[], Any]:
    def job() -> Any:
        return post_json(reseller_client(key), "/reseller/v1/topups", body, **headers)

    return job


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    "lease_seconds",
    [60, 0],
    # 0: every duplicate finds the first request's lease run out and takes the key over.
    ids=["lease-held", "lease-runs-out"],
)
def test_one_idempotency_key_sent_fifty_times_at_once_charges_once(
    actors: Actors, caplog: pytest.LogCaptureFixture, settings: Any, lease_seconds: int
) -> None:
    settings.IDEMPOTENCY_LEASE_SECONDS = lease_seconds
    body = {"device": actors.device.iccid, "plan": "day-1g", "reference": "same-sale"}
    headers = {"Idempotency-Key": "one-key-50-times"}

    responses = run_concurrently(
        [topup_job(actors.alice_key, body, **headers) for _ in range(50)], threads=50
    )

    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}, statuses
    created = [r for r in responses if r.status_code == 201]
    originals = [r for r in created if "Idempotent-Replayed" not in r.headers]
    assert len(originals) == 1, statuses
    original = originals[0].json()
    assert original["status"] == "fulfilled"
    for r in created:
        assert r.json() == original
    for r in responses:
        if r.status_code == 409:
            assert r.headers["Content-Type"] == "application/problem+json"
            assert r.json()["code"] == "request_in_progress"
            assert r.headers["Retry-After"].isdigit()
    # The retry a client makes after a 409 gets the original answer.
    replay = post_json(reseller_client(actors.alice_key), "/reseller/v1/topups", body, **headers)
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == original
    assert Order.objects.count() == 1
    assert Transfer.objects.filter(kind="order_payment").count() == 1
    assert float_of(actors.alice) == 100000 - 460
    assert no_errors_logged(caplog) == []
    assert audit() == []


@pytest.mark.parametrize(("plan", "retail"), [("day-1g", 500), ("credit-50", 5000)])
def test_floats_that_cover_half_the_attempts_admit_exactly_the_affordable_ones(
    actors: Actors, caplog: pytest.LogCaptureFixture, plan: str, retail: int
) -> None:
    attempts, affordable = 30, 15
    resellers = []
    for n in range(10):
        price = (retail * (10000 - n * 100) + 5000) // 10000  # the plan less n %
        reseller, key = create_reseller(
            f"Agent {n}", discount_bps=n * 100, initial_float=affordable * price
        )
        resellers.append((reseller, key, price))
    jobs, owner = [], []
    for n, (_reseller, key, _price) in enumerate(resellers):
        for i in range(attempts):
            device = actors.devices[(n + i) % len(actors.devices)]
            body = {"device": device.iccid, "plan": plan, "reference": f"sale-{n}-{i}"}
            jobs.append(topup_job(key, body, **{"Idempotency-Key": f"key-{n}-{i}"}))
            owner.append(n)
    order = list(range(len(jobs)))
    random.Random(7).shuffle(order)

    shuffled = run_concurrently([jobs[i] for i in order], threads=16, timeout=90)
    responses = [r for _i, r in sorted(zip(order, shuffled, strict=True))]

    assert Counter(r.status_code for r in responses) == {201: 150, 402: 150}
    for n, (reseller, _key, price) in enumerate(resellers):
        mine = [r for r, o in zip(responses, owner, strict=True) if o == n]
        assert Counter(r.status_code for r in mine) == {201: affordable, 402: affordable}
        for r in mine:
            if r.status_code == 402:
                assert r.json()["code"] == "insufficient_float"
            else:
                assert r.json()["status"] == "fulfilled"
        assert float_of(reseller) == 0
        fulfilled = Order.objects.filter(reseller=reseller, status=OrderStatus.FULFILLED)
        assert fulfilled.count() == affordable
        assert set(fulfilled.values_list("amount", flat=True)) == {price}
    assert not Account.objects.filter(kind=AccountKind.RESELLER_FLOAT, balance__lt=0).exists()
    debits = Transfer.objects.filter(kind="order_payment").aggregate(s=Sum("amount"))["s"]
    orders = Order.objects.filter(status=OrderStatus.FULFILLED).aggregate(s=Sum("amount"))["s"]
    assert debits == orders == sum(affordable * price for _r, _k, price in resellers)
    if plan == "credit-50":  # every sale put the face value on a card, no more
        cards = Account.objects.filter(kind=AccountKind.DEVICE_CREDIT)
        assert cards.aggregate(s=Sum("balance"))["s"] == 150 * retail
    assert Order.objects.exclude(status=OrderStatus.FULFILLED).count() == 0
    assert no_errors_logged(caplog) == []
    assert audit() == []


def test_usage_racing_top_ups_on_one_device_accounts_for_every_byte(
    actors: Actors, caplog: pytest.LogCaptureFixture
) -> None:
    device = actors.device
    rng = random.Random(11)
    jobs: list[Callable[[], Any]] = []
    for i in range(12):
        plan = "credit-50" if i % 3 == 0 else "day-1g"
        body = {"device": device.iccid, "plan": plan, "reference": f"race-{i}"}
        jobs.append(topup_job(actors.alice_key, body))
    sent: dict[str, int] = {}
    for b in range(40):
        records = []
        for r in range(5):
            record_id = f"usage-{b}-{r}"
            sent[record_id] = rng.randint(1, 200 * MB)
            records.append((record_id, sent[record_id]))
        # The network delivers every batch twice: the second copy must be all duplicates.
        jobs += [usage_job(device.iccid, records), usage_job(device.iccid, records)]
    rng.shuffle(jobs)

    responses = run_concurrently(jobs, threads=12, timeout=90)

    topups = [r for r in responses if r.request["PATH_INFO"].startswith("/reseller/")]
    usage = [r for r in responses if r.request["PATH_INFO"].startswith("/network/")]
    assert [r.status_code for r in topups] == [201] * 12, [r.content for r in topups]
    assert [r.status_code for r in usage] == [200] * 80, [r.content for r in usage]
    assert all(r.json()["rejected"] == [] for r in usage)
    assert sum(r.json()["accepted"] for r in usage) == len(sent) == 200
    assert sum(r.json()["duplicates"] for r in usage) == 200

    rows = list(UsageRecord.objects.filter(device=device))
    assert {u.record_id: u.bytes for u in rows} == sent
    for u in rows:
        assert u.bytes == u.bundle_bytes + u.payg_bytes + u.overage_bytes, u.record_id
    consumed = system_account("data_consumed", BYTES)
    into_consumed = Transfer.objects.filter(destination=consumed)

    def total(qs: Any) -> int:
        return int(qs.aggregate(s=Sum("amount"))["s"] or 0)

    assert total(into_consumed) == sum(sent.values())
    assert total(into_consumed.filter(kind="usage")) == sum(u.bundle_bytes for u in rows)
    assert total(into_consumed.filter(kind="payg_usage")) == sum(u.payg_bytes for u in rows)
    assert total(into_consumed.filter(kind="overage")) == sum(u.overage_bytes for u in rows)
    assert total(Transfer.objects.filter(kind="payg_charge")) == sum(u.charged for u in rows)
    # The race really mixed all three sources: 8 GB of bundles, ¥200 of credit, ~20 GB used.
    assert all(sum(getattr(u, f) for u in rows) > 0 for f in ("bundle_bytes", "overage_bytes"))
    assert no_errors_logged(caplog) == []
    assert audit() == []


def usage_job(iccid: str | None, records: list[tuple[str, int]]) -> Callable[[], Any]:
    def job() -> Any:
        started = timezone.now()
        body = {
            "records": [
                {
                    "id": record_id,
                    "iccid": iccid,
                    "bytes": size,
                    "started_at": started.isoformat(),
                    "ended_at": (started + timedelta(minutes=5)).isoformat(),
                }
                for record_id, size in records
            ]
        }
        return network_post(Client(), "/network/v1/usage", body)

    return job
