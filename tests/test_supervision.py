"""Self-healing supervision, with real processes.

`simtopup serve` keeps serving through the death of any of its children (a granian web
worker, granian itself, the background worker) and stops gracefully on SIGTERM; the
background worker rides out a PostgreSQL restart and crash on a throw-away cluster
(tests/pgcluster.py), finishing the work it had in flight exactly once; `/readyz` follows
the database down and up. Plus the worker's queue repairs, in process.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import pytest
from django.db import OperationalError
from django.tasks import TaskResultStatus, task
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from simtopup.ops.management.commands.worker import (
    DB_RETRIES,
    RETRY_MAX_SECONDS,
    TASK_LEASE_SECONDS,
    SupervisedWorker,
    requeue_abandoned,
    retry_delay,
)
from tests.fake_upstream import LINK_DAY_1G, FakeAiralo
from tests.pgcluster import PgCluster, throwaway_cluster
from tests.processes import alive, children, cmdline, free_port, simtopup

RECOVERY_SECONDS = 10  # after the database is back, everything works again within this


# --- processes ----------------------------------------------------------------------------


def wait_until(condition: Callable[[], bool], timeout: float, why: Callable[[], str]) -> float:
    """Poll ``condition`` until true; returns the monotonic time it became true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(why())
        time.sleep(0.1)
    return time.monotonic()


