"""simtopup benchmarks on PostgreSQL (``make bench``; not part of the test suite).

    .venv/bin/python bench/run.py [all|topup|usage|profile] [options]

topup    reseller top-ups over HTTP, the full path (API key, Idempotency-Key, order, ledger,
         bundle, receipt), driven by wrk with 32 keep-alive connections, each request with its
         own key and reference, rotating over --resellers resellers (default: as many as
         TPC-B has branches, 10 at scale 10 — a reseller's sales queue on its float row as
         TPC-B's transactions queue on their branch row); and pgbench's built-in TPC-B on the
         same PostgreSQL for scale, in --rounds alternating rounds (pgbench, then top-ups) so that both see the same
         machine: the ratio is all top-ups per second over the rounds' mean TPC-B tps, the
         latencies are each percentile's median over the rounds.
usage    signed batches of 1,000 usage records to POST /network/v1/usage for devices holding
         bundles (bought through reseller top-ups first); then one batch is sent again to show
         that every record is detected as a duplicate.
profile  the top-up and usage hot paths in-process (bench/hotpaths.py): SQL statements per
         request, DB/Python time split, the float's lock hold time, cProfile.
all      topup, then usage (the default).

The server is ``simtopup serve --no-worker`` on a free loopback port against the database
``--database`` (default simtopup_bench, created if missing; never the ``test`` database); it
is stopped on exit, also after a failure or Ctrl-C. Goals: top-ups/s ≥ 0.3 × pgbench TPC-B
tps at 8 clients with p99 ≤ 50 ms; usage ≥ 20,000 records/s. Results: bench/RESULTS.md.

Exit status: 0 after a valid run (goals met or not; with --check-goals, 2 when one is not
met), 1 when the run is invalid (a top-up not 201, a usage record rejected, a re-sent batch
not detected as duplicates, a ledger audit violation) or could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
SEED = [sys.executable, str(HERE / "seed.py")]
NETWORK_SECRET = "bench-network-secret-" + uuid.uuid4().hex
USAGE_PLAN = "month-20g"  # 20 GB: ample for every record the usage benchmark sends


class BenchError(Exception):
    pass


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def python_speed() -> float:
    """CPU µs for ``sum(range(1000))`` (best of 5): roughly 8 on a current laptop."""
    numbers = range(1000)
    best = float("inf")
    for _ in range(5):
        began = time.process_time()
        for _ in range(2000):
            sum(numbers)
        best = min(best, (time.process_time() - began) / 2000 * 1e6)
    return best


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


# --- tools and databases ---------------------------------------------------------------


def ensure_wrk() -> str:
    """wrk drives the top-up load (C, cheap on a 2-core box). Install Debian's if missing."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("wrk is missing: installing the Debian package (apt-get install wrk)")
        install = ["apt-get", "install", "-y", "-qq", "wrk"]
        if subprocess.run(install, capture_output=True).returncode:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
            subprocess.run(install, capture_output=True)
        found = shutil.which("wrk")
        if found:
            return found
    raise BenchError(
        "the top-up benchmark needs wrk (HTTP load generator): install it with "
        "`apt-get install wrk` (Debian/Ubuntu) or `brew install wrk`, then run again"
    )


def need(tool: str, hint: str) -> str:
    found = shutil.which(tool)
    if not found:
        raise BenchError(f"{tool} is not installed: {hint}")
    return found


