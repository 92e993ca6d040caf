"""Words customers use (issue 13, point 6): plan labels from the plan's own validity, money
with thousands separators, times in the customer's zone without raw zone names, in English,
zh-Hans and zh-Hant."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from django.utils import translation

from simtopup.catalog.display import plan_label
from simtopup.catalog.models import Plan
from simtopup.core.money import format_money
from simtopup.orders.receipts import format_time, format_time_with_zone, zone_label
from simtopup.web.customer.common import zone_name
from tests.receipt_support import paid_order
from tests.support import GB, Actors
from tests.web_home_support import client_in, page
from tests.web_support import browser, customer

LABELS = {
    # hours: en, zh-hans, zh-hant
    24: ("1-day pass", "1天套餐", "1天方案"),
    168: ("7-day pass", "7天套餐", "7天方案"),
    720: ("30-day pass", "30天套餐", "30天方案"),
    2160: ("90-day pass", "90天套餐", "90天方案"),
    12: ("12-hour pass", "12小时套餐", "12小時方案"),
}


def plan(code: str, kind: str, hours: int, price: int = 500) -> Plan:
    return Plan.objects.create(
        code=code,
        kind=kind,
        name_en=code,
        name_zh_hans=code,
        name_zh_hant=code,
        data_bytes=0 if kind == "payg" else GB,
        validity_hours=0 if kind == "payg" else hours,
        price=price,
        currency="CNY",
    )


@pytest.mark.parametrize("hours", list(LABELS))
@pytest.mark.parametrize(("language", "column"), [("en", 0), ("zh-hans", 1), ("zh-hant", 2)])
def test_a_plan_is_labelled_by_its_validity(
    db: None, hours: int, language: str, column: int
) -> None:
    # Filed as "daily" whatever its validity: the label must not follow the kind.
    a_plan = plan(f"p-{hours}", "daily", hours)
    with translation.override(language):
        assert plan_label(a_plan) == LABELS[hours][column]


def test_a_seven_day_pass_is_not_called_a_daily_pass_on_the_home_page(db: None) -> None:
    plan("week-5g", "daily", 168)
    plan("quarter-50g", "monthly", 2160)
    for language, seven, ninety, wrong in (
        ("en", "7-day pass", "90-day pass", "Daily pass"),
        ("zh-hans", "7天套餐", "90天套餐", "日套餐"),
        ("zh-hant", "7天方案", "90天方案", "日租方案"),
    ):
        html = page(client_in(language).get("/"))
        assert f'<p class="plan-kind">{seven}</p>' in html
        assert f'<p class="plan-kind">{ninety}</p>' in html
        assert f'<p class="plan-kind">{wrong}</p>' not in html


def test_pay_per_use_is_labelled_as_such(db: None) -> None:
    credit = plan("credit-100", "payg", 0, 10000)
    with translation.override("zh-hans"):
        assert plan_label(credit) == translation.gettext("Pay per use")
        assert plan_label(credit) != "Pay per use"  # translated


@pytest.mark.parametrize(
    ("minor", "currency", "shown"),
    [
        (100000, "CNY", "¥1,000.00"),
        (3000, "CNY", "¥30.00"),
        (123456789, "CNY", "¥1,234,567.89"),
        (-123450, "CNY", "-¥1,234.50"),
        (100000, "HKD", "HK$1,000.00"),
        (1500000, "JPY", "¥1,500,000"),
        (100000, "THB", "THB 1,000.00"),
        (99999, "CNY", "¥999.99"),
    ],
)
def test_money_is_grouped_in_thousands(minor: int, currency: str, shown: str) -> None:
    for language in ("en", "zh-hans", "zh-hant"):
        with translation.override(language):
            assert format_money(minor, currency) == shown


@pytest.mark.parametrize("language", ["en", "zh-hans", "zh-hant"])
def test_a_thousand_yuan_plan_shows_its_separator_on_the_page(db: None, language: str) -> None:
    plan("year-500g", "monthly", 8760, 100000)
    html = page(client_in(language).get("/"))
    assert "¥1,000.00" in html
    assert "¥1000.00" not in html


# --- times: the customer's zone, never a raw zone name -------------------------------------

LATE = datetime(2026, 12, 4, 17, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "shown"),
    [
        ("Asia/Shanghai", "2026-12-05 01:30"),
        ("Asia/Taipei", "2026-12-05 01:30"),
        ("America/Los_Angeles", "2026-12-04 09:30"),
        ("UTC", "2026-12-04 17:30"),
    ],
)
def test_a_time_is_local_and_names_no_zone(zone: str, shown: str) -> None:
    text = format_time(LATE, ZoneInfo(zone))
    assert text == shown
    assert "(" not in text
    assert "/" not in text


@pytest.mark.parametrize(
    ("zone", "moment", "language", "label"),
    [
        ("Asia/Shanghai", LATE, "en", "Beijing time"),
        ("Asia/Shanghai", LATE, "zh-hans", "北京时间"),
        ("Asia/Shanghai", LATE, "zh-hant", "北京時間"),
        ("Asia/Taipei", LATE, "zh-hant", "UTC+8"),
        ("Asia/Kolkata", LATE, "en", "UTC+5:30"),
        ("America/New_York", LATE, "en", "UTC-5"),
        ("America/New_York", datetime(2026, 7, 1, tzinfo=UTC), "en", "UTC-4"),  # summer time
        ("Europe/London", LATE, "en", "UTC"),
    ],
)
def test_a_receipt_names_the_zone_as_people_say_it(
    zone: str, moment: datetime, language: str, label: str
) -> None:
    with translation.override(language):
        assert zone_label(ZoneInfo(zone), moment) == label
        text = format_time_with_zone(moment, ZoneInfo(zone))
    assert text.endswith(f" ({label})")
    assert zone not in text


def test_the_order_page_shows_the_time_without_a_zone_name(actors: Actors) -> None:
    me = customer(time_zone="Asia/Shanghai", language="zh-hans")
    order = paid_order(me, actors.device, actors.plans["day-1g"])
    html = page(browser(me, language="zh-hans").get(f"/orders/{order.pk}/status"))
    assert format_time(order.created_at, ZoneInfo("Asia/Shanghai")) in html
    assert "Asia/Shanghai" not in html


def test_a_page_can_name_the_customers_zone_without_its_iana_name(db: None) -> None:
    with translation.override("zh-hans"):
        assert zone_name(customer(time_zone="Asia/Shanghai")) == "北京时间"
        assert zone_name(None) == "北京时间"  # the operator's zone (DISPLAY_TIME_ZONE)
    assert zone_name(customer("+8613800138009", time_zone="Asia/Kolkata")) == "UTC+5:30"