def http(
    url: str, body: Any = None, headers: dict[str, str] | None = None, timeout: float = 5
) -> tuple[int, Any] | None:
    """(status, JSON body) of a GET (or a POST of ``body``); None if nothing answered."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"null")
        except ValueError:
            return exc.code, None
    except (OSError, ValueError):
        return None


class Processes:
    """Subprocesses with their output in files; at teardown every one still running, and
    every process they were seen to have, is stopped (SIGTERM, then SIGKILL)."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.env = env
        self.started: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []
        self.seen: set[int] = set()

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("wb")
        process = subprocess.Popen(
            simtopup(*args),
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started.append((process, log))
        return process

    def output(self, name: str) -> str:
        for _, log in self.started:
            log.flush()
        try:
            return (self.log_dir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""

    def note(self, *pids: int) -> None:
        self.seen.update(pids)

    def stop_all(self) -> None:
        for process, _ in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process, log in self.started:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
            log.close()
        for pid in self.seen:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def airalo_settings(fake: FakeAiralo) -> dict[str, str]:
    return {k.removeprefix("SIMTOPUP_"): v for k, v in fake.settings_env().items()}


def env_for(tmp_path: Path, **settings: str) -> dict[str, str]:
    """The environment of a simtopup process: ``settings`` are SIMTOPUP_<NAME> values."""
    ours = {f"SIMTOPUP_{name}": value for name, value in settings.items()}
    ours.setdefault("SIMTOPUP_DATA_DIR", str(tmp_path / "var"))
    ours.setdefault("SIMTOPUP_LOG_LEVEL", "INFO")
    # A SIMTOPUP_X_FILE variable would win over SIMTOPUP_X (settings.env): drop those.
    inherited = {k: v for k, v in os.environ.items() if k.removesuffix("_FILE") not in ours}
    return {**inherited, **ours, "PYTHONUNBUFFERED": "1"}


class Shop:
    """The demo reseller selling top-ups through a running web server."""

    def __init__(self, env: dict[str, str]) -> None:
        subprocess.run(simtopup("migrate", "--verbosity", "0"), env=env, check=True, timeout=120)
        out = subprocess.run(
            simtopup("demo"), env=env, check=True, capture_output=True, text=True, timeout=120
        ).stdout
        if env.get("SIMTOPUP_NETWORK_ADAPTER") == "airalo":
            # The demo's day-1g is the fake Airalo's 1 GB top-up (what sync-catalogue records).
            subprocess.run(simtopup("shell", "-c", LINK_DAY_1G), env=env, check=True, timeout=120)
        key = re.search(r"demo reseller API key: (\S+)", out)
        device = re.search(r"ICCID (\d+)  PIN ", out)  # the first demo card
        assert key, out
        assert device, out
        self.key, self.iccid = key.group(1), device.group(1)
        self.base = ""
        self.count = 0

    def topup(self) -> int:
        self.count += 1
        answer = http(
            f"{self.base}/reseller/v1/topups",
            {"device": self.iccid, "plan": "day-1g", "reference": f"supervision-{self.count}"},
            {"Authorization": f"Bearer {self.key}"},
            timeout=60,  # the test is about the queue, not latency (a busy CI box)
        )
        assert answer is not None
        assert answer[0] == 201, answer
        assert answer[1]["status"] == "processing", answer
        return int(answer[1]["id"])

    def status(self, topup_id: int) -> str | None:
        answer = http(
            f"{self.base}/reseller/v1/topups/{topup_id}",
            headers={"Authorization": f"Bearer {self.key}"},
        )
        return answer[1]["status"] if answer and answer[0] == 200 else None


def ready(base: str) -> int | None:
    answer = http(f"{base}/readyz", timeout=5)
    return answer[0] if answer else None


@pytest.fixture
def upstream() -> Iterator[FakeAiralo]:
    with FakeAiralo() as server:
        yield server


# --- serve ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_serve_replaces_dead_children_and_stops_gracefully(
    tmp_path: Path, upstream: FakeAiralo
) -> None:
    grace = 10
    env = env_for(
        tmp_path,
        DATABASE_URL=f"sqlite:///{tmp_path}/serve.sqlite3",
        # Top-ups are fulfilled by the worker (Airalo's adapter), through the queue.
        **airalo_settings(upstream),
        RECONCILE_INTERVAL_SECONDS="600",  # ... and only through the queue
        SHUTDOWN_GRACE_SECONDS=str(grace),
    )
    shop = Shop(env)
    port = free_port()
    shop.base = base = f"http://127.0.0.1:{port}"
    procs = Processes(tmp_path, env)
    serve = procs.start("serve", "serve", "--port", str(port), "--workers", "2", "--threads", "2")

    def log() -> str:
        return procs.output("serve")

    def role(name: str) -> list[int]:
        """serve's children running the web server or the worker."""
        marker = "-m granian" if name == "web" else "simtopup.cli worker"
        found = [p for p in children(serve.pid) if marker in cmdline(p)]
        procs.note(*found)
        return found

    def web_workers(granian: int) -> list[int]:
        found = children(granian)
        procs.note(*found)
        return found

    try:
        wait_until(
            lambda: serve.poll() is None and ready(base) == 200, 120, lambda: "not up:\n" + log()
        )
        [granian], [worker] = role("web"), role("worker")
        wait_until(lambda: len(web_workers(granian)) == 2, 30, lambda: "no 2 web workers\n" + log())
        first_web_workers = web_workers(granian)

        # A web worker killed: granian replaces it; the other one goes on answering.
        victim = first_web_workers[0]
        os.kill(victim, signal.SIGKILL)
        answered: list[float] = [time.monotonic()]

        def replaced() -> bool:
            assert serve.poll() is None, log()
            if http(f"{base}/healthz", timeout=2) == (200, {"status": "ok"}):
                answered.append(time.monotonic())
            now = web_workers(granian)
            return len(now) == 2 and victim not in now and answered[-1] > time.monotonic() - 1

        wait_until(replaced, 60, lambda: "web worker not replaced:\n" + log())
        gaps = [b - a for a, b in itertools.pairwise(answered)]
        assert max(gaps, default=0) < 5, (gaps, log())
        assert role("web") == [granian]  # granian itself carried on
        assert "Unexpected exit from worker" in log()

        # The background worker killed: serve starts another; a top-up queued meanwhile is
        # fulfilled by it (the reconciler is off: only the queue can do it).
        os.kill(worker, signal.SIGKILL)
        order = shop.topup()
        wait_until(
            lambda: bool(role("worker")) and role("worker") != [worker],
            30,
            lambda: "worker not restarted:\n" + log(),
        )
        assert f"the background worker, pid {worker}, was killed by SIGKILL" in log()
        wait_until(
            lambda: shop.status(order) == "fulfilled", 60, lambda: "not fulfilled:\n" + log()
        )
        assert dict(upstream.granted) == {f"simtopup-order-{order}": 1}

        # granian itself killed: its orphaned web workers are stopped, a new granian serves.
        os.kill(granian, signal.SIGKILL)

        def web_back() -> bool:
            assert serve.poll() is None, log()
            current = role("web")
            return (
                bool(current)
                and current != [granian]
                and len(web_workers(current[0])) == 2
                and http(f"{base}/healthz", timeout=2) == (200, {"status": "ok"})
            )

        wait_until(web_back, 60, lambda: "web server not restarted:\n" + log())
        assert f"the web server (granian), pid {granian}, was killed by SIGKILL" in log()
        assert not [p for p in [granian, *first_web_workers] if alive(p)]

        # SIGTERM: everything stops within the grace period; serve exits 0.
        procs.note(*role("web"), *role("worker"))
        for pid in role("web"):
            web_workers(pid)
        began = time.monotonic()
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(grace + 10) == 0, log()
        assert time.monotonic() - began < grace + 2, log()
        survivors = [p for p in procs.seen if alive(p)]
        assert not survivors, [cmdline(p) for p in survivors]
    finally:
        procs.stop_all()


# --- the database goes away -------------------------------------------------------------


def task_rows(cluster: PgCluster) -> dict[str, int]:
    import psycopg

    with psycopg.connect(cluster.url) as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM django_tasks_database_dbtaskresult GROUP BY status"
        ).fetchall()
    return {str(status): int(count) for status, count in rows}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_worker_and_readyz_ride_out_a_postgresql_restart_and_crash(
    tmp_path: Path, upstream: FakeAiralo
) -> None:
    with throwaway_cluster() as pg:
        env = env_for(
            tmp_path,
            DATABASE_URL=pg.url,
            **airalo_settings(upstream),
            RECONCILE_INTERVAL_SECONDS="600",
            FULFILMENT_LEASE_SECONDS="2",
        )
        shop = Shop(env)
        port = free_port()
        shop.base = base = f"http://127.0.0.1:{port}"
        procs = Processes(tmp_path, env)
        web = procs.start("web", "serve", "--no-worker", "--port", str(port), "--workers", "1")
        worker = procs.start("worker", "worker", "--poll", "0.1")

        def logs() -> str:
            return f"worker:\n{procs.output('worker')}\nweb:\n{procs.output('web')}"

        def fulfilled(topup: int) -> Callable[[], bool]:
            def check() -> bool:
                assert worker.poll() is None, logs()
                return shop.status(topup) == "fulfilled"

            return check

        def database_down() -> None:
            wait_until(lambda: ready(base) == 503, 10, lambda: "readyz still ready\n" + logs())
            assert http(f"{base}/readyz") == (
                503,
                {"status": "unavailable", "reason": "database: OperationalError"},
            )

        def database_back() -> float:
            back = time.monotonic()
            wait_until(lambda: ready(base) == 200, RECOVERY_SECONDS, lambda: "readyz\n" + logs())
            return back

        try:
            wait_until(lambda: ready(base) == 200, 120, lambda: "not up:\n" + logs())
            warm = shop.topup()
            wait_until(fulfilled(warm), 30, lambda: "not fulfilled:\n" + logs())

            # A restart (stop -m fast, 3 s down) while the worker waits on the upstream: its
            # answer arrives with the database gone.
            upstream.hold()
            in_flight = shop.topup()
            wait_until(upstream.arrived.is_set, 30, lambda: "no upstream call\n" + logs())
            pg.stop("fast")
            database_down()
            upstream.release()
            time.sleep(3)
            pg.start()
            back = database_back()
            after_restart = shop.topup()
            for topup in (in_flight, after_restart):
                wait_until(
                    fulfilled(topup),
                    RECOVERY_SECONDS - (time.monotonic() - back),
                    lambda: f"not fulfilled within {RECOVERY_SECONDS} s:\n" + logs(),
                )
            assert "interrupted by the outage, is back in the queue" in procs.output("worker")

            # A crash: SIGKILL to the postmaster, then start (crash recovery).
            pg.kill()
            database_down()
            time.sleep(1)
            pg.start()
            back = database_back()
            after_crash = shop.topup()
            wait_until(
                fulfilled(after_crash),
                RECOVERY_SECONDS - (time.monotonic() - back),
                lambda: f"not fulfilled within {RECOVERY_SECONDS} s:\n" + logs(),
            )

            assert worker.poll() is None, logs()
            assert web.poll() is None, logs()
            assert procs.output("worker").count("database unavailable") == 2, logs()
            # Everything exactly once; no task stuck RUNNING (nor READY, nor FAILED).
            orders = [warm, in_flight, after_restart, after_crash]
            assert dict(upstream.granted) == {f"simtopup-order-{o}": 1 for o in orders}
            wait_until(lambda: set(task_rows(pg)) == {"SUCCESSFUL"}, 10, lambda: str(task_rows(pg)))
            subprocess.run(simtopup("check-ledger"), env=env, check=True, timeout=60)
        finally:
            upstream.release()
            procs.stop_all()


