"""The real-time reads against ``/healthz`` on the same server, in one run (issue 12):

    .venv/bin/python bench/reads.py [--devices 200] [--duration 10] [--rounds 2]
    .venv/bin/python bench/reads.py --cpu [--requests 2000]   # in-process CPU per request

- ``GET /healthz`` — the server's floor: the web server, Django's middleware, no database;
- ``GET /api/v1/devices/{id}/balance`` — a customer's app polling a card it holds (app
  token; every card with a bundle, every other one also with pay-per-use credit);
- ``GET /network/v1/devices/{iccid}/authorization`` — the policy server's check (signed
  with the network secret).

Like bench/run.py: ``simtopup serve --no-worker`` on a free loopback port against a fresh
PostgreSQL database (``--database``, default simtopup_reads_bench; never ``test``), driven
by wrk (bench/reads.lua) with 32 keep-alive connections, requests rotating over the seeded
cards. Each round measures the three one after another (after a warm-up each), so a busy
neighbour on a shared machine slows all three alike; the ratios to /healthz are what the
goals are about: balance ≥ 0.4×, authorization ≥ 0.5×, p99 ≤ 20 ms for both (median over
the rounds). Results: bench/RESULTS.md.

``--cpu`` measures instead, on the same seeded database, the CPU time one request costs the
web process (``time.process_time``, best of 3 × ``--requests``): the WSGI application
called directly, as granian calls it, in one thread; no HTTP server, no wrk, the database's
CPU not included. It moves much less with a busy neighbour than the rates do.

Exit status: 0 after a valid run (goals met or not; with --check-goals, 2 when one is not
met), 1 when the run is invalid (a response not 200) or could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import (  # noqa: E402  (bench/run.py: the server, the database, wrk)
    BIN,
    NETWORK_SECRET,
    BenchError,
    CpuMeter,
    Postgres,
    Server,
    django_env,
    ensure_wrk,
    loadavg,
    log,
    run_json,
    wrk_script,
)

TARGETS = ["healthz", "balance", "authorization"]
GOALS = {"balance": 0.4, "authorization": 0.5}
P99_GOAL_MS = 20.0


# --- seeding (runs in a subprocess, with Django) -------------------------------------------


def seed(devices: int) -> dict[str, Any]:
    """Plans, ``devices`` bench cards held by the bench customer, each sold a day pass by a
    reseller (every other one also ¥50 of pay-per-use credit), and a fresh app token."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "simtopup.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import transaction
    from django.utils import timezone

    from seed import bench_iccid
    from simtopup.accounts.models import Customer
    from simtopup.accounts.tokens import issue_token
    from simtopup.devices.inventory import create_device
    from simtopup.devices.models import Device
    from simtopup.resellers.actions import create_reseller, sell_topup

    call_command("demo", devices=0, verbosity=0, stdout=open(os.devnull, "w"))  # noqa: SIM115
    person, _created = Customer.objects.get_or_create(phone="+8613800000098")
    reseller, _key = create_reseller("Reads bench", initial_float=10**12)
    iccids = [bench_iccid(n) for n in range(1, devices + 1)]
    for n, iccid in enumerate(iccids):
        with transaction.atomic():
            create_device(kind="esim", iccid=iccid)
            sell_topup(reseller, iccid, "day-1g", f"reads-{iccid}-day")
            if n % 2:
                sell_topup(reseller, iccid, "credit-50", f"reads-{iccid}-credit")
    cards = Device.objects.filter(iccid__in=iccids)
    cards.update(owner=person, bound_at=timezone.now())
    token, _row = issue_token(person, "reads bench")
    return {
        "token": token,
        "device_ids": sorted(cards.values_list("pk", flat=True)),
        "iccids": iccids,
    }


def cpu(seeded: dict[str, Any], requests: int) -> dict[str, float]:
    """Milliseconds of this process's CPU per request of each target, best of 3 runs of
    ``requests`` requests (after 200 to warm up), the WSGI application called directly."""
    import io

    from django.core.wsgi import get_wsgi_application

    from simtopup.core.signing import HEADER, sign

    application = get_wsgi_application()
    secret = os.environ["SIMTOPUP_NETWORK_SECRET"]
    signature_key = "HTTP_" + HEADER.upper().replace("-", "_")
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {seeded['token']}"}
    authorizations = [f"/network/v1/devices/{i}/authorization" for i in seeded["iccids"]]
    # A signature binds its request's path (v2): one per card, made before the clock starts.
    signed = {path: {signature_key: sign(secret, "GET", path, b"")} for path in authorizations}
    targets: dict[str, tuple[list[str], Callable[[str], dict[str, str]]]] = {
        "healthz": (["/healthz"], lambda path: {}),
        "balance": (
            [f"/api/v1/devices/{pk}/balance" for pk in seeded["device_ids"]],
            lambda path: bearer,
        ),
        "authorization": (authorizations, signed.__getitem__),
    }

    def call(path: str, headers: dict[str, str]) -> str:
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": path,
            "SCRIPT_NAME": "",
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "127.0.0.1:8000",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": sys.stderr,
            "wsgi.version": (1, 0),
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            **headers,
        }
        status: list[str] = []
        body = application(environ, lambda s, h, exc=None: status.append(s))
        b"".join(body)
        body.close()  # type: ignore[attr-defined]
        return status[0]

    result = {}
    for target, (paths, headers) in targets.items():
        for n in range(200):
            path = paths[n % len(paths)]
            status = call(path, headers(path))
            if not status.startswith("200"):
                raise BenchError(f"{target}: {status}")
        best = float("inf")
        for _run in range(3):
            started = time.process_time()
            for n in range(requests):
                path = paths[n % len(paths)]
                call(path, headers(path))
            best = min(best, (time.process_time() - started) / requests * 1000)
        result[target] = best
    return result


