"""Test helpers: named actors with stories (Healthchecks-style), signed clients.

alice_agent — an active reseller with ¥1000 float and an 8 % discount.
bob_agent   — another reseller, to prove isolation.
"""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.test import Client
from stdnum import luhn
from stdnum.iso7064 import mod_97_10

from simtopup.catalog.models import PaygTariff, Plan
from simtopup.core.signing import sign
from simtopup.devices.inventory import create_device
from simtopup.devices.models import Device
from simtopup.resellers.actions import create_reseller
from simtopup.resellers.models import Reseller

GB = 1024**3
MB = 1024**2


# --- no network in tests: loopback only ---------------------------------------------------
_real_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and not (
        host in {"localhost", "::1"}
        or host.startswith("127.")
        or host.startswith("/")
        or self.family == socket.AF_UNIX
    ):
        raise RuntimeError(f"tests may only reach loopback, not {host!r}")
    return _real_connect(self, address)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]


def iccid(n: int) -> str:
    body = f"898601{n:012d}"
    return body + luhn.calc_check_digit(body)


def imei(n: int) -> str:
    body = f"35693803{n:06d}"
    return body + luhn.calc_check_digit(body)


def eid(n: int) -> str:
    body = f"890490320000000000000{n:09d}"
    return body + mod_97_10.calc_check_digits(body)


def make_plans() -> dict[str, Plan]:
    rows = [
        ("day-1g", "daily", 1 * GB, 24, 500),
        ("month-20g", "monthly", 20 * GB, 720, 5900),
        ("credit-50", "payg", 0, 0, 5000),
    ]
    plans = {}
    for i, (code, kind, size, hours, price) in enumerate(rows):
        plans[code] = Plan.objects.create(
            code=code,
            kind=kind,
            name_en=code,
            name_zh_hans=code + " 简",
            name_zh_hant=code + " 繁",
            data_bytes=size,
            validity_hours=hours,
            price=price,
            currency="CNY",
            sort_order=i,
        )
    PaygTariff.objects.create(
        currency="CNY", price_per_mb=10, effective_from=datetime(2026, 1, 1, tzinfo=UTC)
    )
    return plans


class Actors:
    def __init__(self) -> None:
        self.plans = make_plans()
        self.devices = [create_device(kind="esim", iccid=iccid(n), eid=eid(n)) for n in range(1, 6)]
        self.alice, self.alice_key = create_reseller(
            "Alice Mobile", discount_bps=800, initial_float=100000
        )
        self.bob, self.bob_key = create_reseller("Bob Telecom", initial_float=5000)

    @property
    def device(self) -> Device:
        return self.devices[0]


def reseller_client(key: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {key}")


def post_json(client: Client, path: str, body: Any, **headers: str) -> Any:
    return client.post(
        path, data=json.dumps(body), content_type="application/json", headers=headers
    )


def network_post(
    client: Client, path: str, body: Any, *, timestamp: int | None = None, secret: str | None = None
) -> Any:
    raw = json.dumps(body).encode()
    signature = sign(secret or settings.NETWORK_SECRET, "POST", path, raw, timestamp)
    return client.post(
        path, data=raw, content_type="application/json", headers={"X-Simtopup-Signature": signature}
    )


def network_get(client: Client, path: str) -> Any:
    signature = sign(settings.NETWORK_SECRET, "GET", path, b"")
    return client.get(path, headers={"X-Simtopup-Signature": signature})


def float_of(reseller: Reseller) -> int:
    reseller.float_account.refresh_from_db()
    return reseller.float_account.balance


def run_worker() -> None:
    """``simtopup worker --once`` in-process: the janitor, then every ready task, and what
    they scheduled for after their commits. Inside a test's transaction the worker's
    connection recycling must not close the test's connection, so only that is switched off."""
    from unittest import mock

    from django.core.management import call_command
    from django.test import TestCase

    with (
        TestCase.captureOnCommitCallbacks(execute=True),
        mock.patch("django_tasks_db.management.commands.db_worker.close_old_connections"),
        mock.patch("simtopup.ops.management.commands.worker.close_old_connections"),
    ):
        call_command("worker", once=True)
