"""Peak hours (issue 12): customers paying and polling while the resellers and the network
keep the server busy (not part of the test suite).

    .venv/bin/python bench/peak.py [--duration 30] [--load 0.8] [--customer-rate 3]

On a fresh PostgreSQL database (``--database``, default simtopup_peak_bench; never ``test``)
``simtopup serve`` runs the website, the API and the background worker, as in production,
on a free loopback port (stopped on exit, also after a failure or Ctrl-C). Then:

1. capacity: reseller top-ups as fast as ``--connections`` (32) keep-alive connections go,
   wrk with bench/topup.lua, as bench/run.py's top-up phase → C top-ups/s;
2. the peak, ``--duration`` seconds of all of these at once:
   - reseller top-ups offered at ``--load`` × C (0.8 by default), paced by wrk with
     bench/paced.lua around bench/topup.lua (open loop, ``--paced-connections``);
   - usage ingestion: signed batches to ``POST /network/v1/usage`` at ``--usage-rate``
     records/s (bench/run.py's batches, for cards that hold a bundle);
   - customers, ``--customer-rate`` a second, each ordering a day pass for one of their cards
     and paying through the sandbox (bench/customer.py's journey: order → hosted checkout
     page → signed webhook through the worker → polled until credited, every ``--poll``
     seconds: 0.05 rather than customer.py's 0.01, as every look is a request the busy
     server serves, at a resolution still far below the 1 s goal);
   - customers polling their cards' balance (``GET /api/v1/devices/{id}/balance``, paced
     bench/reads.lua) at ``--read-rate`` requests/s;
3. ``simtopup check-ledger --json``: the books must balance after all of it.

It prints the offered and achieved rates, the customers' order → credited p50/p99 (goal
p99 ≤ 1 s on PostgreSQL), the balance read p50/p99 under that load, every error, the CPU the
server and PostgreSQL used, and one ``BENCH_JSON {…}`` line. Results: bench/RESULTS.md.

Exit status: 0 after a valid run (goal met or not; with --check-goals, 2 when it is not),
1 when the run is invalid (a top-up not 201, a read not 200, a usage batch refused or a
record rejected, a customer's order not credited, a ledger violation) or could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import reads  # noqa: E402  (bench/reads.py: the balance polls' request file)
import run  # noqa: E402  (bench/run.py: the server, the database, wrk, usage)
from customer import one_topup, percentile  # noqa: E402  (bench/customer.py: the journey)
from run import BenchError, CpuMeter, Postgres, Server  # noqa: E402

GOAL_S = 1.0  # the customers' order → credited p99


# --- the customer's cards (runs in a subprocess, with Django) ------------------------------


def bind(iccids: list[str]) -> dict[str, Any]:
    """The bench customer of bench/seed.py (a fresh app token) holding these cards."""
    from seed import customer  # sets Django up
    from simtopup.accounts.tokens import authenticate_token
    from simtopup.devices.models import Device

    made = customer(0)
    token = authenticate_token(made["token"])
    if token is None:
        raise BenchError("the bench customer's fresh token does not authenticate")
    cards = Device.objects.filter(iccid__in=iccids)
    cards.update(owner_id=token.customer_id, bound_at=datetime.now(UTC))
    return {"token": made["token"], "device_ids": sorted(cards.values_list("pk", flat=True))}


# --- load ----------------------------------------------------------------------------------


class Tally:
    """Errors by kind (with a few samples), from any thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.samples: list[str] = []

    def add(self, kind: str, sample: str, count: int = 1) -> None:
        with self.lock:
            self.counts[kind] = self.counts.get(kind, 0) + count
            if len(self.samples) < 8:
                self.samples.append(f"{kind}: {sample[:300]}")


def paced(count: int, rate: float, workers: int, fn: Callable[[int, int], None]) -> float:
    """``fn(worker, n)`` for n in range(count) on ``workers`` threads (bench/run.py's
    ``parallel``), the n-th due n / rate seconds after the start (open loop: a late one does
    not move the later ones). Returns the largest lateness in seconds (the driver's own
    queueing; ~0 when it kept up)."""
    start = time.monotonic()
    late = [0.0]

    def on_time(worker: int, n: int) -> None:
        wait = start + n / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        late[0] = max(late[0], -wait)
        fn(worker, n)

    run.parallel(list(range(count)), workers, on_time)
    return late[0]


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy since boot (/proc/stat), 0 elsewhere."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    except OSError:
        return 0.0
    ticks = [int(x) for x in fields]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / run.TICKS