# --- measuring ------------------------------------------------------------------------------


def lua_env(
    paths: list[str],
    header: tuple[str, Callable[[str], str]] | None,
    wrk_threads: int,
    workdir: Path,
) -> dict[str, str]:
    """What bench/reads.lua reads: one request per line, its path and (after a tab) the
    value of ``header`` for it; also bench/peak.py's balance polls."""
    paths_file = workdir / "paths.txt"
    lines = [f"{path}\t{header[1](path)}" if header else path for path in paths]
    paths_file.write_text("\n".join(lines) + "\n")
    return {
        **os.environ,
        "BENCH_PATHS_FILE": str(paths_file),
        "BENCH_HEADER_NAME": header[0] if header else "",
        "BENCH_THREADS": str(wrk_threads),
    }


def wrk_run(
    wrk: str,
    server: Server,
    paths: list[str],
    header: tuple[str, Callable[[str], str]] | None,
    seconds: int,
    args: argparse.Namespace,
    workdir: Path,
) -> dict[str, Any]:
    """``header``: its name and its value for each path (a signature binds its path)."""
    env = lua_env(paths, header, args.wrk_threads, workdir)
    result = wrk_script(wrk, server, "reads.lua", env, seconds)
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def network_signature() -> tuple[str, Callable[[str], str]]:
    """The network's signature of each path's GET, fresh for this measurement (300 s)."""
    from simtopup.core.signing import HEADER, sign

    t = int(time.time())
    return HEADER, lambda path: sign(NETWORK_SECRET, "GET", path, b"", t)


def measure(
    wrk: str,
    server: Server,
    meter: CpuMeter,
    seeded: dict[str, Any],
    args: argparse.Namespace,
    workdir: Path,
) -> list[dict[str, Any]]:
    rounds = []
    for n in range(1, args.rounds + 1):
        row: dict[str, Any] = {"round": n, "loadavg_before": loadavg()}
        for target in TARGETS:
            if target == "healthz":
                paths, header = ["/healthz"], None
            elif target == "balance":
                paths = [f"/api/v1/devices/{pk}/balance" for pk in seeded["device_ids"]]
                bearer = f"Bearer {seeded['token']}"
                header = ("Authorization", lambda path, value=bearer: value)
            else:
                paths = [f"/network/v1/devices/{i}/authorization" for i in seeded["iccids"]]
                header = network_signature()
            wrk_run(wrk, server, paths, header, args.warmup, args, workdir)
            meter.start()
            result = wrk_run(wrk, server, paths, header, args.duration, args, workdir)
            cpu = meter.stop()
            # CPU milliseconds per request: the server's processes, PostgreSQL's backends,
            # wrk. Less sensitive to a busy neighbour than the rate.
            result["cpu_ms"] = {k: 1000 * v / max(result["requests"], 1) for k, v in cpu.items()}
            if set(result["statuses"]) != {"200"} or any(result["socket_errors"].values()):
                raise BenchError(f"{target}: not every answer was 200: {json.dumps(result)}")
            row[target] = result
            log(
                f"round {n} {target}: {result['rps']:.0f} req/s, "
                f"p50 {result['latency_us']['p50'] / 1000:.1f} ms, "
                f"p99 {result['latency_us']['p99'] / 1000:.1f} ms, CPU ms/request "
                + ", ".join(f"{k} {v:.2f}" for k, v in result["cpu_ms"].items())
            )
        row["loadavg_after"] = loadavg()
        rounds.append(row)
    return rounds


