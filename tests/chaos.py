"""Chaos harness: real load through ``simtopup serve`` while its pieces are killed, then an
account of every sale, payment and usage record (issue 10). Written once, used by
``tests/test_chaos.py`` (about a minute of load) and ``bench/soak.py`` (as long as asked).

What runs::

    chaos = Chaos(workdir, database, Shape())     # database: its URL, and restarts if it can
    chaos.setup()                                 # migrate, seed (a subprocess), start serve
    chaos.run(60, faults=[Fault(6, "web_worker"), Fault(20, "pg_restart"), ...])
    chaos.finish()                                # drain, check-ledger, SIGTERM, reconcile
    chaos.problems                                # {"http": [...], "topups": [...], ...}
    chaos.close()                                 # whatever is left, stopped

The load, from client threads over real HTTP on loopback (one connection per request, so a
connection error is the server's doing, never a stale keep-alive):

* reseller top-ups — bundle and credit plans on a handful of SHARED cards, over several
  resellers (the last one with a small float, credited by the operator now and then), each
  with its own ``Idempotency-Key`` and reference; after a connection error, a 503, a 5xx or
  ``409 request_in_progress`` the client sends the same key and body again, as a real one
  would, until it has an answer or gives up; every few sales one is sent again on purpose
  and must come back identical;
* customer orders paid by card through the sandbox gateway: ``POST /api/v1/orders``, the
  hosted checkout page, ``outcome=succeed``; the signed webhook reaches the site over HTTP
  through the background worker, which fulfils the order;
* usage batches to ``POST /network/v1/usage`` on the same cards, signed;
* the operator, in two more threads: ``simtopup check-ledger --json`` every
  ``Shape.ledger_every`` seconds and ``simtopup reseller credit`` to the small float every
  ``Shape.credit_every`` seconds, during the load.

serve runs as a test installation (sandbox allowed) with the retry, lease and reconcile
intervals shortened (``Chaos.__init__``): a fulfilment left by a killed worker is taken over
after 5 s instead of 120 s, a key held by a request that died frees after 10 s instead of 60 s,
so that a minute's faults settle in seconds. What is checked does not depend on them.

Faults (:class:`Fault`), on the caller's schedule, each leaving a *window* from its start to
``grace`` seconds after the system was whole again: ``web_worker`` (SIGKILL to one of
granian's worker processes), ``worker`` (SIGKILL to the background worker), ``pg_restart``
(fast shutdown, 3 s down, start) and ``pg_crash`` (SIGKILL to the postmaster, then crash
recovery) — the last two only on a database that :class:`Database` can restart, a private
cluster (tests/pgcluster.py), never a shared server.

What must hold (:meth:`Chaos.reconcile`; the keys of ``problems``):

* ``serve`` — serve ran throughout, replaced every killed web worker and background worker
  within 30 s, and exits 0 on SIGTERM;
* ``http`` — no 500, no 5xx and no connection error outside a fault window; inside one
  only 503 (on the APIs a problem+json ``database_unavailable``, never HTML) or a
  connection error;
* ``topups`` — every 201 is one order of that reseller and reference, fulfilled, for the
  amount charged, its ``float_balance`` the float its own payment transfer left; a replay
  returns the same body; 402 only where the float is small;
* ``floats`` — every float = Σ credited − Σ charged, in the ledger and in ``GET /float``;
  nothing below zero anywhere;
* ``orders`` — every order paid at the gateway ends fulfilled (the worker is given
  ``Shape.settle_seconds`` after the load);
* ``usage`` — every batch is rated all or nothing, every record once, its bytes and charge
  exactly the ledger's;
* ``ledger`` — ``check-ledger`` clean at the end and in every run during the load (a run
  that could not reach the database is no violation; one that reports one is);
* ``tasks`` — no background task left FAILED (work lost);
* ``harness`` — the clients themselves met nothing unexpected (a crash, a page without its
  form, an answer no rule covers).

The database is read for the account by ``python -m tests.chaos inspect`` (Django in a
subprocess, against the chaos database); ``python -m tests.chaos seed`` makes the data.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Protocol

from tests.processes import alive, children, cmdline, free_port, simtopup

ROOT = Path(__file__).resolve().parent.parent
BUNDLE_PLAN = "day-1g"
CREDIT_PLAN = "credit-20"
PROBLEM_JSON = "application/problem+json"
# Paths answered by the JSON APIs: errors there are problem+json, never an HTML page.
API_PREFIXES = ("/api/", "/reseller/", "/network/")
KINDS = ("topup", "order", "usage")
FAULT_KINDS = ("web_worker", "worker", "pg_restart", "pg_crash")
CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
ACCESS_LOG = re.compile(r'"(?:GET|POST|PUT|DELETE|HEAD) [^"]*" \d{3} ')


# --- processes ----------------------------------------------------------------------------


def app_env(database_url: str, data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of a simtopup process: ``settings`` are SIMTOPUP_<NAME> values. No
    inherited SIMTOPUP_* variable (a test run's own database, a *_FILE) leaks in."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("SIMTOPUP_")}
    ours = {f"SIMTOPUP_{name}": value for name, value in settings.items()}
    return {
        **inherited,
        "SIMTOPUP_DATABASE_URL": database_url,
        "SIMTOPUP_DATA_DIR": str(data_dir),
        "SIMTOPUP_LOG_LEVEL": "INFO",
        "SIMTOPUP_DEBUG": "0",
        **ours,
        "DJANGO_SETTINGS_MODULE": "simtopup.settings",
        "PYTHONUNBUFFERED": "1",
    }


class Database(Protocol):
    """Where the chaos runs. ``restartable`` databases take the ``pg_*`` faults."""

    @property
    def url(self) -> str: ...

    @property
    def restartable(self) -> bool: ...

    def restart(self) -> None: ...

    def crash(self) -> None: ...


class ClusterDatabase:
    """A private cluster (tests/pgcluster.PgCluster): restarts allowed."""

    restartable = True

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster

    @property
    def url(self) -> str:
        return str(self.cluster.url)

    def restart(self) -> None:
        self.cluster.restart("fast", down_seconds=3)

    def crash(self) -> None:
        self.cluster.kill()
        time.sleep(1)
        self.cluster.start()


class SharedDatabase:
    """A database on a shared server: never restarted."""

    restartable = False

    def __init__(self, url: str) -> None:
        self._url = url

    @property
    def url(self) -> str:
        return self._url

    def restart(self) -> None:
        raise RuntimeError("a shared PostgreSQL server is never restarted")

    crash = restart


class Serve:
    """``simtopup serve`` in its own session, its output in a file."""

    def __init__(self, env: dict[str, str], port: int, log_path: Path, web_workers: int) -> None:
        self.env, self.port, self.log_path, self.web_workers = env, port, log_path, web_workers
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.seen: set[int] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> None:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            simtopup(
                *("serve", "--host", "127.0.0.1", "--port", str(self.port)),
                *("--workers", str(self.web_workers), "--threads", "2"),
            ),
            env=self.env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited ({self.process.returncode}):\n{self.tail()}")
            if get_status(self.port, "/readyz") == 200 and self.worker() is not None:
                granian = self.granian()
                if granian is not None and len(self.web_worker_pids(granian)) == self.web_workers:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"serve not ready within {timeout} s:\n{self.tail()}")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _child(self, marker: str) -> int | None:
        if self.process is None:
            return None
        found = [p for p in children(self.process.pid) if marker in cmdline(p)]
        self.seen.update(found)
        return found[0] if len(found) == 1 else None

    def granian(self) -> int | None:
        return self._child("-m granian")

    def worker(self) -> int | None:
        return self._child("simtopup.cli worker")

    def web_worker_pids(self, granian: int) -> list[int]:
        found = children(granian)
        self.seen.update(found)
        return found

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM; serve's exit status (None if it had to be killed)."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            granian = self.granian()
            if granian:
                self.web_worker_pids(granian)
            self.worker()
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        return process.returncode

    def kill(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        for pid in self.seen:
            if alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None

    def text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 60) -> str:
        """The end of serve's output, without the access log."""
        kept = [line for line in self.text().splitlines() if not ACCESS_LOG.search(line)]
        return "\n".join(kept[-lines:])