def wrk_paced(
    wrk: str,
    server: Server,
    script: str,
    env: dict[str, str],
    rate: float,
    seconds: int,
    connections: int,
) -> dict[str, Any]:
    """wrk running ``script`` at ``rate`` requests/s offered (bench/paced.lua)."""
    env = {**env, "BENCH_PACED_SCRIPT": str(HERE / script), "BENCH_RATE": f"{rate:.3f}"}
    result = run.wrk_script(wrk, server, "paced.lua", env, seconds, connections)
    result["offered_per_s"] = rate
    result["seconds"] = result["duration_us"] / 1e6
    return result


def wrk_errors(result: dict[str, Any], ok: str, kind: str, errors: Tally) -> None:
    for status, n in result["statuses"].items():
        if status != ok:
            errors.add(f"{kind} {status}", "; ".join(result["error_samples"]), n)
    for what, n in result["socket_errors"].items():
        if n:
            errors.add(f"{kind} socket {what}", result["command"], n)


def reads_env(server: Server, customers: dict[str, Any], workdir: Path) -> dict[str, str]:
    """What bench/reads.lua reads: the customer's balance paths, each with the app token."""
    bearer = f"Bearer {customers['token']}"
    return reads.lua_env(
        [f"/api/v1/devices/{pk}/balance" for pk in customers["device_ids"]],
        ("Authorization", lambda path: bearer),
        server.args.wrk_threads,
        workdir,
    )


