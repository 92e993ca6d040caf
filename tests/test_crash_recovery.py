"""Crash recovery of asynchronous fulfilment against a slow upstream wholesale API (a fake
Airalo Partner API, which has no idempotency key).

A real ``simtopup worker`` process, pointed at the test database, is killed with SIGKILL while
it waits for Airalo, which has already made the top-up; a restarted worker's reconciler must
take the stale lease over, find that top-up by our reference instead of buying another, and
finish the order exactly once. And an upstream that never recovers: retries with backoff,
then the order fails and the float is refunded once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from simtopup.ledger.audit import audit
from simtopup.ledger.models import Transfer
from simtopup.orders.actions import fulfil_pending, reconcile
from simtopup.orders.models import Order, OrderStatus
from simtopup.resellers.models import Reseller, WebhookDelivery
from simtopup.usage.models import Bundle
from tests.fake_upstream import FakeAiralo, link_plans
from tests.support import GB, Actors, float_of, post_json, reseller_client

pytestmark = pytest.mark.django_db(transaction=True)


def worker_database_url() -> str:
    """The URL of the database this test runs on, for another process."""
    db = django_settings.DATABASES["default"]
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    if connection.vendor == "postgresql":
        auth = quote(db.get("USER") or "", safe="")
        if db.get("PASSWORD"):
            auth += ":" + quote(db["PASSWORD"], safe="")
        host = db.get("HOST") or "127.0.0.1"
        port = f":{db['PORT']}" if db.get("PORT") else ""
        return f"postgresql://{auth}{'@' if auth else ''}{host}{port}/{quote(db['NAME'])}"
    raise NotImplementedError(db["ENGINE"])


class Workers:
    """``simtopup worker`` processes on the test database; every one is stopped at teardown."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.env = env
        self.running: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []

    def start(self, **env: str) -> subprocess.Popen[bytes]:
        """Start a worker; ``env`` overrides variables (``RECONCILE_INTERVAL_SECONDS="60"``)."""
        executable = Path(sys.executable).with_name("simtopup")
        command = (
            [str(executable)] if executable.exists() else [sys.executable, "-m", "simtopup.cli"]
        )
        log = (self.log_dir / f"worker-{len(self.running) + 1}.log").open("wb")
        process = subprocess.Popen(
            [*command, "worker", "--poll", "0.1"],
            env={**self.env, **{f"SIMTOPUP_{name}": value for name, value in env.items()}},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.running.append((process, log))
        return process

    def output(self, process: subprocess.Popen[bytes]) -> str:
        for p, log in self.running:
            if p is process:
                log.flush()
                return Path(log.name).read_text(errors="replace")
        return ""

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 10) -> int:
        """SIGTERM (the worker finishes its task and exits), SIGKILL if it will not."""
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        return process.returncode

    def stop_all(self) -> None:
        for process, log in self.running:
            try:
                self.stop(process)
            finally:
                log.close()


@pytest.fixture
def upstream() -> Iterator[FakeAiralo]:
    with FakeAiralo() as server:
        yield server


@pytest.fixture
def workers(transactional_db: None, upstream: FakeAiralo, tmp_path: Path) -> Iterator[Workers]:
    # Depends on transactional_db so the workers are gone before the database is flushed.
    settings_env = {
        "SIMTOPUP_DATABASE_URL": worker_database_url(),
        **upstream.settings_env(),
        "SIMTOPUP_UPSTREAM_TIMEOUT_SECONDS": "20",
        "SIMTOPUP_FULFILMENT_LEASE_SECONDS": "2",
        "SIMTOPUP_RECONCILE_INTERVAL_SECONDS": "1",
        "SIMTOPUP_LOG_LEVEL": "INFO",
    }
    # A SIMTOPUP_X_FILE variable would win over SIMTOPUP_X (settings.env): drop those.
    inherited = {k: v for k, v in os.environ.items() if k.removesuffix("_FILE") not in settings_env}
    env = {**inherited, **settings_env, "PYTHONUNBUFFERED": "1"}
    pool = Workers(tmp_path, env)
    try:
        yield pool
    finally:
        upstream.release()  # a worker blocked on the upstream can then stop gracefully
        pool.stop_all()