def get_status(port: int, path: str, timeout: float = 3) -> int | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


# --- the record of what happened ----------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One HTTP request: its answer, or the connection error that took its place."""

    kind: str  # topup | replay | order | checkout | pay | poll | usage | float
    method: str
    path: str
    started: float  # time.monotonic()
    ended: float
    status: int | None  # None: connection error
    content_type: str = ""
    code: str = ""  # a problem's ``code``
    error: str = ""  # the connection error's class

    @property
    def label(self) -> str:
        if self.status is None:
            return f"{self.kind} connection {self.error}"
        return f"{self.kind} {self.status} {self.code}".rstrip()

    def describe(self, origin: float) -> str:
        at = f"t={self.started - origin:.1f}–{self.ended - origin:.1f}s"
        kind = f" {self.content_type}" if self.content_type else ""
        return f"{self.method} {self.path} → {self.label}{kind} ({at})"


@dataclass
class Window:
    """A fault and the time it may disturb: from its start until ``grace`` seconds after the
    system was whole again."""

    kind: str
    start: float
    end: float
    detail: str = ""

    def covers(self, attempt: Attempt) -> bool:
        return attempt.started <= self.end and attempt.ended >= self.start


@dataclass
class LedgerRun:
    started: float
    ended: float
    outcome: str  # clean | violations | unavailable | error
    detail: str = ""


class Journal:
    """Everything the clients and the faults did, thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.origin = time.monotonic()
        self.attempts: list[Attempt] = []
        self.windows: list[Window] = []
        self.completed: list[tuple[float, str, int]] = []  # (when, kind, how many)
        self.ledger_runs: list[LedgerRun] = []
        self.notes: list[str] = []  # problems found while running

    def attempt(self, attempt: Attempt) -> None:
        with self.lock:
            self.attempts.append(attempt)

    def done(self, kind: str, count: int = 1) -> None:
        with self.lock:
            self.completed.append((time.monotonic(), kind, count))

    def note(self, problem: str) -> None:
        with self.lock:
            self.notes.append(problem)

    def summary(self, since: float, until: float) -> dict[str, Any]:
        """Throughput, p99 latency and errors of the attempts that began in [since, until)."""
        with self.lock:
            attempts = [a for a in self.attempts if since <= a.started < until]
            completed = [(k, n) for t, k, n in self.completed if since <= t < until]
        seconds = max(until - since, 1e-9)
        rates = {kind: sum(n for k, n in completed if k == kind) / seconds for kind in KINDS}
        latency: dict[str, float] = {}
        by_kind: dict[str, list[float]] = defaultdict(list)
        for a in attempts:
            if a.status is not None:
                by_kind[a.kind].append(a.ended - a.started)
        for kind, values in by_kind.items():
            latency[kind] = percentile(values, 0.99)
        errors = Counter(
            a.label
            for a in attempts
            if a.status is None or (a.status >= 400 and a.code != "insufficient_float")
        )
        return {"rates": rates, "p99": latency, "errors": dict(errors), "requests": len(attempts)}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return ""

    @property
    def content_type(self) -> str:
        return self.header("Content-Type").split(";")[0].strip()

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def code(self) -> str:
        if self.content_type != PROBLEM_JSON:
            return ""
        data = self.json()
        return str(data.get("code", "")) if isinstance(data, dict) else ""


class Http:
    """Requests to serve, one connection each, every one recorded in the journal."""

    def __init__(self, port: int, journal: Journal, timeout: float = 30) -> None:
        self.port, self.journal, self.timeout = port, journal, timeout

    def request(
        self,
        kind: str,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response | None:
        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            raw = conn.getresponse()
            response = Response(raw.status, raw.getheaders(), raw.read())
        except (OSError, http.client.HTTPException) as exc:
            self.journal.attempt(
                Attempt(
                    kind, method, path, started, time.monotonic(), None, error=type(exc).__name__
                )
            )
            return None
        finally:
            conn.close()
        self.journal.attempt(
            Attempt(
                kind,
                method,
                path,
                started,
                time.monotonic(),
                response.status,
                response.content_type,
                response.code,
            )
        )
        return response

    def call(
        self,
        kind: str,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
        until: float,
        sign: Callable[[bytes], dict[str, str]] | None = None,
    ) -> Response | None:
        """The request, sent again — same key, same body — after a connection error, a 5xx
        or ``409 request_in_progress``, until it has an answer or ``until`` has passed (then
        the last answer, or None)."""
        delay = 0.2
        while True:
            sent = {**headers, **(sign(body or b"") if sign else {})}
            response = self.request(kind, method, path, body, sent)
            if response is not None and not retriable(response):
                return response
            if time.monotonic() >= until:
                return response
            wait = delay
            if response is not None and response.header("Retry-After").isdigit():
                wait = min(float(response.header("Retry-After")), 2.0)
            time.sleep(wait * random.uniform(0.8, 1.2))
            delay = min(delay * 2, 2.0)


def retriable(response: Response) -> bool:
    return response.status >= 500 or (
        response.status == 409 and response.code == "request_in_progress"
    )


def ledger_outcome(done: subprocess.CompletedProcess[str]) -> tuple[str, str]:
    """What one ``check-ledger`` run said: ``clean``, ``violations``, ``unavailable`` (it
    could not reach the database) or ``error`` (it failed otherwise), and the details."""
    output = (done.stdout + done.stderr).strip()
    try:
        report = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    except ValueError:
        report = {}
    report = report if isinstance(report, dict) else {}
    violations = list(report.get("violations") or [])
    violations += [line for line in output.splitlines() if line.startswith("VIOLATION:")]
    if violations:
        return "violations", "; ".join(violations)[:3000]
    if done.returncode == 0:
        return "clean", ""
    if re.search(r"OperationalError|InterfaceError|server closed the connection", output):
        return "unavailable", output[-500:]
    return "error", f"exit {done.returncode}: {output[-2000:]}"


def minor(money: dict[str, str]) -> int:
    """``{"amount": "4.60", "currency": "CNY"}`` → 460 (the seeded currency has 2 decimals)."""
    return int(Decimal(money["amount"]) * 100)


# --- the workload -------------------------------------------------------------------------


@dataclass
class Shape:
    """How much load, of which kind, and how patient the clients and checks are."""

    topup_clients: int = 3
    order_clients: int = 1
    usage_clients: int = 1
    usage_batch: int = 100
    resellers: int = 3  # the last one has a small float, credited by the operator
    cards: int = 8
    customers: int = 2
    web_workers: int = 2
    replay_every: int = 10  # every n-th sale is sent again on purpose
    retry_seconds: float = 60  # how long a client keeps sending one request again
    grace: float = 10  # a fault's window lasts this long after the system is whole again
    ledger_every: float = 8  # seconds between check-ledger runs during the load
    credit_every: float = 15  # seconds between credits to the small reseller's float
    small_share: float = 0.1  # of the top-ups, for the reseller with the small float
    settle_seconds: float = 90  # after the load: paid orders must be fulfilled within this


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the load started
    kind: str  # one of FAULT_KINDS


def fault_schedule(seconds: float, interval: float, kinds: tuple[str, ...]) -> list[Fault]:
    """Faults every ``interval`` seconds, cycling through ``kinds``, none in the last
    ``interval`` seconds' second half (so that the load ends on a whole system)."""
    faults: list[Fault] = []
    at = interval / 2
    while at < seconds - interval / 2:
        faults.append(Fault(at, kinds[len(faults) % len(kinds)]))
        at += interval
    return faults