# --- the worker's queue repairs, in process ---------------------------------------------

CALLS: list[str] = []


@task()
def flaky_task(mode: str) -> str:
    """Fails like a cut connection: once (``once``) or always (``always``)."""
    CALLS.append(mode)
    if mode == "always" or CALLS.count(mode) == 1:
        raise OperationalError("server closed the connection unexpectedly")
    return "ok"


def supervised_worker() -> SupervisedWorker:
    return SupervisedWorker(
        queue_names=["*"],
        interval=0,
        batch=True,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id="test-worker",
        excluded_queue_names=[],
    )


@pytest.fixture
def calls() -> Iterator[list[str]]:
    CALLS.clear()
    yield CALLS
    CALLS.clear()


# The worker closes connections left in a transaction (Django's close_old_connections): no
# test transaction around these.
def test_a_task_failing_on_a_lost_connection_runs_again(
    transactional_db: None, calls: list[str]
) -> None:
    result = flaky_task.enqueue("once")
    worker = supervised_worker()
    worker.run()
    row = DBTaskResult.objects.get(pk=result.id)
    assert calls == ["once"]
    assert row.status == TaskResultStatus.READY  # not FAILED: back in the queue, for later
    assert row.run_after > timezone.now()
    DBTaskResult.objects.filter(pk=row.pk).update(run_after=timezone.now())
    worker.run()
    row.refresh_from_db()
    assert (row.status, row.return_value, calls) == ("SUCCESSFUL", "ok", ["once", "once"])