def peak(
    server: Server,
    meter: CpuMeter,
    wrk: str,
    capacity: float,
    seeded: dict[str, Any],
    workdir: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Everything at once for ``--duration`` seconds; the customers started in the window
    are waited for. ``seeded["customers"]``: the customer's token, cards and their ids."""
    customers = seeded["customers"]
    run_id = "p" + uuid.uuid4().hex[:10]
    errors = Tally()
    found: dict[str, Any] = {}
    cards = customers["iccids"]

    # Usage: one batch every batch_size / usage_rate seconds, over cards that hold bundles.
    n_batches = max(1, round(args.duration * args.usage_rate / args.usage_batch_size))
    batches = run.make_batches(
        run.usage_devices(seeded, args), n_batches, args.usage_batch_size, 1, run_id
    )[0]
    usage: list[dict[str, Any]] = []
    senders = [run.Http(server.url) for _ in range(args.usage_senders)]

    def send_batch(index: int, n: int) -> None:
        began = time.perf_counter()
        status, body = run.send_usage(senders[index], batches[n])
        elapsed = time.perf_counter() - began
        if status != 200:
            errors.add(f"usage {status}", str(body))
            return
        if body["rejected"] or body["duplicates"]:
            errors.add("usage records not accepted", json.dumps(body)[:300])
        usage.append({"seconds": elapsed, "accepted": body["accepted"], "done": time.monotonic()})

    # Customers: each orders a day pass for one of their cards and pays in the sandbox.
    n_customers = max(1, round(args.duration * args.customer_rate))
    # (seconds into the window it was due, order → credited, payment → credited)
    journeys: list[tuple[float, float, float]] = []

    def customer_order(_index: int, n: int) -> None:
        try:
            card = cards[n % len(cards)]
            whole, paid = one_topup(server.url, customers["token"], card, args.plan, args.poll)
            journeys.append((n / args.customer_rate, whole, paid))
        except Exception as exc:  # a failed or timed-out journey is this run's finding
            errors.add("customer order", f"{type(exc).__name__}: {exc}")

    def run_topups() -> None:
        env = run.topup_env(server, seeded, workdir, run_id)
        rate, connections = args.load * capacity, args.paced_connections
        found["topups"] = wrk_paced(wrk, server, "topup.lua", env, rate, args.duration, connections)

    def run_reads() -> None:
        env = reads_env(server, customers, workdir)
        found["reads"] = wrk_paced(
            wrk, server, "reads.lua", env, args.read_rate, args.duration, args.read_connections
        )

    def run_usage() -> None:
        found["usage_late_s"] = paced(
            n_batches, args.usage_rate / args.usage_batch_size, len(senders), send_batch
        )

    def run_customers() -> None:
        found["customer_late_s"] = paced(
            n_customers, args.customer_rate, args.customer_workers, customer_order
        )

    run.log(
        f"peak: {args.duration} s of top-ups offered at {args.load:.2f} × {capacity:.0f} = "
        f"{args.load * capacity:.0f}/s, usage {args.usage_rate:.0f} records/s, "
        f"{args.customer_rate:g} customer orders/s, balance reads {args.read_rate:g}/s; "
        f"load average {run.loadavg()}"
    )
    parts = [run_topups, run_reads, run_usage, run_customers]
    failures: list[BaseException] = []

    def guarded(part: Callable[[], None]) -> None:
        try:
            part()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=guarded, args=(p,), daemon=True) for p in parts]
    meter.start()
    machine, driver = machine_busy(), time.process_time()
    began = time.monotonic()
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        wall = time.monotonic() - began
        cpu = meter.stop()
        cpu["driver"] = time.process_time() - driver
        cpu["machine"] = machine_busy() - machine
        for client in senders:
            client.close()
    if failures:
        raise failures[0]

    top, reads = found["topups"], found["reads"]
    wrk_errors(top, "201", "top-up", errors)
    wrk_errors(reads, "200", "balance read", errors)
    accepted = sum(u["accepted"] for u in usage)
    usage_window = (max(u["done"] for u in usage) - began) if usage else 0.0
    batch_seconds = sorted(u["seconds"] for u in usage)
    whole = [j[1] for j in journeys]
    after_paying = [j[2] for j in journeys]
    cores = os.cpu_count() or 1

    def ms(values: list[float], q: float) -> float | None:
        return round(percentile(values, q) * 1000, 1) if values else None

    def latency(result: dict[str, Any]) -> dict[str, float]:
        quantiles = ("mean", "p50", "p90", "p99", "max")
        return {
            f"{q}_ms": result["latency_us"][q] / 1000
            for q in quantiles
            if q in result["latency_us"]
        }

    return {
        "capacity_per_s": capacity,
        "duration_s": args.duration,
        "wall_s": wall,
        "topups": {
            "offered_per_s": top["offered_per_s"],
            "achieved_per_s": int(top["statuses"].get("201", 0)) / top["seconds"],
            "created": int(top["statuses"].get("201", 0)),
            "connections": args.paced_connections,
            **latency(top),
            "command": top["command"],
        },
        "usage": {
            "offered_records_per_s": args.usage_rate,
            "achieved_records_per_s": accepted / usage_window if usage_window else 0.0,
            "accepted": accepted,
            "batches": len(usage),
            "batch_size": args.usage_batch_size,
            "batch_p50_ms": ms(batch_seconds, 0.5),
            "batch_p99_ms": ms(batch_seconds, 0.99),
            "sender_late_s": found["usage_late_s"],
        },
        "customers": {
            "offered_per_s": args.customer_rate,
            "poll_s": args.poll,
            "orders": n_customers,
            "credited": len(journeys),
            "order_to_credited_p50_ms": ms(whole, 0.5),
            "order_to_credited_p99_ms": ms(whole, 0.99),
            "order_to_credited_max_ms": ms(whole, 1.0),
            "payment_to_credited_p50_ms": ms(after_paying, 0.5),
            "payment_to_credited_p99_ms": ms(after_paying, 0.99),
            "start_late_s": found["customer_late_s"],
            # when in the window the slowest journeys began: a pattern (every 15 s, say)
            # points at something periodic on the server
            "slowest": [
                {"at_s": round(at, 1), "ms": round(took * 1000)}
                for at, took, _paid in sorted(journeys, key=lambda j: -j[1])[:5]
            ],
        },
        "balance_reads": {
            "offered_per_s": reads["offered_per_s"],
            "achieved_per_s": int(reads["statuses"].get("200", 0)) / reads["seconds"],
            "connections": args.read_connections,
            **latency(reads),
        },
        "errors": errors.counts,
        "error_samples": errors.samples,
        # Cores busy during the window: the server's processes (web and worker), the
        # database's backends, wrk, this driver's Python (the customers' journeys, usage),
        # and the whole machine (with whatever else runs on it).
        "cpu_cores_busy": {k: round(v / wall, 2) for k, v in cpu.items()},
        "cores": cores,
    }


