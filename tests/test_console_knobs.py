"""Small console knobs (issue 14, point 1 follow-ups): `simtopup import-devices` leaves a
``device.import`` row on the audit log in the import's transaction, and the dashboard's
low-float threshold and stuck-order limit are settings (SIMTOPUP_LOW_FLOAT_THRESHOLD,
SIMTOPUP_STUCK_ORDER_MINUTES)."""

from __future__ import annotations

import getpass
import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from simtopup.audit.models import Action, AuditEntry
from simtopup.devices.models import Device
from simtopup.orders import reports as orders_reports
from simtopup.orders.models import OrderStatus
from simtopup.resellers import reports as resellers_reports
from tests.support import Actors, iccid
from tests.test_dashboard import order, staff


def test_an_import_is_one_audit_row_with_its_counts_and_file(db: None, tmp_path: Path) -> None:
    path = tmp_path / "stock-2026-12.csv"
    path.write_text(
        "kind,imei,iccid,eid,serial,activation_code,pin\n"
        + "".join(f"sim,,{iccid(900 + n)},,,,{10203040 + n}\n" for n in range(3))
    )
    call_command("import_devices", str(path), stdout=io.StringIO(), stderr=io.StringIO())
    call_command("import_devices", str(path), stdout=io.StringIO(), stderr=io.StringIO())
    rows = list(AuditEntry.objects.filter(action=Action.DEVICE_IMPORT).order_by("pk"))
    assert [row.after for row in rows] == [
        {"file": "stock-2026-12.csv", "created": 3, "unchanged": 0, "pins_added": 0},
        {"file": "stock-2026-12.csv", "created": 0, "unchanged": 3, "pins_added": 0},
    ]
    assert rows[0].actor == f"cli:{getpass.getuser()}"
    assert rows[0].object_type == "devices.device"

    # A rejected file writes nothing: no devices, no row.
    bad = tmp_path / "bad.csv"
    bad.write_text("kind,imei,iccid,eid,serial,activation_code\n" + f"sim,,{iccid(950)},,,\n" * 2)
    with pytest.raises(CommandError):
        call_command("import_devices", str(bad), stdout=io.StringIO(), stderr=io.StringIO())
    assert AuditEntry.objects.filter(action=Action.DEVICE_IMPORT).count() == 2
    assert Device.objects.count() == 3


def test_the_low_float_threshold_is_a_setting(actors: Actors, settings: Any) -> None:
    # Alice's float is 100000, Bob's 5000 (tests/support.py's Actors).
    settings.LOW_FLOAT_THRESHOLD = 200_000
    assert [f.low for f in resellers_reports.floats()] == [True, True]
    page = staff(["ledger.view_account"]).get("/admin/dashboard/").content.decode()
    assert "Reseller floats (2 below 2000.00 CNY)" in page
    settings.LOW_FLOAT_THRESHOLD = 1000
    assert [f.low for f in resellers_reports.floats()] == [False, False]


def test_the_stuck_order_limit_is_a_setting(actors: Actors, settings: Any) -> None:
    now = timezone.now()
    order(actors, now - timedelta(minutes=40), status=OrderStatus.PAID)
    settings.STUCK_ORDER_MINUTES = 15
    assert orders_reports.stuck_count(now=now) == 1
    settings.STUCK_ORDER_MINUTES = 60
    assert orders_reports.stuck_count(now=now) == 0
    assert orders_reports.stuck_before(now) == now - timedelta(minutes=60)
