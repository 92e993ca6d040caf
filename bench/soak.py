"""Soak: the chaos test's workload for as long as asked, with faults on a schedule (not part of
the test suite; the workload, the faults and the checks are tests/chaos.py's).

    .venv/bin/python bench/soak.py [--minutes 10] [--fault-interval 60] [--database cluster]

Load from client threads over real HTTP against ``simtopup serve`` (2 web workers and the
background worker): reseller top-ups on shared cards over several resellers, each sent again
with its Idempotency-Key after a 503 or a lost connection; customer orders paid through the
sandbox gateway; signed usage batches; ``check-ledger`` and float credits during the load.
Every ``--fault-interval`` seconds the next fault of ``--faults`` (in turn): ``web_worker``
(SIGKILL to a granian worker process), ``worker`` (SIGKILL to the background worker),
``pg_restart`` (fast shutdown, 3 s down), ``pg_crash`` (SIGKILL to the postmaster).

``--database cluster`` (the default) runs on a private PostgreSQL cluster made for the run
(tests/pgcluster.py: initdb into a temporary directory, a free port, durability off), the
only kind the ``pg_*`` faults may restart. ``--database shared`` runs on a fresh database
``--db-name`` on the machine's server (``--pg-host``/``--pg-port``, as bench/run.py does),
which is never restarted: only the process faults then.

Every minute it prints throughput (top-ups/s, paid orders/s, usage records/s), p99 latency
of each kind of request, errors by kind and the faults of that minute; at the end the
reconciliation (every sale, payment and usage record accounted for, floats, check-ledger
during and after the load, serve alive throughout and exiting 0 on SIGTERM).
Exit status: 0 when the reconciliation is clean, 1 when it is not or the run failed.
Results: bench/RESULTS.md, "Soak (issue 10)".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.chaos import (  # noqa: E402  (the repository root on the path first)
    FAULT_KINDS,
    Chaos,
    ClusterDatabase,
    Database,
    Shape,
    SharedDatabase,
    fault_schedule,
)


def log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", flush=True)


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--minutes", type=float, default=10, help="minutes of load (default 10)")
    p.add_argument(
        "--fault-interval", type=float, default=60, help="seconds between faults (default 60)"
    )
    p.add_argument(
        "--faults",
        default=",".join(FAULT_KINDS),
        help=f"faults to take turns, comma-separated (default {','.join(FAULT_KINDS)}; "
        "the pg_* ones only with --database cluster; empty: none)",
    )
    p.add_argument("--database", choices=["cluster", "shared"], default="cluster")
    p.add_argument("--pg-host", default=os.environ.get("PGHOST", "127.0.0.1"))
    p.add_argument("--pg-port", type=int, default=int(os.environ.get("PGPORT", "5432")))
    p.add_argument("--pg-user", default=os.environ.get("PGUSER", "postgres"))
    p.add_argument("--db-name", default="simtopup_soak", help="with --database shared")
    shape = Shape()
    g = p.add_argument_group("workload")
    g.add_argument("--topup-clients", type=int, default=shape.topup_clients)
    g.add_argument("--order-clients", type=int, default=shape.order_clients)
    g.add_argument("--usage-clients", type=int, default=shape.usage_clients)
    g.add_argument("--usage-batch", type=int, default=shape.usage_batch)
    g.add_argument("--cards", type=int, default=shape.cards, help="shared cards")
    g.add_argument("--resellers", type=int, default=shape.resellers)
    g.add_argument("--web-workers", type=int, default=shape.web_workers)
    p.add_argument("--json", type=Path, help="also write the results to this file")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = p.parse_args(argv)
    args.fault_kinds = tuple(k for k in args.faults.split(",") if k)
    for kind in args.fault_kinds:
        if kind not in FAULT_KINDS:
            p.error(f"unknown fault {kind!r} (one of {', '.join(FAULT_KINDS)})")
        if kind.startswith("pg_") and args.database != "cluster":
            p.error(f"{kind} restarts PostgreSQL: only with --database cluster")
    if args.db_name in {"test", "postgres", "template0", "template1"}:
        p.error(f"refusing to soak in the {args.db_name!r} database")
    if args.minutes <= 0 or args.fault_interval <= 0:
        p.error("--minutes and --fault-interval must be positive")
    return args


def fresh_database(args: argparse.Namespace) -> str:
    import psycopg
    from psycopg import sql

    admin = f"postgresql://{args.pg_user}@{args.pg_host}:{args.pg_port}/postgres"
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        name = sql.Identifier(args.db_name)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
    return f"postgresql://{args.pg_user}@{args.pg_host}:{args.pg_port}/{args.db_name}"


def minute_line(chaos: Chaos, since: float, until: float) -> str:
    s = chaos.journal.summary(since, until)
    rates, p99 = s["rates"], s["p99"]
    faults = [
        f"{w.kind}@{w.start - chaos.load_started:.0f}s"
        for w in chaos.journal.windows
        if since <= w.start < until
    ]
    errors = ", ".join(f"{k} ×{n}" for k, n in sorted(s["errors"].items())) or "none"
    latency = ", ".join(f"{k} {v * 1000:.0f}" for k, v in sorted(p99.items()))
    return (
        f"t={since - chaos.load_started:4.0f}–{until - chaos.load_started:.0f}s  "
        f"top-ups {rates['topup']:.1f}/s, paid orders {rates['order']:.2f}/s, "
        f"usage {rates['usage']:.0f} records/s | p99 ms: {latency} | "
        f"faults: {', '.join(faults) or 'none'} | errors: {errors}"
    )


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if not Path(sys.executable).with_name("simtopup").exists():
        log(f"run this with the project's venv: .venv/bin/python (not {sys.executable})")
        return 1
    shape = Shape(
        topup_clients=args.topup_clients,
        order_clients=args.order_clients,
        usage_clients=args.usage_clients,
        usage_batch=args.usage_batch,
        cards=args.cards,
        resellers=args.resellers,
        web_workers=args.web_workers,
    )
    seconds = args.minutes * 60
    faults = fault_schedule(seconds, args.fault_interval, args.fault_kinds) if args.faults else []
    workdir = Path(tempfile.mkdtemp(prefix="simtopup-soak-"))
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join([".venv/bin/python bench/soak.py", *argv]),
        "machine": f"{os.cpu_count()} cores, load average {loadavg()} before",
        "minutes": [],
    }
    with contextlib.ExitStack() as stack:
        database: Database
        if args.database == "cluster":
            from tests.pgcluster import PgCluster

            # Autovacuum on (the throw-away default is off): a long soak must not measure
            # its own table bloat.
            cluster = stack.enter_context(PgCluster(settings={"autovacuum": "on"}))
            database = ClusterDatabase(cluster)
            log(f"private PostgreSQL cluster on port {cluster.port} ({cluster.base})")
        else:
            database = SharedDatabase(fresh_database(args))
            log(f"fresh database {args.db_name} on {args.pg_host}:{args.pg_port}")
        chaos = stack.enter_context(Chaos(workdir, database, shape, log))
        try:
            chaos.setup()
            log(
                f"{args.minutes:g} min of load: {shape.topup_clients} top-up, "
                f"{shape.order_clients} order, {shape.usage_clients} usage client(s); "
                f"faults: {', '.join(f'{f.kind}@{f.at:.0f}s' for f in faults) or 'none'}"
            )

            def tick(since: float, until: float) -> None:
                line = minute_line(chaos, since, until)
                results["minutes"].append(line)
                print(line, flush=True)

            chaos.run(seconds, faults, every=60, on_tick=tick)
            log("load over: clients finishing, paid orders settling, final check-ledger")
            chaos.finish()
        except Exception:
            print(f"--- serve (tail) ---\n{chaos.serve.tail()}", file=sys.stderr)
            raise
        whole = chaos.journal.summary(chaos.load_started, chaos.load_ended)
        counts = chaos.counts()
        results.update(
            {
                "rates": whole["rates"],
                "p99_ms": {k: v * 1000 for k, v in whole["p99"].items()},
                "counts": counts,
                "problems": chaos.problems,
                "serve_exit": chaos.serve_exit,
            }
        )
        summarize(results, chaos)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
        if args.keep:
            log(f"work directory kept: {workdir}")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if results["problems"] else 0


def summarize(results: dict[str, Any], chaos: Chaos) -> None:
    counts = results["counts"]
    rates = results["rates"]
    print()
    print("=" * 72)
    print(f"soak — {results['date']} ({results['machine']})")
    print(f"command:           {results['command']}")
    print(
        f"throughput:        top-ups {rates['topup']:.1f}/s, paid orders {rates['order']:.2f}/s, "
        f"usage {rates['usage']:.0f} records/s (over the whole load)"
    )
    print(
        "p99 latency:       "
        + ", ".join(f"{k} {v:.0f} ms" for k, v in sorted(results["p99_ms"].items()))
    )
    print(f"top-ups:           {dict(counts['topups'])}, {counts['replays']} replays")
    print(
        f"customer orders:   {counts['orders']} created, {counts['orders_paid']} paid at the "
        f"gateway (each must end fulfilled)"
    )
    print(
        f"usage:             {counts['usage_records']} records accepted in batches "
        f"{dict(counts['usage_batches'])}"
    )
    print(f"float credits:     {dict(counts['credits'])} (True: done, None: unknown)")
    final = chaos.final_ledger.outcome if chaos.final_ledger else "not run"
    print(f"check-ledger:      {counts['ledger_runs']} during the load; final: {final}")
    print(f"faults:            {'; '.join(counts['windows']) or 'none'}")
    print(f"errors:            {dict(counts['errors']) or 'none'}")
    print(f"serve:             exit {results['serve_exit']} on SIGTERM")
    print(f"load average:      {loadavg()} after (a shared box: other work runs too)")
    problems = results["problems"]
    if not problems:
        print(
            "reconciliation:    CLEAN — every 201 once and fulfilled, floats = credited − "
            "charged, paid orders fulfilled, usage once, no 5xx outside fault windows"
        )
    for name, lines in problems.items():
        print(f"PROBLEM [{name}]: {len(lines)}")
        for line in lines[:20]:
            print(f"    {line}")
    print("=" * 72)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        print("soak: interrupted", file=sys.stderr)
        sys.exit(130)
