"""Profile the hot paths in-process (Django test client, no HTTP server, one thread).

Run by ``bench/run.py profile`` (or directly, with ``SIMTOPUP_DATABASE_URL`` pointing at the
benchmark database). ``topup`` profiles POST /reseller/v1/topups, ``usage`` profiles
POST /network/v1/usage with batches of 1,000 records. For each it prints:

- the SQL statements of one request (django.test.utils.CaptureQueriesContext), by kind;
- wall time per request and how it splits into database round trips and Python;
- for top-ups, the critical section: time from the reseller-float UPDATE (which row-locks
  the float until COMMIT) to the end of the request. Every other top-up of the same reseller
  waits that long, so 1000 / it (ms) bounds one reseller's top-ups per second;
- cProfile's top functions by own time and by cumulative time.
"""

# ruff: noqa: E402  (Django must be set up before models are imported)
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "simtopup.settings")

import django

django.setup()

from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from seed import bundled, seed
from simtopup.core.signing import HEADER, sign

BALANCE_UPDATE = 'UPDATE "ledger_account" SET "balance"'
USAGE_PLAN = "month-20g"


def is_debit(sql: str, params: Any) -> bool:
    """A balance decrement: the first one in a top-up is the reseller float's."""
    return sql.startswith(BALANCE_UPDATE) and bool(params) and params[0] < 0


class Recorder:
    """connection.execute_wrapper: start/end of every statement (perf_counter)."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, float, bool]] = []

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.calls.append((start, time.perf_counter(), is_debit(sql, params)))


def shape(sql: str) -> str:
    """A statement's kind and main table, e.g. ``UPDATE ledger_account``."""
    sql = sql.strip()
    verb = sql.split(None, 1)[0].upper()
    match = re.search(r'(?:FROM|INTO|UPDATE)\s+"([a-z_]+)"', sql)
    return f"{verb} {match.group(1) if match else ''}".strip()


def stats(values: list[float]) -> str:
    values = sorted(values)
    mean = sum(values) / len(values) * 1000
    return (
        f"mean {mean:.2f} ms, p50 {values[len(values) // 2] * 1000:.2f} ms, "
        f"p99 {values[int(len(values) * 0.99)] * 1000:.2f} ms"
    )


def show_statements(request: Callable[[], None], list_them: bool) -> int:
    with CaptureQueriesContext(connection) as captured:
        request()
    statements = [q["sql"] for q in captured.captured_queries]
    print(f"== SQL statements in one request: {len(statements)}")
    if list_them:
        for sql in statements:
            print("   ", (sql[:150] + "…") if len(sql) > 150 else sql)
    kinds = Counter(shape(s) for s in statements)
    print("== by kind:", ", ".join(f"{k} ×{n}" for k, n in kinds.most_common()))
    return len(statements)


def timed(
    request: Callable[[], None], n: int, label: str, *, float_lock: bool
) -> dict[str, float | None]:
    """Wall time, DB time and the float's critical section, no profiler attached."""
    recorder = Recorder()
    walls: list[float] = []
    db: list[float] = []
    critical: list[float] = []
    with connection.execute_wrapper(recorder):
        for _ in range(n):
            recorder.calls.clear()
            start = time.perf_counter()
            request()
            end = time.perf_counter()
            walls.append(end - start)
            db.append(sum(e - s for s, e, _debit in recorder.calls))
            locked = [s for s, _e, debit in recorder.calls if debit]
            if float_lock and locked:
                critical.append(end - locked[0])
    wall = sum(walls) / len(walls)
    in_db = sum(db) / len(db)
    print(f"== {n} {label}, one thread, in-process (test client, no HTTP)")
    print(f"   wall per request:      {stats(walls)}  → {1 / wall:.1f} requests/s")
    print(
        f"   in DB round trips:     {in_db * 1000:.2f} ms ({in_db / wall:.0%}); "
        f"Python: {(wall - in_db) * 1000:.2f} ms"
    )
    held = sum(critical) / len(critical) if critical else None
    if held is not None:
        print(
            f"   float row locked for:  {stats(critical)} (float UPDATE → response)"
            f"  → at most {1 / held:.0f} top-ups/s per reseller"
        )
    return {
        "wall_ms": round(wall * 1000, 2),
        "db_ms": round(in_db * 1000, 2),
        "critical_ms": round(held * 1000, 2) if held is not None else None,
    }