# --- main ----------------------------------------------------------------------------------


def measure_capacity(
    wrk: str, server: Server, pg: Postgres, seeded: dict[str, Any], workdir: Path, args: Any
) -> tuple[float, dict[str, Any]]:
    """Top-ups/s at ``--connections`` unpaced connections (bench/run.py's top-up phase)."""
    run_id = "c" + uuid.uuid4().hex[:10]
    if args.warmup:
        run.log(f"top-up warm-up: {args.warmup} s")
        run.run_wrk(wrk, server, seeded, workdir, args.warmup, run_id + "w")
    pg.vacuum(args.database)
    run.log(f"capacity: top-ups at {args.connections} connections for {args.capacity_duration} s")
    result = run.run_wrk(wrk, server, seeded, workdir, args.capacity_duration, run_id)
    created = int(result["statuses"].get("201", 0))
    if set(result["statuses"]) != {"201"} or any(result["socket_errors"].values()):
        raise BenchError(f"capacity run: not every top-up was 201: {json.dumps(result)}")
    capacity = created / (result["duration_us"] / 1e6)
    found = {"per_s": capacity, "p50_ms": result["latency_us"]["p50"] / 1000}
    found["p99_ms"] = result["latency_us"]["p99"] / 1000
    run.log(f"capacity: {capacity:.0f} top-ups/s, p99 {found['p99_ms']:.0f} ms")
    return capacity, found