@pytest.fixture
def async_adapter(settings: Any, upstream: FakeAiralo, actors: Actors) -> None:
    upstream.configure(settings)
    link_plans(**{"day-1g": "fake-1gb-1d-topup"})


def wait_until(condition: Callable[[], bool], timeout: float, why: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(why())
        time.sleep(0.1)


def place_topup(actors: Actors) -> int:
    response = post_json(
        reseller_client(actors.alice_key),
        "/reseller/v1/topups",
        {"device": actors.device.iccid, "plan": "day-1g", "reference": "async-1"},
    )
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "processing"
    return int(response.json()["id"])


def fulfil_tasks(order_id: int) -> list[DBTaskResult]:
    return [
        t
        for t in DBTaskResult.objects.filter(task_path__endswith="fulfil_order_task")
        if t.args_kwargs["args"] == [order_id]
    ]


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.usefixtures("async_adapter")
@pytest.mark.parametrize("killed_in", ["task", "reconciler"])
def test_a_worker_killed_mid_fulfilment_is_taken_over_and_fulfils_once(
    actors: Actors, upstream: FakeAiralo, workers: Workers, killed_in: str
) -> None:
    upstream.hold()  # Airalo tops up at once but is slow to answer
    order_id = place_topup(actors)
    key = f"simtopup-order-{order_id}"

    if killed_in == "task":
        # The reconciler leaves young paid orders alone: the queued task claims the order.
        first = workers.start(RECONCILE_INTERVAL_SECONDS="60")
    else:
        # The order is older than the reconcile interval: the startup pass claims it.
        paid_at = Order.objects.get(pk=order_id).paid_at
        assert paid_at is not None
        wait_until(
            lambda: timezone.now() > paid_at + timedelta(seconds=1.2), 5, lambda: "clock stuck"
        )
        first = workers.start()
    wait_until(
        lambda: upstream.arrived.is_set() or first.poll() is not None,
        30,
        lambda: "the worker never called the upstream:\n" + workers.output(first),
    )
    assert first.poll() is None, workers.output(first)
    os.kill(first.pid, signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    order = Order.objects.get(pk=order_id)
    assert (order.status, order.attempts) == (OrderStatus.FULFILLING, 1)
    assert order.lease_until is not None
    assert not Bundle.objects.filter(order_id=order_id).exists()
    assert upstream.granted[key] == 1  # granted upstream; the answer died with the worker
    # A task killed mid-run stays RUNNING in the queue for ever: only the reconciler can help.
    [task] = fulfil_tasks(order_id)
    assert task.status == ("RUNNING" if killed_in == "task" else "READY")
    upstream.release()
    # Restart once the dead worker's lease has run out, so that the new worker's first
    # reconciler pass, not the queue, decides who finishes the order.
    lease_until = order.lease_until
    wait_until(lambda: timezone.now() > lease_until, 10, lambda: "the lease never ran out")

    second = workers.start()

    def fulfilled() -> bool:
        assert second.poll() is None, workers.output(second)
        return Order.objects.get(pk=order_id).status == OrderStatus.FULFILLED

    wait_until(fulfilled, 30, lambda: "not fulfilled after restart:\n" + workers.output(second))
    assert workers.stop(second) == 0, workers.output(second)
    # The stale lease was taken over by the reconciler.
    assert "reconciler: orders {'fulfilled': 1}" in workers.output(second)

    order = Order.objects.get(pk=order_id)
    assert order.attempts == 2
    assert order.receipt_no
    bundle = Bundle.objects.get(order_id=order_id)
    topup = upstream.topup_for(key)
    assert bundle.granted_bytes == 1 * GB
    # The bundle starts when Airalo made the top-up, not when the second worker found it.
    assert bundle.starts_at.strftime("%Y-%m-%d %H:%M:%S") == topup["created_at"]
    assert bundle.account.balance == 1 * GB
    assert Bundle.objects.count() == 1
    assert Transfer.objects.filter(kind="order_payment").count() == 1
    assert Transfer.objects.filter(kind="bundle_grant").count() == 1
    assert float_of(actors.alice) == 100000 - 460
    # Airalo has no idempotency key: the second attempt looked the top-up up by our reference
    # (the description) and did not order it again.
    [call] = upstream.calls_for(key)
    assert call.body == {
        "package_id": "fake-1gb-1d-topup",
        "iccid": actors.device.iccid,
        "description": key,
    }
    assert upstream.lookups == 1
    assert dict(upstream.granted) == {key: 1}
    assert audit() == []


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.usefixtures("async_adapter")
def test_an_upstream_that_keeps_failing_is_retried_with_backoff_then_refunded(
    actors: Actors, upstream: FakeAiralo, settings: Any
) -> None:
    settings.FULFILMENT_BACKOFF = [1, 1]  # two retries a second apart, then give up
    Reseller.objects.filter(pk=actors.alice.pk).update(
        webhook_url="http://127.0.0.1:9/simtopup-hooks", webhook_secret="whsec-alice"
    )
    upstream.fail_with = (503, {"data": [], "meta": {"message": "Service Unavailable"}})
    order_id = place_topup(actors)
    key = f"simtopup-order-{order_id}"

    assert fulfil_pending(order_id) == "retry"
    order = Order.objects.get(pk=order_id)
    assert (order.status, order.attempts) == (OrderStatus.PAID, 1)
    assert order.failure_detail == "airalo answered 503"
    assert order.next_attempt_at is not None
    assert order.next_attempt_at > timezone.now()
    assert float_of(actors.alice) == 100000 - 460  # held in clearing meanwhile
    # The backoff holds the order back: neither its task nor the reconciler may run it yet.
    assert fulfil_pending(order_id) == "not_claimable"
    assert reconcile() == {}
    # … and its retry is queued for then (the reconciler would find it if the queue lost it).
    tasks = fulfil_tasks(order_id)
    assert len(tasks) == 2
    assert any(abs(t.run_after - order.next_attempt_at) < timedelta(seconds=1) for t in tasks)

    outcomes: list[dict[str, int]] = []

    def failed() -> bool:
        outcome = reconcile()
        if outcome:
            outcomes.append(outcome)
        return Order.objects.get(pk=order_id).status == OrderStatus.FAILED

    wait_until(failed, 15, lambda: f"order not failed; reconciler said {outcomes}")
    assert outcomes == [{"retry": 1}, {"failed": 1}]

    order = Order.objects.get(pk=order_id)
    assert order.attempts == 3
    assert order.failure_code == "fulfilment_failed"
    assert len(upstream.calls_for(key)) == 3
    assert upstream.granted[key] == 0
    assert not Bundle.objects.filter(order_id=order_id).exists()
    assert float_of(actors.alice) == 100000
    refunds = Transfer.objects.filter(kind="order_refund")
    assert [(t.amount, t.destination_id) for t in refunds] == [(460, actors.alice.float_account_id)]
    deliveries = WebhookDelivery.objects.filter(reseller=actors.alice, event="topup.failed")
    assert deliveries.count() == 1
    payload = deliveries.get().payload
    assert payload["type"] == "topup.failed"
    assert payload["data"]["id"] == order_id
    assert payload["data"]["status"] == "failed"
    assert payload["data"]["failure_code"] == "fulfilment_failed"

    # Finished is finished: later tasks and reconciler passes change nothing.
    assert fulfil_pending(order_id) == "not_claimable"
    assert reconcile() == {}
    assert Transfer.objects.filter(kind="order_refund").count() == 1
    assert len(upstream.calls_for(key)) == 3
    assert audit() == []