@dataclass
class Topup:
    reseller: int
    reference: str
    plan: str
    status: int | None = None
    code: str = ""
    body: dict[str, Any] | None = None


@dataclass
class CustomerOrder:
    id: int
    token: str
    plan: str
    paid: bool = False
    status: str = ""


@dataclass
class Batch:
    id: str
    size: int
    status: int | None = None
    outcome: dict[str, Any] | None = None


@dataclass
class Results:
    """What the clients were told, by key."""

    topups: list[Topup] = field(default_factory=list)
    replays: list[tuple[Topup, Response | None]] = field(default_factory=list)
    orders: list[CustomerOrder] = field(default_factory=list)
    batches: list[Batch] = field(default_factory=list)
    credits: list[tuple[str, int, bool | None]] = field(default_factory=list)  # memo, amount, ok
    orders_unknown: int = 0  # order requests whose client never had an answer


class Chaos:
    """One chaos run (see the module's docstring)."""

    def __init__(
        self,
        workdir: Path,
        database: Database,
        shape: Shape | None = None,
        log: Callable[[str], None] | None = None,
        **settings: str,
    ) -> None:
        self.workdir = workdir
        self.database = database
        self.shape = shape or Shape()
        self.log = log or (lambda message: None)
        self.run_id = "c" + uuid.uuid4().hex[:8]
        self.network_secret = "chaos-network-" + secrets.token_hex(24)
        port = free_port()
        self.env = app_env(
            database.url,
            workdir / "var",
            SECRET_KEY="chaos-" + secrets.token_urlsafe(40),
            NETWORK_SECRET=self.network_secret,
            SITE_URL=f"http://127.0.0.1:{port}",
            PAYMENT_PROVIDER="sandbox",
            SANDBOX_ALLOWED="1",  # a test installation: the sandbox may take payments
            SANDBOX_WEBHOOK_DELIVERY="http",
            # Quick retries and take-overs, so that a minute's faults settle in seconds.
            SANDBOX_WEBHOOK_BACKOFF="1,2,4,8",
            FULFILMENT_BACKOFF="1,2,4,8,16",
            FULFILMENT_LEASE_SECONDS="5",
            RECONCILE_INTERVAL_SECONDS="3",
            PAYMENT_QUERY_SCHEDULE="5,10,20,40,80",
            IDEMPOTENCY_LEASE_SECONDS="10",
            SHUTDOWN_GRACE_SECONDS="15",
            **settings,
        )
        workdir.mkdir(parents=True, exist_ok=True)
        self.serve = Serve(self.env, port, workdir / "serve.log", self.shape.web_workers)
        self.journal = Journal()
        self.http = Http(port, self.journal)
        self.results = Results()
        self.results_lock = threading.Lock()
        self.seeded: dict[str, Any] = {}
        self.stopping = threading.Event()  # no new operations once set
        self.threads: list[threading.Thread] = []
        self.serve_deaths: list[str] = []
        self.supervision: list[str] = []  # killed children serve did not replace
        self.serve_exit: int | None = None
        self.report: dict[str, Any] = {}
        self.api_floats: dict[int, int | None] = {}
        self.final_ledger: LedgerRun | None = None
        self.problems: dict[str, list[str]] = {}
        self.load_started = 0.0
        self.load_ended = 0.0

    # --- set-up -----------------------------------------------------------------------

    def command(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            simtopup(*args),
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def python(self, *args: str, timeout: float = 300) -> Any:
        """``python -m tests.chaos …`` (Django against the chaos database) → its JSON."""
        done = subprocess.run(
            [sys.executable, "-m", "tests.chaos", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(f"tests.chaos {args[0]} failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def setup(self) -> None:
        began = time.monotonic()
        migrated = self.command("migrate", "--no-input", "-v0", timeout=300)
        if migrated.returncode:
            raise RuntimeError(f"migrate failed:\n{migrated.stderr[-3000:]}")
        self.seeded = self.python(
            "seed",
            *("--run", self.run_id),
            *("--resellers", str(self.shape.resellers)),
            *("--cards", str(self.shape.cards)),
            *("--customers", str(self.shape.customers)),
        )
        self.log(f"migrated and seeded in {time.monotonic() - began:.1f} s; starting serve")
        self.serve.start()
        self.log(f"serve ready on {self.serve.url} ({time.monotonic() - began:.1f} s)")

    # --- the load ---------------------------------------------------------------------

    def run(
        self,
        seconds: float,
        faults: list[Fault],
        every: float = 0,
        on_tick: Callable[[float, float], None] | None = None,
    ) -> None:
        """Load for ``seconds`` with ``faults`` on their schedule (run here, in the calling
        thread); ``on_tick(since, until)`` every ``every`` seconds (the soak's report)."""
        for fault in faults:
            if fault.kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault {fault.kind!r}")
            if fault.kind.startswith("pg_") and not self.database.restartable:
                raise ValueError(f"{fault.kind}: this database may not be restarted")
        shape = self.shape
        clients: list[Callable[[int], None]] = []
        clients += [self.topup_client] * shape.topup_clients
        clients += [self.order_client] * shape.order_clients
        clients += [self.usage_client] * shape.usage_clients
        self.load_started = time.monotonic()
        for index, client in enumerate(clients):
            self._spawn(client, index)
        self._spawn(self.auditor, 0)
        self._spawn(self.creditor, 0)
        pending = sorted(faults, key=lambda f: f.at)
        end = self.load_started + seconds
        tick = self.load_started
        while True:
            now = time.monotonic()
            self.watch_serve()
            if every and on_tick and now >= tick + every:
                on_tick(tick, now)
                tick = now
            if now >= end:
                break
            if pending and now >= self.load_started + pending[0].at:
                self.inject(pending.pop(0).kind)
                continue
            time.sleep(0.2)
        self.stopping.set()
        self.load_ended = time.monotonic()
        if every and on_tick and self.load_ended > tick + 1:
            on_tick(tick, self.load_ended)

    def _spawn(self, target: Callable[[int], None], index: int) -> None:
        def guarded() -> None:
            try:
                target(index)
            except Exception as exc:  # a harness bug must show, not hang the run
                self.journal.note(f"client {target.__name__}[{index}] crashed: {exc!r}")
                raise

        thread = threading.Thread(target=guarded, name=f"{target.__name__}-{index}", daemon=True)
        thread.start()
        self.threads.append(thread)

    def until(self) -> float:
        return time.monotonic() + self.shape.retry_seconds

    def topup_client(self, index: int) -> None:
        rng = random.Random(f"{self.run_id}-t{index}")
        resellers = self.seeded["resellers"]
        cards = self.seeded["cards"]
        n = 0
        while not self.stopping.is_set():
            n += 1
            small = rng.random() < self.shape.small_share
            reseller = resellers[-1] if small else rng.choice(resellers[:-1])
            sale = Topup(reseller["id"], f"{self.run_id}-t{index}-{n}", rng.choice(self.plans()))
            body = json.dumps(
                {"device": rng.choice(cards), "plan": sale.plan, "reference": sale.reference}
            ).encode()
            headers = {
                "Authorization": f"Bearer {reseller['key']}",
                "Content-Type": "application/json",
                "Idempotency-Key": uuid.uuid4().hex,
            }
            response = self.http.call(
                "topup", "POST", "/reseller/v1/topups", body, headers, self.until()
            )
            if response is not None:
                sale.status, sale.code = response.status, response.code
                data = response.json()
                sale.body = data if isinstance(data, dict) else None
                if response.status == 201:
                    self.journal.done("topup")
            with self.results_lock:
                self.results.topups.append(sale)
            if response is not None and response.status == 201 and n % self.shape.replay_every == 0:
                again = self.http.call(
                    "replay", "POST", "/reseller/v1/topups", body, headers, self.until()
                )
                with self.results_lock:
                    self.results.replays.append((sale, again))

    def plans(self) -> list[str]:
        return [BUNDLE_PLAN, CREDIT_PLAN]

    def order_client(self, index: int) -> None:
        rng = random.Random(f"{self.run_id}-o{index}")
        tokens = self.seeded["tokens"]
        cards = self.seeded["cards"]
        while not self.stopping.is_set():
            token = rng.choice(tokens)
            plan = rng.choice(self.plans())
            body = json.dumps(
                {"device": rng.choice(cards), "plan": plan, "payment_method": "card"}
            ).encode()
            headers = {
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "Idempotency-Key": uuid.uuid4().hex,
            }
            response = self.http.call(
                "order", "POST", "/api/v1/orders", body, headers, self.until()
            )
            if response is None or retriable(response):
                with self.results_lock:
                    self.results.orders_unknown += 1  # it may or may not have been made
                continue
            if response.status != 201:
                self.journal.note(
                    f"POST /api/v1/orders → {response.status} {response.body[:300]!r}"
                )
                continue
            data = response.json()
            order = CustomerOrder(int(data["id"]), token, plan)
            with self.results_lock:
                self.results.orders.append(order)
            checkout = urllib.parse.urlsplit(data["payment"]["checkout_url"] or "").path
            if not checkout:
                self.journal.note(f"order {order.id}: no checkout_url in {data}")
                continue
            order.paid = self.pay(checkout, self.until())
            if order.paid:
                self.journal.done("order")

    def pay(self, checkout: str, until: float) -> bool:
        """The payer's browser: the hosted page, then the form with ``outcome=succeed``."""
        token = ""
        cookie = ""
        posted = False
        while time.monotonic() < until:
            page = self.http.request("checkout", "GET", checkout)
            if page is None or page.status >= 500:
                time.sleep(0.5)
                continue
            if page.status != 200:
                self.journal.note(f"GET {checkout} → {page.status}")
                return False
            for key, value in page.headers:
                if key.lower() == "set-cookie" and value.startswith("csrftoken="):
                    cookie = value.split(";")[0]
            match = CSRF_FIELD.search(page.body.decode(errors="replace"))
            if match is None:
                # No form: the charge is settled already — by our earlier post, whose answer
                # was lost — or something is wrong.
                if posted:
                    return True
                self.journal.note(f"GET {checkout}: no payment form on the page")
                return False
            token = match.group(1)
            form = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "outcome": "succeed"})
            submitted = self.http.request(
                "pay",
                "POST",
                checkout,
                form.encode(),
                {
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Cookie": cookie,
                    "Referer": f"{self.serve.url}{checkout}",
                },
            )
            posted = True
            if submitted is not None and submitted.status in (302, 303):
                return True
            if submitted is not None and submitted.status < 500:
                self.journal.note(f"POST {checkout} → {submitted.status} {submitted.body[:200]!r}")
                return False
            time.sleep(0.5)
        return False

    def usage_client(self, index: int) -> None:
        from simtopup.core.signing import HEADER, sign

        def signature(body: bytes) -> dict[str, str]:
            return {HEADER: sign(self.network_secret, "POST", "/network/v1/usage", body)}

        rng = random.Random(f"{self.run_id}-u{index}")
        cards = self.seeded["cards"]
        n = 0
        while not self.stopping.is_set():
            n += 1
            batch = Batch(f"{self.run_id}-u{index}x{n}", self.shape.usage_batch)
            now = datetime.now(UTC)
            records = []
            for i in range(batch.size):
                began = now - timedelta(seconds=rng.randrange(30, 120))
                records.append(
                    {
                        "id": f"{batch.id}-{i}",
                        "iccid": rng.choice(cards),
                        "bytes": rng.randrange(10_000, 3_000_000),
                        "started_at": began.isoformat().replace("+00:00", "Z"),
                        "ended_at": (began + timedelta(seconds=20))
                        .isoformat()
                        .replace("+00:00", "Z"),
                    }
                )
            body = json.dumps({"records": records}).encode()
            headers = {"Content-Type": "application/json"}
            response = self.http.call(
                "usage", "POST", "/network/v1/usage", body, headers, self.until(), sign=signature
            )
            if response is not None:
                batch.status = response.status
                data = response.json()
                batch.outcome = data if isinstance(data, dict) else None
                if response.status == 200 and batch.outcome:
                    self.journal.done("usage", int(batch.outcome.get("accepted", 0)))
            with self.results_lock:
                self.results.batches.append(batch)

    def auditor(self, index: int) -> None:
        """``check-ledger`` every ``ledger_every`` seconds until the load ends."""
        while not self.stopping.wait(self.shape.ledger_every):
            self.check_ledger()

    def creditor(self, index: int) -> None:
        """The operator credits the small reseller's float every ``credit_every`` seconds."""
        small = self.seeded["resellers"][-1]
        n = 0
        while not self.stopping.wait(self.shape.credit_every):
            n += 1
            memo = f"{self.run_id} credit {n}"
            done = self.command(
                "reseller", "credit", str(small["id"]), "100.00", "--reason", memo, timeout=60
            )
            # A failure may have come after the commit: the credit's fate is then unknown.
            ok: bool | None = True if done.returncode == 0 else None
            with self.results_lock:
                self.results.credits.append((memo, 10000, ok))

    def check_ledger(self) -> LedgerRun:
        started = time.monotonic()
        done = self.command("check-ledger", "--json", timeout=120)
        if "unrecognized arguments: --json" in done.stderr:  # a check-ledger without --json
            done = self.command("check-ledger", timeout=120)
        outcome, detail = ledger_outcome(done)
        run = LedgerRun(started, time.monotonic(), outcome, detail)
        with self.journal.lock:
            self.journal.ledger_runs.append(run)
        return run

    # --- faults -----------------------------------------------------------------------

    def watch_serve(self) -> None:
        if not self.serve.running and not self.serve_deaths:
            code = self.serve.process.returncode if self.serve.process else None
            self.serve_deaths.append(
                f"serve exited ({code}) at t={time.monotonic() - self.load_started:.1f}s"
            )

    def inject(self, kind: str) -> None:
        start = time.monotonic()
        detail = ""
        if kind == "web_worker":
            detail = self.kill_web_worker()
        elif kind == "worker":
            detail = self.kill_worker()
        elif kind == "pg_restart":
            self.database.restart()
            detail = "fast shutdown, 3 s down, start"
        elif kind == "pg_crash":
            self.database.crash()
            detail = "SIGKILL to the postmaster, start (crash recovery)"
        whole = time.monotonic()
        window = Window(kind, start, whole + self.shape.grace, detail)
        with self.journal.lock:
            self.journal.windows.append(window)
        self.log(
            f"fault {kind} at t={start - self.load_started:.1f}s: {detail}; whole again after "
            f"{whole - start:.1f} s"
        )

    def wait_for(self, condition: Callable[[], bool], timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.watch_serve()
            if condition():
                return True
            time.sleep(0.1)
        return False

    def kill_web_worker(self) -> str:
        granian = self.serve.granian()
        workers = self.serve.web_worker_pids(granian) if granian else []
        if not workers:
            self.supervision.append(f"no web worker to kill (granian {granian})")
            return "nothing to kill"
        victim = workers[0]
        os.kill(victim, signal.SIGKILL)

        def replaced() -> bool:
            now = self.serve.granian()
            if now is None:
                return False
            pids = self.serve.web_worker_pids(now)
            return len(pids) == self.shape.web_workers and victim not in pids

        if not self.wait_for(replaced):
            self.supervision.append(f"web worker {victim} killed, not replaced within 30 s")
        return f"SIGKILL to web worker {victim} (granian {granian})"

    def kill_worker(self) -> str:
        victim = self.serve.worker()
        if victim is None:
            self.supervision.append("no background worker to kill")
            return "nothing to kill"
        os.kill(victim, signal.SIGKILL)

        def restarted() -> bool:
            now = self.serve.worker()
            return now is not None and now != victim

        if not self.wait_for(restarted):
            self.supervision.append(f"background worker {victim} killed, not restarted within 30 s")
        return f"SIGKILL to the background worker {victim}"

    # --- the end ----------------------------------------------------------------------

    def finish(self) -> None:
        """Let the clients finish (bounded), wait for paid orders to be fulfilled, run the
        final check-ledger, read the database, stop serve, reconcile."""
        self.stopping.set()
        began = time.monotonic()
        deadline = began + self.shape.retry_seconds + 30
        for thread in self.threads:
            thread.join(max(0.1, deadline - time.monotonic()))
            if thread.is_alive():
                self.journal.note(f"client {thread.name} still running after the load")
        self.watch_serve()
        self.log(f"clients done in {time.monotonic() - began:.1f} s")
        self.settle_orders()
        self.final_ledger = self.check_ledger()
        self.report = self.python(
            "inspect",
            *("--run", self.run_id),
            *("--resellers", ",".join(str(r["id"]) for r in self.seeded["resellers"])),
            *("--customers", ",".join(str(c) for c in self.seeded["customers"])),
        )
        self.read_floats()
        self.watch_serve()
        stopping = time.monotonic()
        self.serve_exit = self.serve.stop()
        self.log(
            f"final check-ledger {self.final_ledger.outcome}, database read; serve stopped in "
            f"{time.monotonic() - stopping:.1f} s (exit {self.serve_exit}); "
            f"{time.monotonic() - began:.1f} s after the load"
        )
        self.problems = self.reconcile()

    def settle_orders(self) -> None:
        """Poll every paid order (``GET /api/v1/orders/{id}``) until it is fulfilled or
        ``settle_seconds`` have passed."""
        waiting = [o for o in self.results.orders if o.paid]
        deadline = time.monotonic() + self.shape.settle_seconds
        while waiting and time.monotonic() < deadline:
            still = []
            for order in waiting:
                response = self.http.request(
                    "poll",
                    "GET",
                    f"/api/v1/orders/{order.id}",
                    headers={"Authorization": f"Bearer {order.token}"},
                )
                data = response.json() if response is not None else None
                if isinstance(data, dict) and "status" in data:
                    order.status = str(data["status"])
                if order.status != "fulfilled":
                    still.append(order)
            waiting = still
            if waiting:
                time.sleep(1)
        self.log(
            f"paid orders settled: {sum(1 for o in self.results.orders if o.paid) - len(waiting)}"
            f" fulfilled, {len(waiting)} not"
        )

    def read_floats(self) -> None:
        for reseller in self.seeded["resellers"]:
            response = self.http.call(
                "float",
                "GET",
                "/reseller/v1/float",
                None,
                {"Authorization": f"Bearer {reseller['key']}"},
                time.monotonic() + 20,
            )
            data = response.json() if response is not None and response.status == 200 else None
            self.api_floats[reseller["id"]] = minor(data["balance"]) if data else None

    def close(self) -> None:
        self.stopping.set()
        self.serve.kill()

    def __enter__(self) -> Chaos:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the account ------------------------------------------------------------------

    def reconcile(self) -> dict[str, list[str]]:
        checks: dict[str, Callable[[], list[str]]] = {
            "serve": self.check_serve,
            "http": self.check_http,
            "topups": self.check_topups,
            "floats": self.check_floats,
            "orders": self.check_orders,
            "usage": self.check_usage,
            "ledger": self.check_ledger_runs,
            # A task left FAILED is work lost (a payment notice, a fulfilment, a message).
            "tasks": lambda: list(self.report["failed_tasks"]),
            "harness": lambda: list(self.journal.notes),
        }
        found = {name: check() for name, check in checks.items()}
        return {name: lines for name, lines in found.items() if lines}

    def check_serve(self) -> list[str]:
        problems = self.serve_deaths + self.supervision
        if self.serve_exit != 0:
            problems.append(f"serve's exit status after SIGTERM: {self.serve_exit} (want 0)")
        return problems

    def check_http(self) -> list[str]:
        problems: list[str] = []
        for a in self.journal.attempts:
            inside = any(w.covers(a) for w in self.journal.windows)
            api = a.path.startswith(API_PREFIXES)
            if a.status is None:
                if not inside:
                    problems.append(f"connection error outside a fault window: {self.at(a)}")
            elif a.status >= 500 and a.status != 503:
                problems.append(f"{a.status}: {self.at(a)}")
            elif a.status == 503:
                if not inside:
                    problems.append(f"503 outside a fault window: {self.at(a)}")
                elif api and (a.content_type != PROBLEM_JSON or a.code != "database_unavailable"):
                    problems.append(f"503 that is not database_unavailable: {self.at(a)}")
        return problems

    def at(self, attempt: Attempt) -> str:
        return attempt.describe(self.load_started)

    def check_topups(self) -> list[str]:
        problems: list[str] = []
        small = self.seeded["resellers"][-1]["id"]
        db: dict[tuple[int, str], dict[str, Any]] = {}
        for reseller_id, reseller in self.report["resellers"].items():
            for row in reseller["orders"]:
                db[(int(reseller_id), row["reference"])] = row
        told: set[tuple[int, str]] = set()
        for sale in self.results.topups:
            key = (sale.reseller, sale.reference)
            row = db.get(key)
            told.add(key)
            if sale.status == 201 and sale.body is not None:
                body = sale.body
                if row is None:
                    problems.append(f"201 for {key}, but no such order: {body}")
                    continue
                charged, left = minor(body["charged"]), minor(body["float_balance"])
                if (row["id"], row["amount"], row["status"]) != (body["id"], charged, "fulfilled"):
                    problems.append(f"201 {body} but the database has {row}")
                if row["pay_source_balance"] != left:
                    problems.append(
                        f"order {row['id']}: float_balance {left} in the 201, its payment "
                        f"transfer left {row['pay_source_balance']}"
                    )
                if left < 0:
                    problems.append(f"order {row['id']}: float_balance {left} below zero")
            elif sale.status == 402 and sale.code == "insufficient_float" and key[0] == small:
                if row is not None:
                    problems.append(f"402 for {key}, but the order exists: {row}")
            elif sale.status is None or sale.status >= 500 or sale.code == "request_in_progress":
                pass  # unknown: the client gave up; the order may or may not exist
            else:
                problems.append(f"top-up {key} answered {sale.status} {sale.body}")
        for key, row in db.items():
            if key[1].startswith(self.run_id) and key not in told:
                problems.append(f"order {row} for a reference no client sent")
            if row["status"] != "fulfilled":
                problems.append(f"reseller order {row} not fulfilled")
        for sale, again in self.results.replays:
            if again is None or again.status != 201 or again.json() != sale.body:
                got = None if again is None else (again.status, again.body[:300])
                problems.append(f"replay of {sale.reference}: {got}, first answer {sale.body}")
            elif again.header("Idempotent-Replayed") != "true":
                problems.append(f"replay of {sale.reference} not marked Idempotent-Replayed")
        return problems

    def check_floats(self) -> list[str]:
        problems: list[str] = []
        sold: dict[int, int] = defaultdict(int)
        unknown: dict[int, int] = defaultdict(int)
        for sale in self.results.topups:
            if sale.status == 201 and sale.body is not None:
                sold[sale.reseller] += minor(sale.body["charged"])
            elif sale.status is None or sale.status >= 500 or sale.code == "request_in_progress":
                unknown[sale.reseller] += 1
        credits_ok = {memo: amount for memo, amount, ok in self.results.credits if ok}
        credits_tried = {memo for memo, _amount, _ok in self.results.credits}
        for reseller in self.seeded["resellers"]:
            rid = reseller["id"]
            row = self.report["resellers"][str(rid)]
            credited = 0
            memos = Counter(memo for memo, _amount in row["credits"])
            for memo, amount in row["credits"]:
                credited += amount
                if memo != "initial float" and memo not in credits_tried:
                    problems.append(f"reseller {rid}: a credit nobody made: {memo} {amount}")
            for memo, count in memos.items():
                if count > 1:
                    problems.append(f"reseller {rid}: credit {memo!r} booked {count} times")
            for memo in credits_ok:
                if reseller["small"] and memo not in memos:
                    problems.append(f"reseller {rid}: credit {memo!r} succeeded but is missing")
            charged = sum(o["amount"] - o["refunded"] for o in row["orders"])
            if row["float"] != credited - charged:
                problems.append(
                    f"reseller {rid}: float {row['float']} != credited {credited} − charged "
                    f"{charged} (orders not refunded)"
                )
            # Every credit in the ledger is one the operator made (checked above): what the
            # clients were told they were charged must account for the rest, to the fen —
            # unless some sale's outcome stayed unknown to its client.
            if not unknown[rid] and row["float"] != credited - sold[rid]:
                problems.append(
                    f"reseller {rid}: float {row['float']}, but the clients were told of "
                    f"{sold[rid]} charged out of {credited} credited"
                )
            if self.api_floats.get(rid) != row["float"]:
                problems.append(
                    f"reseller {rid}: GET /reseller/v1/float says {self.api_floats.get(rid)}, "
                    f"the ledger {row['float']}"
                )
        for code, balance in self.report["negative_accounts"]:
            problems.append(f"account {code} below zero: {balance}")
        return problems

    def check_orders(self) -> list[str]:
        problems: list[str] = []
        db = {int(k): v for k, v in self.report["customer_orders"].items()}
        for order in self.results.orders:
            row = db.get(order.id)
            if row is None:
                problems.append(f"customer order {order.id} (201) not in the database")
            elif order.paid and row["status"] != "fulfilled":
                problems.append(
                    f"customer order {order.id} paid at the gateway, but {row['status']} "
                    f"(payment {row['payment']}) {self.shape.settle_seconds:.0f} s after the load"
                )
        made = {o.id for o in self.results.orders}
        strays = sorted(pk for pk in db if pk not in made)
        if len(strays) > self.results.orders_unknown:
            problems.append(
                f"customer orders nobody was told of: {strays[:20]} (more than the "
                f"{self.results.orders_unknown} requests left without an answer)"
            )
        return problems

    def check_usage(self) -> list[str]:
        problems: list[str] = []
        counts = self.report["usage"]["batches"]
        for batch in self.results.batches:
            stored = counts.get(batch.id, 0)
            if batch.status == 200 and batch.outcome is not None:
                out = batch.outcome
                if out["rejected"] or out["accepted"] + out["duplicates"] != batch.size:
                    problems.append(f"usage batch {batch.id}: answered {out}")
                if stored != batch.size:
                    problems.append(f"usage batch {batch.id}: 200, but {stored} records stored")
            elif batch.status is None or batch.status >= 500:
                if stored not in (0, batch.size):
                    problems.append(f"usage batch {batch.id}: {stored} of {batch.size} stored")
            else:
                problems.append(f"usage batch {batch.id}: answered {batch.status} {batch.outcome}")
        sent = {b.id for b in self.results.batches}
        for batch_id in counts:
            if batch_id not in sent:
                problems.append(f"usage records of a batch nobody sent: {batch_id}")
        problems += self.report["usage"]["mismatches"]
        return problems

    def check_ledger_runs(self) -> list[str]:
        problems = []
        for run in self.journal.ledger_runs:
            if run.outcome in ("violations", "error"):
                at = f"t={run.started - self.load_started:.1f}s"
                problems.append(f"check-ledger {run.outcome} ({at}): {run.detail}")
        if self.final_ledger is None or self.final_ledger.outcome != "clean":
            problems.append(f"the final check-ledger is not clean: {self.final_ledger}")
        return problems

    def counts(self) -> dict[str, Any]:
        """What the run did, for the log and the soak's report."""
        r = self.results
        ledger = Counter(run.outcome for run in self.journal.ledger_runs)
        return {
            "topups": Counter(
                "201" if s.status == 201 else f"{s.status} {s.code}".strip() for s in r.topups
            ),
            "replays": len(r.replays),
            "orders": len(r.orders),
            "orders_paid": sum(1 for o in r.orders if o.paid),
            "usage_batches": Counter(str(b.status) for b in r.batches),
            "usage_records": sum(
                int(b.outcome.get("accepted", 0))
                for b in r.batches
                if b.outcome and b.status == 200
            ),
            "credits": Counter(str(ok) for _m, _a, ok in r.credits),
            "ledger_runs": dict(ledger),
            "tasks": self.report.get("tasks", {}),
            "requests": len(self.journal.attempts),
            "windows": [
                f"{w.kind} {w.start - self.load_started:.1f}–{w.end - self.load_started:.1f}s"
                for w in self.journal.windows
            ],
            "errors": Counter(
                a.label
                for a in self.journal.attempts
                if a.status is None or (a.status >= 400 and a.code != "insufficient_float")
            ),
        }


# --- in a subprocess, with Django against the chaos database ---------------------------------


def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "simtopup.settings")
    import django

    django.setup()


def seed(run: str, resellers: int, cards: int, customers: int) -> dict[str, Any]:
    """Plans (``simtopup demo``), the shared cards, the resellers (the last with a small
    float) and logged-in customers (a fresh app token each)."""
    _django()
    from django.core.management import call_command
    from stdnum import luhn

    from simtopup.accounts.models import Customer
    from simtopup.accounts.tokens import issue_token
    from simtopup.devices.inventory import create_device
    from simtopup.resellers.actions import create_reseller

    with open(os.devnull, "w") as quiet:
        call_command("demo", devices=0, verbosity=0, stdout=quiet)
    iccids = []
    for n in range(1, cards + 1):
        body = f"898697{n:012d}"
        iccid = body + luhn.calc_check_digit(body)
        create_device(kind="esim", iccid=iccid)
        iccids.append(iccid)
    sellers = []
    for n in range(1, resellers + 1):
        small = n == resellers
        amount = 10_000 if small else 100_000_000  # ¥100.00 | ¥1,000,000.00
        reseller, key = create_reseller(
            f"Chaos {run} {n}", discount_bps=0 if small else 500 * (n - 1), initial_float=amount
        )
        sellers.append({"id": reseller.pk, "key": key, "float": amount, "small": small})
    people, tokens = [], []
    for n in range(1, customers + 1):
        person = Customer.objects.create(phone=f"+86138{int(run[1:], 16) % 10**4:04d}{n:04d}")
        token, _row = issue_token(person, "chaos")
        people.append(person.pk)
        tokens.append(token)
    return {"cards": iccids, "resellers": sellers, "customers": people, "tokens": tokens}


def inspect(run: str, reseller_ids: list[int], customer_ids: list[int]) -> dict[str, Any]:
    """The database's side of the account (see :meth:`Chaos.reconcile`)."""
    _django()
    from django.db.models import Q

    from simtopup.ledger.models import Account, Transfer
    from simtopup.orders.models import Order
    from simtopup.resellers.models import Reseller
    from simtopup.usage.models import UsageRecord

    resellers: dict[str, Any] = {}
    for reseller in Reseller.objects.filter(pk__in=reseller_ids).select_related("float_account"):
        account = reseller.float_account
        orders: list[dict[str, Any]] = [
            dict(row)
            for row in Order.objects.filter(reseller=reseller).values(
                "id", "reference", "amount", "status"
            )
        ]
        pays = dict(
            Transfer.objects.filter(
                source=account, kind="order_payment", idempotency_key__endswith=":pay"
            ).values_list("idempotency_key", "source_balance")
        )
        refunds: dict[str, int] = defaultdict(int)
        for key, amount in Transfer.objects.filter(
            destination=account, idempotency_key__endswith=":refund"
        ).values_list("idempotency_key", "amount"):
            refunds[key] += amount
        for order in orders:
            order["pay_source_balance"] = pays.get(f"order:{order['id']}:pay")
            order["refunded"] = refunds.get(f"order:{order['id']}:refund", 0)
        credits = list(
            Transfer.objects.filter(destination=account, kind="float_credit").values_list(
                "memo", "amount"
            )
        )
        resellers[str(reseller.pk)] = {
            "float": account.balance,
            "orders": orders,
            "credits": credits,
        }
    customer_orders = {
        str(pk): {"status": status, "payment": payment}
        for pk, status, payment in Order.objects.filter(customer_id__in=customer_ids).values_list(
            "id", "status", "payment__status"
        )
    }
    batches: Counter[str] = Counter()
    records: dict[str, tuple[int, int, int, int]] = {}
    for record_id, bundle, payg, overage, charged in UsageRecord.objects.filter(
        record_id__startswith=f"{run}-"
    ).values_list("record_id", "bundle_bytes", "payg_bytes", "overage_bytes", "charged"):
        batches[record_id.rsplit("-", 1)[0]] += 1
        records[record_id] = (bundle, payg, overage, charged)
    booked: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    column = {"bundle": 0, "payg": 1, "overage": 2, "charge": 3}
    for key, amount in Transfer.objects.filter(
        idempotency_key__startswith=f"usage:{run}-"
    ).values_list("idempotency_key", "amount"):
        _usage, record_id, leg = key.split(":")[:3]
        booked[record_id][column[leg]] += amount
    mismatches = [
        f"usage record {rid}: stored (bundle, payg, overage, charged) {want}, the ledger "
        f"booked {tuple(booked.get(rid, [0, 0, 0, 0]))}"
        for rid, want in records.items()
        if tuple(booked.get(rid, [0, 0, 0, 0])) != want
    ]
    mismatches += [
        f"ledger usage legs for a record not stored: {rid}"
        for rid in booked.keys() - records.keys()
    ]
    from django_tasks_db.models import DBTaskResult

    tasks = dict(Counter(DBTaskResult.objects.values_list("status", flat=True)))
    failed = [
        f"{path.rsplit('.', 1)[-1]} {args}: {exception} — "
        f"{(trace.strip().splitlines() or [''])[-1][:200]}"
        for path, args, exception, trace in DBTaskResult.objects.filter(
            status="FAILED"
        ).values_list("task_path", "args_kwargs", "exception_class_path", "traceback")[:20]
    ]
    negative = list(
        Account.objects.filter(Q(allow_negative=False) & Q(balance__lt=0)).values_list(
            "code", "balance"
        )[:20]
    )
    return {
        "resellers": resellers,
        "customer_orders": customer_orders,
        "usage": {"batches": dict(batches), "mismatches": mismatches[:50]},
        "negative_accounts": negative,
        "tasks": tasks,
        "failed_tasks": failed,
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("seed")
    s.add_argument("--run", required=True)
    s.add_argument("--resellers", type=int, default=3)
    s.add_argument("--cards", type=int, default=8)
    s.add_argument("--customers", type=int, default=2)
    i = sub.add_parser("inspect")
    i.add_argument("--run", required=True)
    i.add_argument("--resellers", required=True)
    i.add_argument("--customers", required=True)
    args = parser.parse_args(argv)
    if args.command == "seed":
        out = seed(args.run, args.resellers, args.cards, args.customers)
    else:
        out = inspect(
            args.run,
            [int(x) for x in args.resellers.split(",") if x],
            [int(x) for x in args.customers.split(",") if x],
        )
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
