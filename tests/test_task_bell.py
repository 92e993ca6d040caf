"""The task bell (ops/bell.py): an idle worker on PostgreSQL wakes when a task is queued,
not at its next poll — and any trouble with the bell only ever means polling."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from django.db import connection, transaction

from simtopup.ops.bell import CHANNEL, TaskBell
from simtopup.orders.tasks import fulfil_order_task
from simtopup.resellers.tasks import deliver_webhook_task
from simtopup.resellers.webhooks import WEBHOOK_QUEUE

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL: LISTEN/NOTIFY"),
]


def other_connection() -> psycopg.Connection:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**params, autocommit=True)


def enqueue_later(task, delay: float) -> threading.Thread:  # type: ignore[no-untyped-def]
    def run() -> None:
        time.sleep(delay)
        try:
            task.enqueue(123)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_queued_task_rings_only_when_its_transaction_commits() -> None:
    with other_connection() as listener:
        listener.execute(f"LISTEN {CHANNEL}")
        with transaction.atomic():
            fulfil_order_task.enqueue(1)
            assert list(listener.notifies(timeout=0.3)) == []  # not before the commit
        notes = list(listener.notifies(timeout=2, stop_after=1))
    assert [n.payload for n in notes] == ["default"]


def test_an_idle_wait_ends_when_a_task_is_queued() -> None:
    bell = TaskBell(ignore=frozenset({WEBHOOK_QUEUE}))
    try:
        assert bell.wait(0.2) is False  # nothing queued: the whole wait (and it connects)
        thread = enqueue_later(fulfil_order_task, 0.3)
        began = time.monotonic()
        assert bell.wait(10) is True
        waited = time.monotonic() - began
        thread.join()
    finally:
        bell.close()
    assert waited < 5, waited  # woken by the enqueue, long before the 10 s poll


def test_the_main_loop_is_not_woken_by_the_webhook_lane_s_queue() -> None:
    bell = TaskBell(ignore=frozenset({WEBHOOK_QUEUE}))
    try:
        bell.wait(0.05)  # connect and LISTEN first
        thread = enqueue_later(deliver_webhook_task, 0.1)
        assert bell.wait(1.0) is False
        thread.join()
    finally:
        bell.close()


def test_a_lost_bell_connection_falls_back_to_polling_and_reconnects() -> None:
    bell = TaskBell()
    try:
        bell.wait(0.05)
        pid = bell.conn.info.backend_pid
        with other_connection() as other:
            other.execute("SELECT pg_terminate_backend(%s)", [pid])
        began = time.monotonic()
        assert bell.wait(0.3) is False  # the broken bell: no error, the poll's wait
        assert time.monotonic() - began >= 0.25
        assert bell.conn is None
        thread = enqueue_later(fulfil_order_task, 0.3)
        assert bell.wait(0.05) is False  # reconnects and listens again
        assert bell.conn is not None
        assert bell.conn.info.backend_pid != pid
        assert bell.wait(10) is True
        thread.join()
    finally:
        bell.close()
