"""Receipt numbers are dated in the operator's zone (``DISPLAY_TIME_ZONE``), the day printed
beside them, not UTC's: a sale at 17:30 UTC is already the next day in Beijing. The same on
PostgreSQL's one-statement path: tests/test_fast_sale_differential.py."""

from __future__ import annotations

from datetime import UTC, datetime
from unittest import mock

import pytest
from django.test import Client, override_settings
from stdnum import luhn

from simtopup.orders.actions import receipt_number
from simtopup.orders.models import Order
from tests.support import Actors, post_json

LATE_EVENING_UTC = datetime(2026, 12, 4, 17, 30, tzinfo=UTC)  # 01:30 on 5 December in Beijing


@override_settings(DISPLAY_TIME_ZONE="Asia/Shanghai", FAST_TOPUP=False)
def test_a_sale_late_in_the_utc_day_is_dated_the_operators_next_day(
    actors: Actors, alice: Client
) -> None:
    with mock.patch("django.utils.timezone.now", return_value=LATE_EVENING_UTC):
        response = post_json(
            alice,
            "/reseller/v1/topups",
            {"device": actors.device.iccid, "plan": "day-1g", "reference": "late-1"},
        )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["created_at"] == "2026-12-04T17:30:00Z"
    order = Order.objects.get(pk=body["id"])
    assert order.receipt_no == body["receipt_no"]
    date, number, check = order.receipt_no.removeprefix("R").split("-")
    assert date == "20261205"
    assert int(number) == order.pk
    assert luhn.is_valid(date + number + check)


@pytest.mark.parametrize(
    ("zone", "moment", "day"),
    [
        ("Asia/Shanghai", datetime(2026, 12, 4, 15, 59, tzinfo=UTC), "20261204"),  # 23:59
        ("Asia/Shanghai", datetime(2026, 12, 4, 16, 0, tzinfo=UTC), "20261205"),  # 00:00
        ("UTC", datetime(2026, 12, 4, 17, 30, tzinfo=UTC), "20261204"),
        ("America/New_York", datetime(2026, 12, 5, 2, 0, tzinfo=UTC), "20261204"),  # 21:00
    ],
)
def test_the_receipt_date_follows_the_operators_zone(zone: str, moment: datetime, day: str) -> None:
    order = Order(pk=42, created_at=moment)
    with override_settings(DISPLAY_TIME_ZONE=zone):
        number = receipt_number(order)
    assert number.startswith(f"R{day}-00000042-")
