"""Seed and inspect the benchmark database (run by bench/run.py in a subprocess).

Needs ``DJANGO_SETTINGS_MODULE=simtopup.settings`` and ``SIMTOPUP_DATABASE_URL`` pointing at
the benchmark database (never the test database). Sub-commands print one JSON object:

- ``seed --devices N --float AMOUNT [--resellers R]``: plans (``simtopup demo``), N bench
  devices, the ``Bench`` reseller (and ``Bench 2`` … ``Bench R``) with a huge float, and a
  fresh API key for each.
- ``bundled --plan CODE --min-bytes B ICCID…``: which of these devices hold an active bundle
  of that plan with at least B bytes left (the usage benchmark tops up the others first).
- ``customer --devices N``: plans, N bench devices and the bench customer with a fresh app
  token (the customer top-up benchmark, bench/customer.py).
- ``audit``: the ledger audit's violations (a benchmark must leave the books balanced).
"""

# ruff: noqa: E402  (Django must be set up before models are imported)
from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import timedelta
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "simtopup.settings")

import django

django.setup()

from django.core.management import call_command
from django.db import transaction
from django.utils import timezone
from stdnum import luhn

from simtopup.core.money import to_minor
from simtopup.devices.inventory import create_device
from simtopup.devices.models import Device
from simtopup.ledger.actions import balance
from simtopup.resellers.actions import create_api_key, create_reseller, credit_float
from simtopup.resellers.models import Reseller
from simtopup.usage.models import Bundle

RESELLER_NAME = "Bench"
ICCID_PREFIX = "898699"  # demo devices use 898600…; bench devices never collide with them


def bench_iccid(n: int) -> str:
    body = f"{ICCID_PREFIX}{n:012d}"  # 18 digits + Luhn = 19
    return body + luhn.calc_check_digit(body)


def bench_reseller(name: str, target: int) -> tuple[Reseller, str]:
    """The named bench reseller with at least ``target`` float, and a fresh API key."""
    reseller = Reseller.objects.select_related("float_account").filter(name=name).first()
    if reseller is None:
        return create_reseller(name, initial_float=target)
    # The key is shown once at creation; a later run simply issues itself a new one.
    _api_key, key = create_api_key(reseller, "bench")
    current = balance(reseller.float_account)
    if current < target:
        credit_float(reseller, target - current, "bench float top-up")
    return reseller, key


def seed(devices: int, float_amount: str, resellers: int = 1) -> dict[str, Any]:
    call_command("demo", devices=0, verbosity=0, stdout=open(os.devnull, "w"))  # noqa: SIM115
    wanted = [bench_iccid(n) for n in range(1, devices + 1)]
    existing = set(Device.objects.filter(iccid__in=wanted).values_list("iccid", flat=True))
    missing = [iccid for iccid in wanted if iccid not in existing]
    for start in range(0, len(missing), 500):
        with transaction.atomic():
            for iccid in missing[start : start + 500]:
                create_device(kind="esim", iccid=iccid)
    target = to_minor(float_amount, "CNY")
    names = [RESELLER_NAME] + [f"{RESELLER_NAME} {n}" for n in range(2, resellers + 1)]
    pairs = [bench_reseller(name, target) for name in names]
    return {
        "reseller_ids": [r.pk for r, _key in pairs],
        "api_keys": [key for _r, key in pairs],
        "devices": wanted,
        "created_devices": len(missing),
        "float": balance(pairs[0][0].float_account),
    }


def bundled(plan: str, min_bytes: int, iccids: list[str]) -> dict[str, Any]:
    now = timezone.now()
    rows = Bundle.objects.filter(
        device__iccid__in=iccids,
        plan__code=plan,
        starts_at__lte=now,
        expires_at__gt=now + timedelta(hours=1),
        account__balance__gte=min_bytes,
    ).values_list("device__iccid", flat=True)
    return {"bundled": sorted(set(rows))}


def customer(devices: int) -> dict[str, Any]:
    """The bench customer (logged in: a fresh app token) and ``devices`` bench devices."""
    from simtopup.accounts.models import Customer
    from simtopup.accounts.tokens import issue_token

    call_command("demo", devices=0, verbosity=0, stdout=open(os.devnull, "w"))  # noqa: SIM115
    wanted = [bench_iccid(n) for n in range(1, devices + 1)]
    existing = set(Device.objects.filter(iccid__in=wanted).values_list("iccid", flat=True))
    with transaction.atomic():
        for iccid in wanted:
            if iccid not in existing:
                create_device(kind="esim", iccid=iccid)
    person, _created = Customer.objects.get_or_create(phone="+8613800000099")
    token, _row = issue_token(person, "bench")
    return {"token": token, "devices": wanted}


def audit() -> dict[str, Any]:
    from simtopup.ledger.audit import audit as run_audit

    return {"violations": [str(v) for v in run_audit()]}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("seed")
    s.add_argument("--devices", type=int, default=2000)
    s.add_argument("--float", dest="float_amount", default="100000000.00")
    s.add_argument("--resellers", type=int, default=1, help="top-ups spread over N resellers")
    b = sub.add_parser("bundled")
    b.add_argument("--plan", required=True)
    b.add_argument("--min-bytes", type=int, default=1)
    b.add_argument("iccids", nargs="*")
    c = sub.add_parser("customer")
    c.add_argument("--devices", type=int, default=50)
    sub.add_parser("audit")
    args = parser.parse_args(argv)
    if args.command == "seed":
        out = seed(args.devices, args.float_amount, args.resellers)
    elif args.command == "customer":
        out = customer(args.devices)
    elif args.command == "bundled":
        iccids = args.iccids or [line.strip() for line in sys.stdin if line.strip()]
        out = bundled(args.plan, args.min_bytes, iccids)
    else:
        out = audit()
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