def judge(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for target in TARGETS:
        summary[target] = {
            "rps": statistics.median(r[target]["rps"] for r in rounds),
            "ratio": statistics.median(r[target]["rps"] / r["healthz"]["rps"] for r in rounds),
            "p50_ms": statistics.median(r[target]["latency_us"]["p50"] / 1000 for r in rounds),
            "p99_ms": statistics.median(r[target]["latency_us"]["p99"] / 1000 for r in rounds),
            "app_cpu_ms": statistics.median(r[target]["cpu_ms"]["app"] for r in rounds),
            "db_cpu_ms": statistics.median(r[target]["cpu_ms"]["db"] for r in rounds),
        }
    goals = {}
    for target, ratio in GOALS.items():
        goals[f"{target} ≥ {ratio}× healthz"] = summary[target]["ratio"] >= ratio
        goals[f"{target} p99 ≤ {P99_GOAL_MS:.0f} ms"] = summary[target]["p99_ms"] <= P99_GOAL_MS
    return {"summary": summary, "goals": goals}


def report(results: dict[str, Any]) -> None:
    print(
        f"\nreads at {results['connections']} connections, median of {results['rounds_run']} "
        f"rounds of {results['duration']} s (load average {results['loadavg']})"
    )
    print(
        f"{'':15}{'req/s':>9}{'× healthz':>11}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'app CPU ms':>12}{'db CPU ms':>11}"
    )
    for target, s in results["summary"].items():
        print(
            f"{target:15}{s['rps']:9.0f}{s['ratio']:11.2f}{s['p50_ms']:9.1f}{s['p99_ms']:9.1f}"
            f"{s['app_cpu_ms']:12.2f}{s['db_cpu_ms']:11.2f}"
        )
    for n, r in enumerate(results["rounds"], 1):
        cells = ", ".join(f"{t} {r[t]['rps']:.0f}" for t in TARGETS)
        print(f"  round {n}: {cells} req/s (load {r['loadavg_before']} → {r['loadavg_after']})")
    for goal, met in results["goals"].items():
        print(f"goal {goal}: {'met' if met else 'NOT met'}")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--database", default="simtopup_reads_bench", help="PostgreSQL database")
    p.add_argument("--pg-host", default=os.environ.get("PGHOST", "127.0.0.1"))
    p.add_argument("--pg-port", type=int, default=int(os.environ.get("PGPORT", "5432")))
    p.add_argument("--pg-user", default=os.environ.get("PGUSER", "postgres"))
    p.add_argument("--devices", type=int, default=200, help="cards the reads rotate over")
    p.add_argument("--duration", type=int, default=10, help="measured seconds per target")
    p.add_argument("--warmup", type=int, default=3, help="warm-up seconds per target")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--wrk-threads", type=int, default=2)
    p.add_argument("--web-workers", type=int, help="web processes (serve's default: one per core)")
    p.add_argument("--web-threads", type=int, help="threads per process (serve's default: 2)")
    p.add_argument("--json", type=Path, help="also write the results to this file")
    p.add_argument("--check-goals", action="store_true", help="exit 2 when a goal is not met")
    p.add_argument(
        "--cpu", action="store_true", help="measure in-process CPU per request instead (no server)"
    )
    p.add_argument("--requests", type=int, default=2000, help="requests per --cpu run")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    if argv[:1] == ["seed"]:
        sys.stdout.write(json.dumps(seed(int(argv[1]))) + "\n")
        return 0
    if argv[:1] == ["cpu"]:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "simtopup.settings")
        import django

        django.setup()
        sys.stdout.write(json.dumps(cpu(json.loads(sys.stdin.read()), int(argv[1]))) + "\n")
        return 0
    args = parse(argv)
    if args.database == "test":
        raise BenchError("the benchmark never runs against the test database")
    wrk = ensure_wrk()
    pg = Postgres(args.pg_host, args.pg_port, args.pg_user)
    pg.ensure_database(args.database, fresh=True)
    with tempfile.TemporaryDirectory(prefix="simtopup-reads-") as tmp:
        workdir = Path(tmp)
        env = django_env(pg.url(args.database), workdir)
        log("migrating")
        subprocess.run([str(BIN / "simtopup"), "migrate", "--no-input", "-v0"], env=env, check=True)
        log(f"seeding {args.devices} cards")
        seeded = run_json([sys.executable, __file__, "seed", str(args.devices)], env)
        pg.vacuum(args.database)
        if args.cpu:
            measured = run_json(
                [sys.executable, __file__, "cpu", str(args.requests)], env, json.dumps(seeded)
            )
            print(f"\nCPU ms per request in-process (best of 3 × {args.requests}):")
            for target, ms in measured.items():
                print(f"{target:15}{ms:8.3f}")
            if args.json:
                args.json.write_text(json.dumps({"cpu_ms": measured}, indent=2) + "\n")
            return 0
        server = Server(env, workdir / "server.log", args)
        server.start()
        started = time.monotonic()
        try:
            rounds = measure(
                wrk, server, CpuMeter(server, pg, args.database), seeded, args, workdir
            )
        except Exception:
            print(f"--- server log (tail) ---\n{server.tail()}", file=sys.stderr)
            raise
        finally:
            server.stop()
    results: dict[str, Any] = {
        "connections": args.connections,
        "duration": args.duration,
        "rounds_run": len(rounds),
        "seconds": round(time.monotonic() - started),
        "loadavg": loadavg(),
        "postgres": pg.server_version(),
        "rounds": rounds,
        **judge(rounds),
    }
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.check_goals and not all(results["goals"].values()):
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        sys.exit(130)