def profiled(request: Callable[[], None], n: int, top: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        request()
    profiler.disable()
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order).print_stats(top)
        text = out.getvalue()
        body = text[text.index("   ncalls") :] if "   ncalls" in text else text
        print(f"== cProfile over {n} requests, top {top} by {order}")
        print(body.rstrip())


def topup_request(client: Client, devices: list[str], plan: str) -> Callable[[], None]:
    run = uuid.uuid4().hex[:8]
    counter = 0

    def request() -> None:
        nonlocal counter
        counter += 1
        ref = f"prof-{run}-{counter}"
        response = client.post(
            "/reseller/v1/topups",
            {"device": devices[counter % len(devices)], "plan": plan, "reference": ref},
            content_type="application/json",
            headers={"Idempotency-Key": ref},
        )
        if response.status_code != 201:
            raise SystemExit(f"top-up failed: {response.status_code} {response.content[:300]!r}")

    return request


def usage_request(devices: list[str], size: int) -> Callable[[], None]:
    client = Client()
    run = uuid.uuid4().hex[:8]
    rng = random.Random(run)
    counter = 0

    def request() -> None:
        nonlocal counter
        counter += 1
        start = datetime.now(UTC)
        records = [
            {
                "id": f"prof-{run}-{counter}-{i}",
                "iccid": devices[(counter * size + i) % len(devices)],
                "bytes": rng.randrange(1_000, 2_000_000),
                "started_at": start.isoformat(),
                "ended_at": (start + timedelta(seconds=30)).isoformat(),
            }
            for i in range(size)
        ]
        body = json.dumps({"records": records}).encode()
        response = client.post(
            "/network/v1/usage",
            body,
            content_type="application/json",
            headers={HEADER: sign(settings.NETWORK_SECRET, "POST", "/network/v1/usage", body)},
        )
        result = response.json() if response.status_code == 200 else None
        if result is None or result["accepted"] != size:
            raise SystemExit(
                f"usage batch failed: {response.status_code} {response.content[:300]!r}"
            )

    return request


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["topup", "usage"], nargs="?", default="topup")
    parser.add_argument("--requests", type=int, default=300, help="top-ups (or batches / 30)")
    parser.add_argument("--plan", default="day-1g")
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--usage-devices", type=int, default=1000)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    if connection.vendor != "postgresql" or connection.settings_dict["NAME"] == "test":
        raise SystemExit("point SIMTOPUP_DATABASE_URL at the benchmark PostgreSQL database")

    seeded = seed(args.devices, "100000000.00")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {seeded['api_keys'][0]}")
    if args.what == "topup":
        request = topup_request(client, seeded["devices"], args.plan)
        n, label = args.requests, "top-ups"
    else:
        devices = seeded["devices"][: args.usage_devices]
        have = set(bundled(USAGE_PLAN, 10 * 1024**3, devices)["bundled"])
        buy = topup_request(client, [d for d in devices if d not in have], USAGE_PLAN)
        for _ in range(len(devices) - len(have)):
            buy()
        request = usage_request(devices, 1000)
        n, label = max(3, args.requests // 30), "usage batches of 1,000 records"
    for _ in range(3 if args.what == "usage" else 30):  # warm-up: imports, caches, connection
        request()
    summary: dict[str, Any] = {
        "what": args.what,
        "statements": show_statements(request, list_them=args.what == "topup"),
    }
    summary.update(timed(request, n, label, float_lock=args.what == "topup"))
    profiled(request, n, args.top)
    print("PROFILE_JSON " + json.dumps(summary))


if __name__ == "__main__":
    main(sys.argv[1:])