def test_a_task_that_keeps_failing_on_the_database_is_left_failed(
    transactional_db: None, calls: list[str]
) -> None:
    result = flaky_task.enqueue("always")
    worker = supervised_worker()
    for _ in range(DB_RETRIES + 3):
        DBTaskResult.objects.filter(pk=result.id).update(run_after=timezone.now())
        worker.run()
    row = DBTaskResult.objects.get(pk=result.id)
    assert row.status == TaskResultStatus.FAILED
    assert row.exception_class_path == "django.db.utils.OperationalError"
    assert len(calls) == DB_RETRIES + 1


def test_the_task_interrupted_by_an_outage_goes_back_to_the_queue(db: None) -> None:
    interrupted = DBTaskResult.objects.get(pk=flaky_task.enqueue("once").id)
    interrupted.claim("test-worker")
    other = DBTaskResult.objects.get(pk=flaky_task.enqueue("once").id)
    other.claim("another-worker")
    worker = supervised_worker()
    worker.in_flight = interrupted
    worker.requeue_interrupted()
    assert worker.in_flight is None
    interrupted.refresh_from_db()
    other.refresh_from_db()
    assert interrupted.status == TaskResultStatus.READY
    assert other.status == TaskResultStatus.RUNNING  # another worker's: not ours to touch

    # An outcome that was written before the connection died stays.
    interrupted.claim("test-worker")
    interrupted.set_successful("ok")
    worker.in_flight = interrupted
    worker.requeue_interrupted()
    interrupted.refresh_from_db()
    assert interrupted.status == TaskResultStatus.SUCCESSFUL


def test_tasks_left_running_past_the_lease_go_back_to_the_queue(db: None) -> None:
    abandoned = DBTaskResult.objects.get(pk=flaky_task.enqueue("once").id)
    abandoned.claim("dead-worker")
    running = DBTaskResult.objects.get(pk=flaky_task.enqueue("once").id)
    running.claim("busy-worker")
    DBTaskResult.objects.filter(pk=abandoned.pk).update(
        started_at=timezone.now() - timedelta(seconds=TASK_LEASE_SECONDS + 1)
    )
    assert requeue_abandoned() == 1
    abandoned.refresh_from_db()
    running.refresh_from_db()
    assert (abandoned.status, running.status) == ("READY", "RUNNING")


def test_reconnect_backoff_doubles_and_stays_within_the_recovery_bound() -> None:
    delays = [retry_delay(n) for n in range(12)]
    assert 0.5 <= delays[0] <= 0.625
    assert 1.0 <= delays[1] <= 1.25
    assert all(RETRY_MAX_SECONDS <= d <= RETRY_MAX_SECONDS * 1.25 for d in delays[6:])
    assert max(delays) < RECOVERY_SECONDS


def test_a_reconciler_error_with_the_database_answering_does_not_stop_the_queue(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A statement or lock timeout in the reconciler is no outage: waiting for the database
    would not cure it, and the queue must go on running."""
    from simtopup.ops.management.commands import worker as worker_command

    def timing_out() -> None:
        raise OperationalError("canceling statement due to statement timeout")

    monkeypatch.setattr(worker_command, "run_janitor", timing_out)
    abandoned = DBTaskResult.objects.get(pk=flaky_task.enqueue("once").id)
    abandoned.claim("dead-worker")
    DBTaskResult.objects.filter(pk=abandoned.pk).update(
        started_at=timezone.now() - timedelta(seconds=TASK_LEASE_SECONDS + 1)
    )
    worker_command.Command().reconcile()  # does not raise
    assert "reconciler pass failed (timing_out)" in caplog.text
    abandoned.refresh_from_db()
    assert abandoned.status == TaskResultStatus.READY  # the next step still ran