@dataclass
class Postgres:
    host: str
    port: int
    user: str

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def admin(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            raise BenchError(f"cannot reach PostgreSQL at {self.url('postgres')}: {exc}") from exc

    def ensure_database(self, name: str, *, fresh: bool = False) -> None:
        from psycopg import sql

        with self.admin() as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if exists and fresh:
                log(f"dropping database {name} (a fresh one for every run; --reuse keeps it)")
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
                exists = None
            if not exists:
                log(f"creating database {name}")
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def vacuum(self, database: str) -> None:
        """VACUUM ANALYZE, as pgbench does before its own run, then CHECKPOINT: the same
        starting line for every measured phase, whatever earlier runs (or a server with
        autovacuum off) left behind, and no checkpoint owed by the previous phase's WAL
        landing in the middle of the next one."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True, connect_timeout=5) as conn:
            conn.execute("VACUUM (ANALYZE)")
            conn.execute("CHECKPOINT")

    def server_version(self) -> str:
        with self.admin() as conn:
            return str(conn.execute("SHOW server_version").fetchone()[0])


def pgbench_env(pg: Postgres) -> dict[str, str]:
    return {**os.environ, "PGHOST": pg.host, "PGPORT": str(pg.port), "PGUSER": pg.user}


def pgbench_init(pg: Postgres, args: argparse.Namespace) -> None:
    """pgbench's own database for its built-in TPC-B, the yardstick of this machine."""
    tool = need("pgbench", "install PostgreSQL's client tools (Debian: postgresql-client)")
    pg.ensure_database(args.pgbench_database)
    log(f"pgbench -i -s {args.pgbench_scale} {args.pgbench_database}")
    init = subprocess.run(
        [tool, "-i", "-q", "-s", str(args.pgbench_scale), args.pgbench_database],
        env=pgbench_env(pg),
        capture_output=True,
        text=True,
    )
    if init.returncode:
        raise BenchError(f"pgbench -i failed:\n{init.stderr[-2000:]}")


def pgbench(pg: Postgres, args: argparse.Namespace) -> dict[str, Any]:
    """One TPC-B run of ``--pgbench-duration`` seconds (our server, if started, is idle)."""
    tool = need("pgbench", "install PostgreSQL's client tools (Debian: postgresql-client)")
    command = [
        tool,
        "-c",
        str(args.pgbench_clients),
        "-j",
        str(args.pgbench_jobs),
        "-T",
        str(args.pgbench_duration),
        args.pgbench_database,
    ]
    pg.vacuum(args.pgbench_database)  # pgbench vacuums its tables too; this adds the CHECKPOINT
    log(" ".join(["pgbench", *command[1:]]) + f"; load average {loadavg()}")
    run = subprocess.run(command, env=pgbench_env(pg), capture_output=True, text=True)
    match = re.search(r"^tps = ([\d.]+)", run.stdout, re.M)
    if run.returncode or not match:
        raise BenchError(f"pgbench failed:\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
    latency = re.search(r"^latency average = ([\d.]+) ms", run.stdout, re.M)
    return {
        "tps": float(match.group(1)),
        "latency_avg_ms": float(latency.group(1)) if latency else None,
        "command": "pgbench " + " ".join(command[1:]),
    }


# --- the server --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def django_env(database_url: str, data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "simtopup.settings",
        "SIMTOPUP_DATABASE_URL": database_url,
        "SIMTOPUP_DATA_DIR": str(data_dir),
        "SIMTOPUP_NETWORK_SECRET": NETWORK_SECRET,
        "SIMTOPUP_DEBUG": "0",
        "SIMTOPUP_SANDBOX_ALLOWED": "1",  # a test installation: serve refuses the sandbox else
    }


def run_json(command: list[str], env: dict[str, str], stdin: str | None = None) -> Any:
    done = subprocess.run(command, env=env, input=stdin, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise BenchError(f"{' '.join(command[:3])} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


ACCESS_LOG = re.compile(r'"(?:GET|POST|PUT|DELETE|HEAD) [^"]*" \d{3} ')


class Server:
    """``simtopup serve`` (``--no-worker`` unless asked) in its own process group, always
    stopped on exit."""

    def __init__(self, env: dict[str, str], logfile: Path, args: argparse.Namespace) -> None:
        self.env, self.logfile, self.args = env, logfile, args
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, worker: bool = False) -> None:
        command = [str(BIN / "simtopup"), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        if not worker:
            command.append("--no-worker")
        if self.args.web_workers:
            command += ["--workers", str(self.args.web_workers)]
        if self.args.web_threads:
            command += ["--threads", str(self.args.web_threads)]
        log(f"starting {' '.join(command[1:])}  (log: {self.logfile})")
        with self.logfile.open("wb") as out:
            self.proc = subprocess.Popen(
                command, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"the server exited ({self.proc.returncode}):\n{self.tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
            time.sleep(0.3)
        raise BenchError(f"the server did not answer /healthz in 90 s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        """The end of the server's log, without the web server's access log lines."""
        try:
            text = self.logfile.read_text(errors="replace")
        except OSError:
            return "(no log)"
        kept = [line for line in text.splitlines() if not ACCESS_LOG.search(line)]
        return "\n".join(kept[-lines:])

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        log("stopping the server")
        # Our own child's process group: serve, its web server and workers.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=25)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # the web server's workers may outlive serve by a moment; make sure the group is gone.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


# --- CPU accounting ----------------------------------------------------------------------
# Wall-clock rates on a shared 2-core box move with whatever else runs; CPU seconds spent per
# operation do not (much). They say where the work goes and bound the rate on an idle box.

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()  # fields from 3 (state) on


def proc_cpu(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        fields = _stat(pid)
        if fields:
            out[pid] = (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime
    return out


def session_pids(sid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields and int(fields[3]) == sid:  # field 6: session id
                pids.append(int(entry.name))
    return pids


class CpuMeter:
    """CPU seconds of the server's processes, of the benchmark database's PostgreSQL
    backends and of our load-generating children (wrk) between start() and stop().

    Sampled every half second, because Django closes and reopens database connections
    (CONN_MAX_AGE) during a run and a backend's CPU time is unreadable once it has exited.
    """

    INTERVAL = 0.5

    def __init__(self, server: Server, pg: Postgres, database: str) -> None:
        self.server, self.pg, self.database = server, pg, database
        self.before: dict[str, dict[int, float]] = {}
        self.latest: dict[str, dict[int, float]] = {}
        self.children = 0.0
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.conn: Any = None

    def _snapshot(self) -> dict[str, dict[int, float]]:
        proc = self.server.proc
        rows = self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", [self.database]
        ).fetchall()
        return {
            "app": proc_cpu(session_pids(proc.pid)) if proc else {},
            "db": proc_cpu([int(r[0]) for r in rows]),
        }

    def _sample(self) -> None:
        for kind, values in self._snapshot().items():
            self.latest[kind].update(values)

    def _loop(self) -> None:
        try:
            while not self.stopping.wait(self.INTERVAL):
                self._sample()
        except Exception as exc:  # the run is failing or ending; stop() reports what we have
            self.stopping.set()
            log(f"CPU sampling stopped: {exc}")

    def _children(self) -> float:
        import resource

        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def start(self) -> None:
        self.conn = self.pg.admin()
        self.before = self._snapshot()
        self.latest = {kind: dict(values) for kind, values in self.before.items()}
        self.children = self._children()
        self.stopping.clear()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def stop(self) -> dict[str, float]:
        self.stopping.set()
        if self.thread:
            self.thread.join()
        self._sample()
        self.conn.close()
        used = {
            kind: sum(cpu - self.before[kind].get(pid, 0.0) for pid, cpu in values.items())
            for kind, values in self.latest.items()
        }
        used["client"] = self._children() - self.children
        return used


# --- a small keep-alive HTTP client (usage batches, top-ups that buy bundles) --------------


class Http:
    def __init__(self, base: str) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=120)

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        self.conn.request(
            "POST", path, body=body, headers={"Content-Type": "application/json", **headers}
        )
        response = self.conn.getresponse()
        data = response.read()
        try:
            return response.status, json.loads(data)
        except ValueError:
            return response.status, data.decode(errors="replace")

    def close(self) -> None:
        self.conn.close()


def parallel(jobs: list[Any], workers: int, fn: Any) -> list[Any]:
    """Run ``fn(http_client_index, job)`` over jobs with ``workers`` threads, keep order."""
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []
    lock = threading.Lock()
    position = iter(range(len(jobs)))

    def worker(index: int) -> None:
        while not errors:
            with lock:
                i = next(position, None)
            if i is None:
                return
            try:
                results[i] = fn(index, jobs[i])
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


# --- top-ups -----------------------------------------------------------------------------


def topup_devices(seeded: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """The first ``--devices`` of the inventory take the top-ups …"""
    return list(seeded["devices"][: args.devices])


def usage_devices(seeded: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """… and the next ``--usage-devices`` the usage records, so that the bundles the top-up
    run sold (about ten per device at 1,000 top-ups/s for 20 s) do not pile onto the
    devices the usage run rates: a card does not hold ten day passes at once."""
    return list(seeded["devices"][args.devices : args.devices + args.usage_devices])


def run_wrk(
    wrk: str, server: Server, seeded: dict[str, Any], workdir: Path, seconds: int, run_id: str
) -> dict[str, Any]:
    env = topup_env(server, seeded, workdir, run_id)
    return wrk_script(wrk, server, "topup.lua", env, seconds)


def topup_env(server: Server, seeded: dict[str, Any], workdir: Path, run_id: str) -> dict[str, str]:
    """The environment bench/topup.lua reads: the resellers' keys, the devices, the plan."""
    args = server.args
    devices_file = workdir / "devices.txt"
    devices_file.write_text("\n".join(topup_devices(seeded, args)) + "\n")
    return {
        **os.environ,
        "BENCH_API_KEYS": ",".join(seeded["api_keys"]),
        "BENCH_DEVICES_FILE": str(devices_file),
        "BENCH_PLAN": args.plan,
        "BENCH_RUN_ID": run_id,
        "BENCH_THREADS": str(args.wrk_threads),
    }


def wrk_script(
    wrk: str,
    server: Server,
    script: str,
    env: dict[str, str],
    seconds: int,
    connections: int | None = None,
) -> dict[str, Any]:
    """Run wrk with the Lua ``script`` of this folder against ``server`` for ``seconds``
    (``connections``, default ``--connections``); the script prints one ``BENCH_JSON {…}``
    line, returned with the command that made it."""
    args = server.args
    command = [
        wrk,
        "-t",
        str(args.wrk_threads),
        "-c",
        str(connections or args.connections),
        "-d",
        f"{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(HERE / script),
        server.url,
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if done.returncode or line is None:
        raise BenchError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    result: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
    result["command"] = " ".join(["wrk", *command[1:-1], "http://127.0.0.1:<port>"])
    return result


def bench_topup(
    pg: Postgres,
    wrk: str,
    server: Server,
    meter: CpuMeter,
    seeded: dict[str, Any],
    workdir: Path,
    args: argparse.Namespace,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``--rounds`` rounds of pgbench TPC-B then top-ups, back to back: this VM's speed drifts
    by a third within minutes, and alternating the two lets each ratio compare phases that
    ran under the same conditions. Returns (top-ups, pgbench or None)."""
    run_id = "b" + uuid.uuid4().hex[:10]
    if args.warmup:
        log(f"top-up warm-up: {args.warmup} s")
        run_wrk(wrk, server, seeded, workdir, args.warmup, run_id + "w")
    if not args.skip_pgbench:
        pgbench_init(pg, args)
    rounds: list[dict[str, Any]] = []
    yardsticks: list[dict[str, Any]] = []
    for n in range(1, args.rounds + 1):
        if not args.skip_pgbench:
            yardsticks.append(pgbench(pg, args))
        log(f"VACUUM ANALYZE {args.database}")
        pg.vacuum(args.database)
        log(
            f"top-ups, round {n}/{args.rounds}: {args.connections} connections for "
            f"{args.duration} s ({len(seeded['api_keys'])} reseller(s), "
            f"{len(topup_devices(seeded, args))} devices, plan {args.plan}); "
            f"load average {loadavg()}"
        )
        meter.start()
        result = run_wrk(wrk, server, seeded, workdir, args.duration, f"{run_id}r{n}")
        cpu = meter.stop()
        seconds = result["duration_us"] / 1e6
        created = int(result["statuses"].get("201", 0))
        lat = result["latency_us"]
        one = {
            "topups_per_s": created / seconds,
            "created": created,
            "seconds": seconds,
            "other_statuses": {k: v for k, v in result["statuses"].items() if k != "201"},
            "socket_errors": {k: v for k, v in result["socket_errors"].items() if v},
            "error_samples": result["error_samples"],
            "p50_ms": lat["p50"] / 1000,
            "p90_ms": lat["p90"] / 1000,
            "p99_ms": lat["p99"] / 1000,
            "max_ms": lat["max"] / 1000,
            "mean_ms": lat["mean"] / 1000,
            "cpu_ms": {k: v * 1000 for k, v in cpu.items()},
            "command": result["command"],
        }
        if yardsticks:
            one["pgbench_tps"] = yardsticks[-1]["tps"]
            one["ratio"] = one["topups_per_s"] / one["pgbench_tps"]
        rounds.append(one)
    created = sum(r["created"] for r in rounds)
    seconds = sum(r["seconds"] for r in rounds)
    cpu_total: dict[str, float] = {}
    for r in rounds:
        for k, v in r["cpu_ms"].items():
            cpu_total[k] = cpu_total.get(k, 0.0) + v
    summary: dict[str, Any] = {
        "rounds": rounds,
        "topups_per_s": created / seconds,
        "created": created,
        "seconds": seconds,
        "resellers": len(seeded["api_keys"]),
        "other_statuses": merge_counts(r["other_statuses"] for r in rounds),
        "socket_errors": merge_counts(r["socket_errors"] for r in rounds),
        "error_samples": [s for r in rounds for s in r["error_samples"]][:5],
        # Latency of the whole run: each percentile's median over the rounds.
        **{
            key: median([r[key] for r in rounds])
            for key in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms")
        },
        "cpu_ms_per_topup": {k: v / max(created, 1) for k, v in cpu_total.items()},
        "command": rounds[0]["command"],
        "loadavg_after": loadavg(),
    }
    yardstick = None
    if yardsticks:
        yardstick = {
            "tps": sum(y["tps"] for y in yardsticks) / len(yardsticks),
            "rounds": [y["tps"] for y in yardsticks],
            "command": yardsticks[0]["command"],
        }
        summary["ratio"] = summary["topups_per_s"] / yardstick["tps"]
    return summary, yardstick


def merge_counts(counts: Any) -> dict[str, int]:
    merged: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            merged[k] = merged.get(k, 0) + int(v)
    return merged


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def topup_body(device: str, plan: str, reference: str) -> bytes:
    return json.dumps({"device": device, "plan": plan, "reference": reference}).encode()


# --- usage -------------------------------------------------------------------------------


def ensure_bundles(
    server: Server, env: dict[str, str], seeded: dict[str, Any], devices: list[str], min_bytes: int
) -> int:
    """Buy a USAGE_PLAN bundle over the reseller API for each device short of ``min_bytes``."""
    have = set(
        run_json(
            [*SEED, "bundled", "--plan", USAGE_PLAN, "--min-bytes", str(min_bytes)],
            env,
            stdin="\n".join(devices),
        )["bundled"]
    )
    missing = [d for d in devices if d not in have]
    if not missing:
        return 0
    log(f"buying {USAGE_PLAN} bundles for {len(missing)} devices over the reseller API")
    run_id = "u" + uuid.uuid4().hex[:10]
    clients = [Http(server.url) for _ in range(8)]
    key = seeded["api_keys"][0]

    def buy(index: int, device: str) -> None:
        ref = f"{run_id}-{device}"
        status, body = clients[index].post(
            "/reseller/v1/topups",
            topup_body(device, USAGE_PLAN, ref),
            {"Authorization": f"Bearer {key}", "Idempotency-Key": ref},
        )
        if status != 201 or body.get("status") != "fulfilled":
            raise BenchError(f"top-up for {device} failed: {status} {body}")

    try:
        parallel(missing, len(clients), buy)
    finally:
        for c in clients:
            c.close()
    return len(missing)


@dataclass
class Batch:
    body: bytes
    records: int
    ids: list[str] = field(default_factory=list)


def make_batches(
    devices: list[str], count: int, size: int, streams: int, run_id: str
) -> list[list[Batch]]:
    """``streams`` senders, each with ``count // streams`` batches over its own devices."""
    rng = random.Random(run_id)
    start = datetime.now(UTC)
    per_stream = [devices[i::streams] for i in range(streams)]
    out: list[list[Batch]] = [[] for _ in range(streams)]
    for n in range(count):
        stream = n % streams
        own = per_stream[stream]
        records = []
        for i in range(size):
            began = start + timedelta(milliseconds=rng.randrange(0, 1000))
            records.append(
                {
                    "id": f"{run_id}-{n}-{i}",
                    "iccid": own[(n * size + i) % len(own)],
                    "bytes": rng.randrange(1_000, 2_000_000),
                    "started_at": began.isoformat().replace("+00:00", "Z"),
                    "ended_at": (began + timedelta(seconds=rng.randrange(1, 60)))
                    .isoformat()
                    .replace("+00:00", "Z"),
                }
            )
        out[stream].append(Batch(json.dumps({"records": records}).encode(), size))
    return out


def send_usage(client: Http, batch: Batch) -> tuple[int, Any]:
    from simtopup.core.signing import HEADER, sign

    path = "/network/v1/usage"
    return client.post(path, batch.body, {HEADER: sign(NETWORK_SECRET, "POST", path, batch.body)})


def bench_usage(
    pg: Postgres,
    server: Server,
    meter: CpuMeter,
    env: dict[str, str],
    seeded: dict[str, Any],
    args: argparse.Namespace,
) -> dict[str, Any]:
    devices = usage_devices(seeded, args)
    streams = args.usage_concurrency
    # Records average ~1 MB; leave each device room for the whole run and then some.
    need_bytes = (args.usage_batches * args.usage_batch_size // len(devices) + 1) * 2_000_000 * 2
    bought = ensure_bundles(server, env, seeded, devices, need_bytes)
    run_id = "r" + uuid.uuid4().hex[:10]
    batches = make_batches(devices, args.usage_batches, args.usage_batch_size, streams, run_id)
    clients = [Http(server.url) for _ in range(streams)]
    try:
        # Warm-up: a small batch on every connection (its records are real and rated too).
        for n, client in enumerate(clients):
            warm = make_batches(devices[n::streams], 1, 50, 1, f"{run_id}w{n}")[0][0]
            status, body = send_usage(client, warm)
            if status != 200:
                raise BenchError(f"usage warm-up failed: {status} {body}")
        log(f"VACUUM ANALYZE {args.database}")
        pg.vacuum(args.database)
        log(
            f"usage: {args.usage_batches} batches × {args.usage_batch_size} records, "
            f"{streams} concurrent sender(s), {len(devices)} devices; load average {loadavg()}"
        )
        latencies: list[float] = []
        outcomes: list[dict[str, Any]] = []
        lock = threading.Lock()

        def sender(index: int, own: list[Batch]) -> None:
            for batch in own:
                began = time.perf_counter()
                status, body = send_usage(clients[index], batch)
                elapsed = time.perf_counter() - began
                if status != 200:
                    raise BenchError(f"usage batch refused: {status} {body}")
                with lock:
                    latencies.append(elapsed)
                    outcomes.append(body)

        meter.start()
        began = time.perf_counter()
        parallel(batches, streams, sender)
        seconds = time.perf_counter() - began
        cpu = meter.stop()
        accepted = sum(o["accepted"] for o in outcomes)
        duplicates = sum(o["duplicates"] for o in outcomes)
        rejected = sum(len(o["rejected"]) for o in outcomes)
        # The same batch again (freshly signed): every record must come back as a duplicate.
        first = batches[0][0]
        status, again = send_usage(clients[0], first)
        if status != 200:
            raise BenchError(f"re-sent batch refused: {status} {again}")
    finally:
        for c in clients:
            c.close()
    latencies.sort()
    return {
        "records_per_s": accepted / seconds,
        "accepted": accepted,
        "duplicates_in_run": duplicates,
        "rejected": rejected,
        "seconds": seconds,
        "batches": len(outcomes),
        "batch_p50_ms": latencies[len(latencies) // 2] * 1000,
        "batch_max_ms": latencies[-1] * 1000,
        "resent": {
            "records": first.records,
            "accepted": again["accepted"],
            "duplicates": again["duplicates"],
            "rejected": len(again["rejected"]),
        },
        "cpu_ms_per_1000_records": {
            k: v * 1000 / max(accepted, 1) * 1000 for k, v in cpu.items() if k != "client"
        },
        "bundles_bought": bought,
        "loadavg_after": loadavg(),
    }


# --- main --------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("what", nargs="?", default="all", choices=["all", "topup", "usage", "profile"])
    p.add_argument("--database", default="simtopup_bench", help="benchmark database (PostgreSQL)")
    p.add_argument("--pg-host", default=os.environ.get("PGHOST", "127.0.0.1"))
    p.add_argument("--pg-port", type=int, default=int(os.environ.get("PGPORT", "5432")))
    p.add_argument("--pg-user", default=os.environ.get("PGUSER", "postgres"))
    p.add_argument(
        "--reuse",
        action="store_true",
        help="keep the database of earlier runs (default: drop and recreate it, as pgbench -i "
        "does for its own, so every run starts from the same size)",
    )
    p.add_argument("--fresh", action="store_true", help="(the default; kept for old commands)")
    p.add_argument("--devices", type=int, default=2000, help="devices the top-ups rotate over")
    p.add_argument(
        "--resellers",
        type=int,
        help="spread top-ups over N resellers, round robin (default: --pgbench-scale, as many "
        "as TPC-B has branches; 1 measures one reseller's ceiling: its float row)",
    )
    p.add_argument(
        "--web-workers", type=int, help="web server processes (serve's default: one per core)"
    )
    p.add_argument("--web-threads", type=int, help="threads per process (serve's default: 2)")
    g = p.add_argument_group("top-ups")
    g.add_argument(
        "--rounds", type=int, default=3, help="rounds of pgbench then top-ups, alternated"
    )
    g.add_argument("--duration", type=int, default=15, help="measured seconds per round")
    g.add_argument("--warmup", type=int, default=5, help="warm-up seconds (not measured)")
    g.add_argument("--connections", type=int, default=32)
    g.add_argument("--wrk-threads", type=int, default=2)
    g.add_argument("--plan", default="day-1g", help="a bundle plan: the full fulfilment path")
    g.add_argument("--skip-pgbench", action="store_true")
    g.add_argument("--pgbench-database", default="pgbench_bench")
    g.add_argument("--pgbench-scale", type=int, default=10)
    g.add_argument("--pgbench-clients", type=int, default=8)
    g.add_argument("--pgbench-jobs", type=int, default=2)
    g.add_argument("--pgbench-duration", type=int, default=15, help="seconds per round")
    g = p.add_argument_group("usage")
    g.add_argument("--usage-batches", type=int, default=40)
    g.add_argument("--usage-batch-size", type=int, default=1000)
    g.add_argument("--usage-concurrency", type=int, default=4, help="concurrent senders")
    g.add_argument(
        "--usage-devices",
        type=int,
        default=1000,
        help="devices the usage records cover (others than the top-ups')",
    )
    g = p.add_argument_group("profile")
    g.add_argument("--profile-requests", type=int, default=300)
    p.add_argument("--json", type=Path, help="also write the results to this file")
    p.add_argument(
        "--check-goals", action="store_true", help="exit with status 2 when a goal is not met"
    )
    args = p.parse_args(argv)
    for name in (args.database, args.pgbench_database):
        if name in {"test", "postgres", "template0", "template1"}:
            p.error(f"refusing to benchmark in the {name!r} database")
    if args.database == args.pgbench_database:
        p.error("--database and --pgbench-database must differ")
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    if args.usage_batch_size > 1000:
        p.error("the API takes at most 1,000 records per batch")
    return args


def on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def judge(results: dict[str, Any]) -> tuple[list[str], dict[str, bool]]:
    """What makes this run invalid (problems), and which goals it met."""
    problems: list[str] = []
    goals: dict[str, bool] = {}
    top, pg, use = results.get("topup"), results.get("pgbench"), results.get("usage")
    if top:
        if top["other_statuses"] or top["socket_errors"] or not top["created"]:
            problems.append(f"top-ups not all 201: {top['other_statuses']} {top['socket_errors']}")
        if pg:
            goals["topup"] = top["ratio"] >= 0.3 and top["p99_ms"] <= 50
    if use:
        r = use["resent"]
        if use["rejected"] or use["duplicates_in_run"]:
            problems.append(
                f"usage: {use['rejected']} rejected, {use['duplicates_in_run']} duplicates"
            )
        if r["duplicates"] != r["records"] or r["accepted"]:
            problems.append(f"re-sent batch not detected as duplicates: {r}")
        goals["usage"] = use["records_per_s"] >= 20000
    if results.get("ledger_violations"):
        problems.append(f"ledger audit: {len(results['ledger_violations'])} violations")
    return problems, goals


def summarize(results: dict[str, Any]) -> None:
    cores = os.cpu_count() or 1
    problems, goals = results["problems"], results["goals"]

    def verdict(name: str) -> str:
        return "MET" if goals.get(name) else "NOT MET"

    print()
    print("=" * 72)
    print(f"simtopup benchmark — {results['date']}  ({results['machine']})")
    pg = results.get("pgbench")
    top = results.get("topup")
    if top:
        for n, r in enumerate(top["rounds"], 1):
            yard = f"pgbench {r['pgbench_tps']:.0f} tps, " if "pgbench_tps" in r else ""
            ratio = f", ratio {r['ratio']:.3f}" if "ratio" in r else ""
            print(
                f"round {n}:           {yard}top-ups {r['topups_per_s']:.1f}/s, "
                f"p50 {r['p50_ms']:.1f} / p99 {r['p99_ms']:.1f} ms{ratio}"
            )
    if pg:
        print(f"pgbench TPC-B:     {pg['tps']:.0f} tps, mean of the rounds  ({pg['command']})")
    if top:
        print(
            f"top-ups:           {top['topups_per_s']:.1f}/s  "
            f"({top['created']} created in {top['seconds']:.1f} s, "
            f"{top['resellers']} reseller(s))"
        )
        print(
            f"  latency:         p50 {top['p50_ms']:.1f} ms, p90 {top['p90_ms']:.1f} ms, "
            f"p99 {top['p99_ms']:.1f} ms, max {top['max_ms']:.1f} ms (medians of the rounds)"
        )
        cpu = top["cpu_ms_per_topup"]
        busy = cpu["app"] + cpu["db"]
        if top["created"] and busy:
            print(
                f"  CPU per top-up:  app {cpu['app']:.1f} ms + PostgreSQL {cpu['db']:.1f} ms "
                f"(wrk {cpu['client']:.2f} ms) → {cores} cores / {busy:.1f} ms "
                f"= {cores * 1000 / busy:.0f}/s if CPU were the only limit"
            )
        if top["other_statuses"] or top["socket_errors"]:
            print(f"  NOT 201:         {top['other_statuses']} {top['socket_errors']}")
            for sample in top["error_samples"]:
                print(f"    {sample}")
        if pg:
            print(
                f"  ratio:           {top['ratio']:.3f} × pgbench "
                f"(goal ≥ 0.3 with p99 ≤ 50 ms): {verdict('topup')}"
            )
    use = results.get("usage")
    if use:
        print(
            f"usage rated:       {use['records_per_s']:.0f} records/s  "
            f"({use['accepted']} in {use['seconds']:.1f} s, {use['batches']} batches, "
            f"batch p50 {use['batch_p50_ms']:.0f} ms; goal ≥ 20,000: {verdict('usage')})"
        )
        cpu = use["cpu_ms_per_1000_records"]
        busy = cpu["app"] + cpu["db"]
        if busy:
            print(
                f"  CPU per 1,000:   app {cpu['app']:.0f} ms + PostgreSQL {cpu['db']:.0f} ms "
                f"→ {cores * 1e6 / busy:.0f} records/s if CPU were the only limit"
            )
        r = use["resent"]
        print(
            f"  re-sent batch:   {r['duplicates']}/{r['records']} duplicates, "
            f"{r['accepted']} accepted"
        )
    audit = results.get("ledger_violations")
    if audit is not None:
        print(f"ledger audit:      {'clean' if not audit else f'{len(audit)} VIOLATIONS'}")
    print(f"load average:      before {results['loadavg_before']}, after {loadavg()}")
    print(
        f"Python speed:      sum(range(1000)) = {results['python_speed_us']:.1f} µs CPU "
        "(a current laptop: ~8 µs)"
    )
    for problem in problems:
        print(f"INVALID RUN:       {problem}")
    print("=" * 72)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, on_sigterm)
    if not (BIN / "simtopup").exists():
        raise BenchError(f"run this with the project's venv: .venv/bin/python (not {BIN})")
    pg = Postgres(args.pg_host, args.pg_port, args.pg_user)
    wrk = ensure_wrk() if args.what in {"all", "topup"} else ""
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python "
        f"{platform.python_version()}, PostgreSQL {pg.server_version()}",
        "command": " ".join([".venv/bin/python bench/run.py", *argv]),
        "loadavg_before": loadavg(),
        "python_speed_us": python_speed(),
    }
    pg.ensure_database(args.database, fresh=not args.reuse)
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="simtopup-bench-")))
        env = django_env(pg.url(args.database), workdir / "data")
        inventory = args.devices + args.usage_devices
        if args.resellers is None:
            args.resellers = args.pgbench_scale
        log(f"migrating and seeding {args.database} ({inventory} devices)")
        subprocess.run([str(BIN / "simtopup"), "migrate", "--no-input", "-v0"], env=env, check=True)
        seeded = run_json(
            [*SEED, "seed", "--devices", str(inventory), "--resellers", str(args.resellers)],
            env,
        )
        if args.what == "profile":
            for path in ("topup", "usage"):
                log(f"profiling the {path} hot path in-process")
                subprocess.run(
                    [
                        sys.executable,
                        str(HERE / "hotpaths.py"),
                        path,
                        *("--requests", str(args.profile_requests), "--plan", args.plan),
                        *("--devices", str(args.devices)),
                        *("--usage-devices", str(args.usage_devices)),
                    ],
                    env=env,
                    cwd=ROOT,
                    check=True,
                )
            return 0
        server = Server(env, workdir / "server.log", args)
        stack.callback(server.stop)
        meter = CpuMeter(server, pg, args.database)
        try:
            server.start()
            if args.what in {"all", "topup"}:
                top, yardstick = bench_topup(pg, wrk, server, meter, seeded, workdir, args)
                results["topup"] = top
                if yardstick:
                    results["pgbench"] = yardstick
            if args.what in {"all", "usage"}:
                results["usage"] = bench_usage(pg, server, meter, env, seeded, args)
        except Exception:
            print(f"--- server log (tail) ---\n{server.tail()}", file=sys.stderr)
            raise
        finally:
            server.stop()
        log("auditing the ledger")
        results["ledger_violations"] = run_json([*SEED, "audit"], env)["violations"]
    results["problems"], results["goals"] = judge(results)
    summarize(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if results["problems"]:
        return 1
    if args.check_goals and not all(results["goals"].values()):
        return 2
    return 0


def entry(main: Callable[[list[str]], int]) -> None:
    """A bench script's ``__main__``: exit with ``main``'s status; a BenchError (1) or Ctrl-C
    (130) ends it with one line instead of a traceback."""
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    entry(main)
