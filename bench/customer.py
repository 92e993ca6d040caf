"""End-to-end customer top-up latency on the embedded default (SQLite, ``simtopup serve``
with its worker), through the sandbox payment gateway (not part of the test suite).

    .venv/bin/python bench/customer.py [--topups 200] [--keep]

For each top-up, as the official app and the payer's browser would do it:

1. ``POST /api/v1/orders`` (card, sandbox provider) → the order and its ``checkout_url``;
2. ``GET`` the hosted checkout page, ``POST`` it with ``outcome=succeed`` (CSRF and all);
3. the sandbox settles and delivers its signed webhook through the worker, asynchronously,
   to ``POST /payments/webhooks/sandbox``; the order is paid and fulfilled;
4. ``GET /api/v1/orders/{id}`` every 10 ms until it says ``fulfilled``.

It prints the median and p99 of two latencies: from the order to credited (the whole
journey with an instant payer), and from the payment submitted to credited (what the
gateway and our webhook path add). Goal: p99 ≤ 1 s. Results: bench/RESULTS.md.
Exit status: 0 after a valid run, 1 when a top-up failed, timed out or the ledger audit
found a violation.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import (
    SEED,
    BenchError,
    Server,
    django_env,
    log,
    python_speed,
    run_json,
)

CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class Browser:
    """The payer's browser: cookies (CSRF) and form posts."""

    def __init__(self) -> None:
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, url: str) -> str:
        with self.opener.open(url, timeout=30) as response:
            return str(response.read().decode())

    def post_form(self, url: str, fields: dict[str, str]) -> int:
        data = urllib.parse.urlencode(fields).encode()
        request = urllib.request.Request(url, data=data, headers={"Referer": url})
        try:
            with self.opener.open(request, timeout=30) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code


def api(base: str, token: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if method == "POST":
        headers["Idempotency-Key"] = uuid.uuid4().hex
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def one_topup(
    base: str, token: str, device: str, plan: str, poll: float = 0.01
) -> tuple[float, float]:
    """One customer's journey (steps 1–4 above, the order polled every ``poll`` seconds):
    seconds from the order to credited, and from the payment submitted to credited."""
    began = time.perf_counter()
    status, order = api(
        base,
        token,
        "POST",
        "/api/v1/orders",
        {"device": device, "plan": plan, "payment_method": "card"},
    )
    if status != 201:
        raise BenchError(f"POST /api/v1/orders → {status}: {order}")
    checkout = order["payment"]["checkout_url"]
    if not checkout:
        raise BenchError(f"no checkout_url in {order}")
    browser = Browser()
    page = browser.get(checkout)
    match = CSRF.search(page)
    if not match:
        raise BenchError("no CSRF token on the checkout page")
    paid = time.perf_counter()
    submitted = browser.post_form(
        checkout, {"csrfmiddlewaretoken": match.group(1), "outcome": "succeed"}
    )
    if submitted >= 400:
        raise BenchError(f"the checkout form answered {submitted}")
    deadline = time.perf_counter() + 30
    while time.perf_counter() < deadline:
        status, current = api(base, token, "GET", f"/api/v1/orders/{order['id']}")
        if status == 200 and current["status"] == "fulfilled":
            done = time.perf_counter()
            return done - began, done - paid
        if status == 200 and current["status"] in {"failed", "refunded", "cancelled"}:
            raise BenchError(f"order {order['id']} ended {current['status']}")
        time.sleep(poll)
    raise BenchError(f"order {order['id']} not fulfilled within 30 s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--topups", type=int, default=200)
    parser.add_argument("--plan", default="day-1g")
    parser.add_argument("--warmup", type=int, default=5, help="top-ups not measured")
    parser.add_argument("--keep", action="store_true", help="keep the data folder")
    args = parser.parse_args(argv)
    args.web_workers = args.web_threads = None
    data_dir = Path(tempfile.mkdtemp(prefix="simtopup-bench-customer-"))
    database = f"sqlite:///{data_dir / 'simtopup.sqlite3'}"
    env = django_env(database, data_dir)
    server = Server(env, data_dir / "server.log", args)
    env["SIMTOPUP_SITE_URL"] = server.url
    env["SIMTOPUP_PAYMENT_PROVIDER"] = "sandbox"
    log(f"Python speed: {python_speed():.1f} µs per sum(range(1000)); data in {data_dir}")
    migrate = [str(Path(sys.executable).parent / "simtopup"), "migrate", "-v0"]
    if subprocess.run(migrate, env=env, capture_output=True).returncode:
        log("migrate failed")
        return 1
    seeded = run_json([*SEED, "customer", "--devices", str(args.topups + args.warmup)], env)
    total: list[float] = []
    after_payment: list[float] = []
    try:
        server.start(worker=True)
        devices = seeded["devices"]
        log(f"{args.warmup} warm-up top-ups, then {args.topups} measured, one at a time")
        for i in range(args.warmup + args.topups):
            whole, paid = one_topup(server.url, seeded["token"], devices[i], args.plan)
            if i >= args.warmup:
                total.append(whole)
                after_payment.append(paid)
        violations = run_json([*SEED, "audit"], env)["violations"]
    except BenchError as exc:
        log(f"INVALID RUN: {exc}\n{server.tail()}")
        return 1
    finally:
        server.stop()
    if violations:
        log(f"INVALID RUN: ledger audit: {violations}")
        return 1

    def ms(values: list[float], q: float) -> str:
        return f"{percentile(values, q) * 1000:.0f} ms"

    print(f"customer top-ups (order → sandbox payment → webhook → credited), n={len(total)}")
    print(
        f"  order → credited:    median {statistics.median(total) * 1000:.0f} ms, "
        f"p99 {ms(total, 0.99)}, max {max(total) * 1000:.0f} ms"
    )
    print(
        f"  payment → credited:  median {statistics.median(after_payment) * 1000:.0f} ms, "
        f"p99 {ms(after_payment, 0.99)}, max {max(after_payment) * 1000:.0f} ms"
    )
    goal = percentile(total, 0.99) <= 1.0
    print(f"  goal p99 ≤ 1 s: {'met' if goal else 'NOT met'}; ledger audit clean")
    if not args.keep:
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