def check_ledger(env: dict[str, str]) -> dict[str, Any]:
    """``simtopup check-ledger --json`` (exit 1 with violations: its JSON says which)."""
    done = subprocess.run(
        [str(run.BIN / "simtopup"), "check-ledger", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    try:
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError) as exc:
        raise BenchError(f"check-ledger failed ({done.returncode}):\n{done.stderr}") from exc


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--database", default="simtopup_peak_bench", help="PostgreSQL database")
    p.add_argument("--pg-host", default=os.environ.get("PGHOST", "127.0.0.1"))
    p.add_argument("--pg-port", type=int, default=int(os.environ.get("PGPORT", "5432")))
    p.add_argument("--pg-user", default=os.environ.get("PGUSER", "postgres"))
    p.add_argument("--duration", type=int, default=30, help="seconds of peak (default 30)")
    p.add_argument("--web-workers", type=int, help="web processes (serve's default: one per core)")
    p.add_argument("--web-threads", type=int, help="threads per process (serve's default: 2)")
    p.add_argument("--wrk-threads", type=int, default=2)
    g = p.add_argument_group("reseller top-ups")
    g.add_argument("--load", type=float, default=0.8, help="share of the capacity offered")
    g.add_argument(
        "--paced-connections",
        type=int,
        default=64,
        help="connections the paced top-ups may use (more than the capacity run's, so that "
        "a slow moment queues requests instead of lowering the offered rate)",
    )
    g.add_argument("--connections", type=int, default=32, help="for the capacity run")
    g.add_argument("--capacity-duration", type=int, default=10, help="seconds")
    g.add_argument("--warmup", type=int, default=3, help="top-up warm-up seconds")
    g.add_argument("--devices", type=int, default=1000, help="cards the top-ups rotate over")
    g.add_argument("--resellers", type=int, default=10)
    g.add_argument("--plan", default="day-1g")
    g = p.add_argument_group("usage")
    g.add_argument("--usage-rate", type=float, default=2000, help="records/s offered")
    g.add_argument("--usage-batch-size", type=int, default=500)
    g.add_argument("--usage-senders", type=int, default=2, help="concurrent batches at most")
    g.add_argument("--usage-devices", type=int, default=300)
    g = p.add_argument_group("customers")
    g.add_argument("--customer-rate", type=float, default=3, help="orders/s (default 3)")
    g.add_argument("--customer-workers", type=int, default=64, help="journeys at once at most")
    g.add_argument("--customer-cards", type=int, default=200, help="cards the customer holds")
    g.add_argument("--poll", type=float, default=0.05, help="seconds between looks at an order")
    g.add_argument("--read-rate", type=float, default=100, help="balance reads/s offered")
    g.add_argument("--read-connections", type=int, default=32)
    p.add_argument("--json", type=Path, help="also write the results to this file")
    p.add_argument("--server-log", type=Path, help="keep the server's log (and access log) here")
    p.add_argument("--check-goals", action="store_true", help="exit 2 when the goal is not met")
    args = p.parse_args(argv)
    if args.database in {"test", "postgres", "template0", "template1"}:
        p.error(f"refusing to benchmark in the {args.database!r} database")
    if not 0 < args.load <= 1.5:
        p.error("--load is a share of the capacity: more than 0, at most 1.5")
    if args.usage_batch_size > 1000:
        p.error("the API takes at most 1,000 records per batch")
    return args


def summarize(r: dict[str, Any]) -> None:
    top, use, cus, rd = r["topups"], r["usage"], r["customers"], r["balance_reads"]
    print()
    print("=" * 76)
    print(f"simtopup peak hours — {r['date']}  ({r['machine']})")
    print(f"capacity:          {r['capacity']['per_s']:.0f} top-ups/s at {r['connections']} conn")
    print(
        f"top-ups:           offered {top['offered_per_s']:.0f}/s ({r['load']:.2f} × capacity), "
        f"achieved {top['achieved_per_s']:.0f}/s; p50 {top['p50_ms']:.0f} ms, "
        f"p99 {top['p99_ms']:.0f} ms"
    )
    print(
        f"usage:             offered {use['offered_records_per_s']:.0f} records/s, achieved "
        f"{use['achieved_records_per_s']:.0f}/s ({use['accepted']} in {use['batches']} "
        f"batches, batch p50 {use['batch_p50_ms']} ms / p99 {use['batch_p99_ms']} ms)"
    )
    print(
        f"customers:         {cus['credited']}/{cus['orders']} orders credited "
        f"({cus['offered_per_s']:g}/s offered; each polls its order every {cus['poll_s']:g} s)"
    )
    print(
        f"  order → credited:   p50 {cus['order_to_credited_p50_ms']} ms, "
        f"p99 {cus['order_to_credited_p99_ms']} ms, max {cus['order_to_credited_max_ms']} ms "
        f"(goal p99 ≤ {GOAL_S * 1000:.0f} ms: {'met' if r['goal_met'] else 'NOT met'})"
    )
    print(
        f"  payment → credited: p50 {cus['payment_to_credited_p50_ms']} ms, "
        f"p99 {cus['payment_to_credited_p99_ms']} ms"
    )
    slow = ", ".join(f"{x['ms']} ms at {x['at_s']} s" for x in cus["slowest"])
    print(f"  slowest journeys:   {slow} (seconds into the window)")
    print(
        f"balance reads:     offered {rd['offered_per_s']:.0f}/s, achieved "
        f"{rd['achieved_per_s']:.0f}/s; p50 {rd['p50_ms']:.1f} ms, p99 {rd['p99_ms']:.1f} ms"
    )
    busy = r["cpu_cores_busy"]
    print(
        f"CPU (cores busy):  server {busy['app']:.2f}, PostgreSQL {busy['db']:.2f}, wrk "
        f"{busy['client']:.2f}, driver {busy['driver']:.2f}; whole machine {busy['machine']:.2f} "
        f"of {r['cores']}"
    )
    print(f"load average:      {r['loadavg_before']} → {r['loadavg_after']}")
    ceiling = top["connections"] * 1000 / top["mean_ms"]  # Little's law
    if top["achieved_per_s"] < 0.95 * top["offered_per_s"]:
        why = (
            f"all {top['connections']} paced connections busy"
            if ceiling < 1.1 * top["achieved_per_s"]
            else "the schedule fell behind at times"
        )
        print(
            f"NOTE:              top-ups fell short of the offered rate, the server did not keep "
            f"up: {why} (mean latency {top['mean_ms']:.0f} ms, {top['connections']} connections "
            f"→ at most {ceiling:.0f}/s)"
        )
    print(f"errors:            {r['errors'] or 'none'}")
    for sample in r["error_samples"]:
        print(f"  {sample}")
    audit = r["ledger"]
    print(f"ledger audit:      {'clean' if audit.get('ok') else audit.get('violations')}")
    if r["late_s"] > 0.5:
        print(f"NOTE:              the driver started work up to {r['late_s']:.1f} s late")
    for problem in r["problems"]:
        print(f"INVALID RUN:       {problem}")
    print("=" * 76)


def main(argv: list[str]) -> int:
    if argv[:1] == ["bind"]:
        sys.stdout.write(json.dumps(bind([x.strip() for x in sys.stdin if x.strip()])) + "\n")
        return 0
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, run.on_sigterm)
    if not (run.BIN / "simtopup").exists():
        raise BenchError(f"run this with the project's venv: .venv/bin/python (not {run.BIN})")
    wrk = run.ensure_wrk()
    pg = Postgres(args.pg_host, args.pg_port, args.pg_user)
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python "
        f"{platform.python_version()}, PostgreSQL {pg.server_version()}",
        "command": " ".join([".venv/bin/python bench/peak.py", *argv]),
        "python_speed_us": run.python_speed(),
        "load": args.load,
        "connections": args.connections,
    }
    pg.ensure_database(args.database, fresh=True)
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="simtopup-peak-")))
        env = run.django_env(pg.url(args.database), workdir / "data")
        server = Server(env, workdir / "server.log", args)
        env["SIMTOPUP_SITE_URL"] = server.url  # the sandbox's checkout pages and webhooks
        env["SIMTOPUP_PAYMENT_PROVIDER"] = "sandbox"
        inventory = args.devices + args.usage_devices + args.customer_cards
        run.log(f"migrating and seeding {args.database} ({inventory} cards)")
        subprocess.run(
            [str(run.BIN / "simtopup"), "migrate", "--no-input", "-v0"], env=env, check=True
        )
        seeded = run.run_json(
            [*run.SEED, "seed", "--devices", str(inventory), "--resellers", str(args.resellers)],
            env,
        )
        cards = seeded["devices"][args.devices + args.usage_devices :]
        customers = run.run_json([sys.executable, __file__, "bind"], env, stdin="\n".join(cards))
        customers["iccids"] = cards
        stack.callback(server.stop)
        meter = CpuMeter(server, pg, args.database)
        try:
            server.start(worker=True)
            # Room on every usage card for the whole window, twice over (records ~1 MB).
            per_card = args.duration * args.usage_rate // args.usage_devices + 1
            run.ensure_bundles(
                server, env, seeded, run.usage_devices(seeded, args), per_card * 4_000_000
            )
            capacity, results["capacity"] = measure_capacity(wrk, server, pg, seeded, workdir, args)
            run.log("two customer orders to warm up")
            for n in range(2):
                one_topup(server.url, customers["token"], cards[-1 - n], args.plan)
            pg.vacuum(args.database)
            results["loadavg_before"] = run.loadavg()
            seeded["customers"] = customers
            results.update(peak(server, meter, wrk, capacity, seeded, workdir, args))
            results["loadavg_after"] = run.loadavg()
        except Exception:
            print(f"--- server log (tail) ---\n{server.tail()}", file=sys.stderr)
            raise
        finally:
            server.stop()
            if args.server_log:
                shutil.copyfile(server.logfile, args.server_log)
        run.log("simtopup check-ledger --json")
        results["ledger"] = check_ledger(env)
    results["late_s"] = max(results["usage"]["sender_late_s"], results["customers"]["start_late_s"])
    p99 = results["customers"]["order_to_credited_p99_ms"]
    results["goal_met"] = p99 is not None and p99 <= GOAL_S * 1000
    problems = [f"errors: {results['errors']}"] if results["errors"] else []
    if not results["ledger"].get("ok"):
        problems.append(f"ledger audit: {results['ledger'].get('violations')}")
    results["problems"] = problems
    summarize(results)
    print("BENCH_JSON " + json.dumps(results, separators=(",", ":")))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if problems:
        return 1
    if args.check_goals and not results["goal_met"]:
        return 2
    return 0


if __name__ == "__main__":
    run.entry(main)
