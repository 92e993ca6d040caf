"""`simtopup worker`: run background tasks and the reconciler until SIGINT/SIGTERM.

The worker outlives its database. When PostgreSQL restarts, crashes or a connection is cut,
a query raises ``OperationalError``/``InterfaceError``; the worker then logs one WARNING,
drops its connections, tries to reconnect with backoff (0.5 s doubling to 6 s, plus up to
25 % jitter: a database that is back is noticed within 7.5 s) and goes on where it was.

What happens to a task caught in the outage (django-tasks-db's ``db_worker`` ``Worker``,
read for this): a worker claims a task by setting its row to RUNNING in a short
transaction of its own (``SELECT … FOR UPDATE SKIP LOCKED``, then ``claim()``), runs it
outside any transaction, then records SUCCESSFUL or FAILED (three tries, 0.1 s apart). It
has no lease: a row left RUNNING — its worker was killed, or the database went away before
the outcome was written — stays RUNNING for ever, never run again. And a task that itself
failed on a lost connection is recorded FAILED like any other error. Therefore:

* the task this worker was running when the database went away is put back to READY as
  soon as the worker has reconnected (compare-and-swap on its row: still RUNNING under this
  very claim, or FAILED by a lost connection), so it runs again at once;
* a task that failed on a lost connection while the database stayed reachable (one
  backend terminated) is put back to READY too, a few times, later each time
  (``DB_RETRIES``), then left FAILED;
* a task RUNNING for longer than ``TASK_LEASE_SECONDS`` (its worker died: ``kill -9``, a
  crashed machine, a claim whose commit reached the server but whose answer never came
  back) is put back to READY by the reconciler pass of any worker.

Running a task twice never doubles an effect: every domain task claims its work with its
own compare-and-swap before acting and finishes it with another (fulfilment: the order's
PAID → FULFILLING lease and the adapter's lookup of what an earlier attempt made upstream,
by our reference; refunds: the refund's
``next_attempt_at`` claim and the provider's refund reference; reseller webhooks: the
delivery's claim — delivered at least once, each with its ``X-Simtopup-Delivery`` id;
automatic top-ups: the rule's row lock and the in-flight order check; the sandbox gateway's
notifications are stored once by their event id). A second run finds the work done or
claimed and returns. And the reconciler (``ops/janitor.py``) re-finds what a lost task was
doing from the domain rows themselves — orders paid but not fulfilled or past their lease,
pending payments and refunds — so nothing depends on the queue row alone.

Reseller webhooks have a lane of their own: their tasks are on the ``webhooks`` queue, which
the main loop leaves alone; ``SIMTOPUP_WEBHOOK_WORKERS`` threads (``WebhookLane``), each with
its own database connection, serve that queue and, every reconcile interval, the deliveries
whose retry is due (``deliver_due``: the webhooks' reconciler). A receiver that answers
slowly — each delivery is cut off at its deadline, ``SIMTOPUP_WEBHOOK_TIMEOUT_SECONDS`` —
keeps a lane thread busy, never payments or fulfilment. The lane threads ride out a lost
database like the main loop (their own backoff; the delivery they were running goes back to
the queue). ``--once`` runs the lane's work after the main queue's, in the same thread.

Idle, the main loop polls every ``--poll`` seconds; on PostgreSQL it is woken as soon as a
task is queued (the task bell, ops/bell.py: a trigger's NOTIFY at commit), so a payment's
two queue hops (notification, fulfilment) add no polling delay to "paid → credited".
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import InterfaceError, OperationalError, close_old_connections, connections
from django.db.models import Q
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult

from simtopup.ops.bell import TaskBell
from simtopup.ops.checks import refuse_unsafe_start
from simtopup.ops.janitor import run_janitor
from simtopup.resellers.webhooks import WEBHOOK_QUEUE, deliver_due

logger = logging.getLogger("simtopup.worker")

# What a lost, restarting or unreachable database raises through Django.
DB_LOST: tuple[type[Exception], ...] = (OperationalError, InterfaceError)
DB_LOST_PATHS = [f"{e.__module__}.{e.__qualname__}" for e in DB_LOST]
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 6.0  # + up to 25 % jitter: a database back is noticed within 7.5 s
# A task that failed on a lost connection runs again this often (after 2, 4, 8 … s).
DB_RETRIES = 5
# A task RUNNING longer than this has lost its worker: back to READY. Far above what a task
# takes (upstream, provider and webhook calls time out in seconds); a second run is harmless.
TASK_LEASE_SECONDS = 15 * 60
# How often an idle webhook lane thread looks at its queue (at least).
LANE_POLL_SECONDS = 1.0


def retry_delay(failures: int) -> float:
    """Seconds to wait after ``failures`` consecutive failed attempts (0, 1, …)."""
    base = min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** min(failures, 16))
    return base + random.uniform(0, base / 4)  # jitter, not a secret


def describe(exc: BaseException) -> str:
    """``Class: first line of the message`` (psycopg's messages run over several lines)."""
    lines = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {lines[0]}" if lines else exc.__class__.__name__


def drop_connections() -> None:
    """Close every database connection of this thread, also broken ones: the next query
    connects anew."""
    for conn in connections.all(initialized_only=True):
        try:
            conn.close()
        except Exception:  # a broken connection may fail to close: forget it
            conn.connection = None


def database_answers() -> bool:
    """Whether the database answers a query on a fresh connection."""
    drop_connections()
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
    except DB_LOST:
        return False
    return True


def requeue_abandoned(lease_seconds: float = TASK_LEASE_SECONDS) -> int:
    """Put tasks RUNNING for longer than the lease (their worker died) back to READY."""
    cutoff = timezone.now() - timedelta(seconds=lease_seconds)
    count = DBTaskResult.objects.filter(
        status=TaskResultStatus.RUNNING, started_at__lt=cutoff
    ).update(status=TaskResultStatus.READY)
    if count:
        logger.warning(
            "worker: %s task(s) left running by a dead worker put back in the queue", count
        )
    return count


class SupervisedWorker(Worker):
    """django-tasks-db's worker, remembering the task it runs so that a task interrupted by
    a lost database can be put back in the queue."""

    in_flight: DBTaskResult | None = None

    def run_task(self, db_task_result: DBTaskResult) -> None:
        self.in_flight = db_task_result
        # Raises when the outcome cannot be written (the database is gone): in_flight stays
        # set, and requeue_interrupted() puts the task back once the database is back.
        super().run_task(db_task_result)
        if (
            db_task_result.status == TaskResultStatus.FAILED
            and db_task_result.exception_class_path in DB_LOST_PATHS
        ):
            self._retry_later(db_task_result)
        self.in_flight = None

    def _retry_later(self, task: DBTaskResult) -> None:
        attempts = len(task.worker_ids)
        if attempts > DB_RETRIES:
            return
        delay = timedelta(seconds=2**attempts)
        retried = DBTaskResult.objects.filter(
            pk=task.pk, status=TaskResultStatus.FAILED, started_at=task.started_at
        ).update(status=TaskResultStatus.READY, finished_at=None, run_after=timezone.now() + delay)
        if retried:
            logger.warning(
                "worker: task %s (%s) failed on a lost database connection; it runs again in %s s",
                task.pk,
                task.task_path.rsplit(".", 1)[-1],
                delay.seconds,
            )

    def requeue_interrupted(self) -> None:
        """After a reconnect: the task the outage interrupted runs again (if its row still
        says RUNNING under this claim, or FAILED by the lost connection)."""
        task = self.in_flight
        if task is None:
            return
        requeued = (
            DBTaskResult.objects.filter(pk=task.pk, started_at=task.started_at)
            .filter(
                Q(status=TaskResultStatus.RUNNING)
                | Q(status=TaskResultStatus.FAILED, exception_class_path__in=DB_LOST_PATHS)
            )
            .update(status=TaskResultStatus.READY, finished_at=None)
        )
        self.in_flight = None
        if requeued:
            logger.warning(
                "worker: task %s (%s), interrupted by the outage, is back in the queue",
                task.pk,
                task.task_path.rsplit(".", 1)[-1],
            )


def await_database(
    worker: SupervisedWorker,
    failures: int,
    running: Callable[[], bool],
    sleep: Callable[[float], Any],
) -> tuple[int, bool]:
    """Wait with backoff until the database answers again, then put the task ``worker`` was
    running back in the queue. Returns the backoff position and whether the database is back
    (False: asked to stop first)."""
    while running():
        drop_connections()
        sleep(retry_delay(failures))
        failures += 1
        if not running():
            break
        try:
            if not database_answers():
                continue
            worker.requeue_interrupted()
        except DB_LOST as again:
            logger.debug("worker: database still unavailable: %s", again)
            continue
        return failures, True
    return failures, False


def queue_worker(worker_id: str, *, webhooks: bool) -> SupervisedWorker:
    """A worker for the main queues (everything but webhooks) or for the webhook queue."""
    return SupervisedWorker(
        queue_names=[WEBHOOK_QUEUE] if webhooks else ["*"],
        interval=0,
        batch=True,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id=worker_id[:64],
        excluded_queue_names=[] if webhooks else [WEBHOOK_QUEUE],
    )


def sweep_webhooks() -> int:
    """The webhooks' reconciler: deliveries whose retry is due. A lost database propagates;
    any other error is logged."""
    try:
        return deliver_due()
    except DB_LOST:
        raise
    except Exception:
        logger.exception("webhook lane: delivering due webhooks failed; will retry")
        return 0


class WebhookLane:
    """Threads serving the webhook queue beside the main loop, each with its own database
    connection: webhook deliveries (slow receivers included) never wait for, nor hold up,
    payments and fulfilment."""

    def __init__(self, threads: int, poll: float, worker_id: str) -> None:
        # Idle, each thread looks at the queue at most once a second: a webhook may wait that
        # long, and the lane's threads add little load (on SQLite, each look is a write lock).
        self.poll = max(poll, LANE_POLL_SECONDS)
        self.stopping = threading.Event()
        self.workers = [
            queue_worker(f"{worker_id[:56]}-wh{n}", webhooks=True) for n in range(threads)
        ]
        self.threads = [
            threading.Thread(target=self.run, args=(w,), name=f"webhooks-{n}", daemon=True)
            for n, w in enumerate(self.workers)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self, timeout: float) -> None:
        """Let each thread finish the delivery it is making (within ``timeout``)."""
        self.stopping.set()
        for worker in self.workers:
            worker.running = False
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def running(self) -> bool:
        return not self.stopping.is_set()

    def run(self, worker: SupervisedWorker) -> None:
        next_sweep = 0.0
        failures = 0
        try:
            while self.running():
                try:
                    close_old_connections()
                    if time.monotonic() >= next_sweep:
                        sweep_webhooks()
                        next_sweep = time.monotonic() + settings.RECONCILE_INTERVAL_SECONDS
                    worker.running = self.running()
                    before = worker._run_tasks
                    worker.run()
                except DB_LOST as exc:
                    began = time.monotonic()
                    # The main loop warns about the outage (once); the lane only notes it.
                    logger.info("webhook lane: no database (%s); waiting", describe(exc))
                    failures, back = await_database(
                        worker, failures, self.running, self.stopping.wait
                    )
                    if back:
                        logger.info(
                            "webhook lane: database back after %.1f s", time.monotonic() - began
                        )
                    next_sweep = 0.0
                    continue
                except Exception:  # the lane must not die of one bad delivery
                    logger.exception("webhook lane: unexpected error; going on")
                    self.stopping.wait(1)
                    continue
                failures = 0
                if worker._run_tasks == before:
                    self.stopping.wait(self.poll)
        finally:
            drop_connections()


class Command(BaseCommand):
    help = "Run the background worker: queued tasks (fulfilment, webhooks) and the periodic reconciler."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--once",
            action="store_true",
            help="Run the reconciler and all ready tasks once, then exit.",
        )
        parser.add_argument(
            "--poll", type=float, default=0.2, help="Seconds between queue polls when idle."
        )

    def handle(self, *args: Any, once: bool = False, poll: float = 0.2, **options: Any) -> None:
        refuse_unsafe_start("worker", django_security=False)  # e.g. the sandbox in production
        self.running = True
        worker_id = f"{socket.gethostname()}-{os.getpid()}"
        worker = queue_worker(worker_id, webhooks=False)

        def stop(signum: int, frame: FrameType | None) -> None:
            logger.info("worker: %s received, finishing the current task", signal.strsignal(signum))
            self.running = False
            worker.running = False

        lane = None
        if not once:
            signal.signal(signal.SIGINT, stop)
            signal.signal(signal.SIGTERM, stop)
            lane = WebhookLane(max(1, settings.WEBHOOK_WORKERS), poll, worker_id)
            lane.start()
            logger.info("worker started (pid %s)", os.getpid())
        # Idle, the main loop waits for the task bell (PostgreSQL: woken as a task is queued;
        # ops/bell.py) for at most ``poll`` seconds.
        bell = TaskBell(ignore=frozenset({WEBHOOK_QUEUE}))
        next_janitor = 0.0
        failures = 0  # consecutive passes lost to the database: the backoff's position
        while self.running:
            try:
                close_old_connections()
                if time.monotonic() >= next_janitor:
                    self.reconcile()
                    next_janitor = time.monotonic() + settings.RECONCILE_INTERVAL_SECONDS
                worker.running = self.running
                before = worker._run_tasks
                worker.run()
            except DB_LOST as exc:
                if once:
                    raise
                failures = self.ride_out(exc, worker, failures)
                next_janitor = 0.0  # the reconciler first: it re-finds what the outage left
                continue
            failures = 0
            if once:
                # The webhook lane's work, after everything else's.
                sweep_webhooks()
                queue_worker(worker_id, webhooks=True).run()
                break
            if worker._run_tasks == before:
                bell.wait(poll)
        bell.close()
        if lane is not None:
            lane.stop(settings.WEBHOOK_TIMEOUT_SECONDS + 5)
        logger.info("worker stopped")

    def reconcile(self) -> None:
        """One reconciler pass. A lost database propagates (the caller waits for it); any
        other error — also a database error while the database answers (a statement timeout,
        a lock timeout), which waiting would not cure and which must not keep the queue
        from running — is logged, and the pass is tried again next interval."""
        for step in (run_janitor, requeue_abandoned):
            try:
                step()
            except DB_LOST:
                if not database_answers():
                    raise
                logger.exception("reconciler pass failed (%s); will retry", step.__name__)
            except Exception:
                logger.exception("reconciler pass failed (%s); will retry", step.__name__)

    def ride_out(self, exc: Exception, worker: SupervisedWorker, failures: int) -> int:
        """Wait for the database with backoff; returns the backoff position when it answers
        again (or when the worker is asked to stop)."""
        began = time.monotonic()
        logger.warning("worker: database unavailable (%s); retrying with backoff", describe(exc))
        failures, back = await_database(worker, failures, lambda: self.running, self.sleep)
        if back:
            logger.info("worker: database reachable again after %.1f s", time.monotonic() - began)
        return failures

    def sleep(self, seconds: float) -> None:
        """Sleep, but return soon after SIGINT/SIGTERM."""
        deadline = time.monotonic() + seconds
        while self.running and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))
