"""The console's dashboard (backoffice/dashboard.py) and the report queries it composes:
numbers match the rows across today / 7 days / 30 days and the operator's midnight, the
stuck and failed lines link to filtered order lists, low floats are listed, the page needs
``ledger.view_account`` and its SVG carries no script and no external reference."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from itertools import count
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from simtopup.ledger.models import Account
from simtopup.orders import reports as orders_reports
from simtopup.orders.models import Order, OrderStatus
from simtopup.payments import reports as payments_reports
from simtopup.payments.models import Payment, PaymentEvent, PaymentStatus, Refund
from simtopup.resellers import reports as resellers_reports
from simtopup.usage import reports as usage_reports
from simtopup.usage.models import UsageRecord
from tests.staff_support import console_client
from tests.support import Actors

SHANGHAI = ZoneInfo("Asia/Shanghai")
# 2026-03-10 12:00 in Shanghai: "today" is 2026-03-10 there.
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=SHANGHAI)
_seq = count(1)


@pytest.fixture(autouse=True)
def _zone(settings) -> None:
    settings.DISPLAY_TIME_ZONE = "Asia/Shanghai"


def order(
    actors: Actors,
    at: datetime,
    *,
    channel: str = "app",
    status: str = OrderStatus.FULFILLED,
    method: str = "card",
    amount: int = 500,
    provider: str | None = None,
    payment_status: str = PaymentStatus.SUCCEEDED,
) -> Order:
    row = Order.objects.create(
        channel=channel,
        status=status,
        device=actors.device,
        plan=actors.plans["day-1g"],
        reseller=actors.alice if channel == "reseller" else None,
        payment_method="" if channel == "reseller" else method,
        amount=amount,
        retail_amount=amount,
        currency="CNY",
    )
    Order.objects.filter(pk=row.pk).update(created_at=at)
    if provider:
        payment = Payment.objects.create(
            order=row,
            provider=provider,
            method=method,
            status=payment_status,
            amount=amount,
            currency="CNY",
            reference=f"pay-{next(_seq)}",
        )
        Payment.objects.filter(pk=payment.pk).update(created_at=at)
    return row


def test_sales_by_channel_and_method_across_windows_and_the_operator_midnight(
    actors: Actors,
) -> None:
    today_0030 = datetime(2026, 3, 10, 0, 30, tzinfo=SHANGHAI)  # 2026-03-09 16:30 UTC
    yesterday_2330 = datetime(2026, 3, 9, 23, 30, tzinfo=SHANGHAI)  # 2026-03-09 15:30 UTC
    order(actors, today_0030, channel="app", method="card", amount=500)
    order(actors, today_0030, channel="web", method="alipay", amount=700)
    order(actors, yesterday_2330, channel="reseller", amount=460)
    order(actors, NOW - timedelta(days=6, hours=11), channel="auto", method="balance", amount=900)
    order(actors, NOW - timedelta(days=7, hours=11), channel="app", method="card", amount=300)
    order(actors, NOW - timedelta(days=29, hours=11), channel="web", method="card", amount=100)
    order(actors, NOW - timedelta(days=30, hours=11), channel="web", method="card", amount=50)
    # Not sales: awaiting payment, failed, cancelled.
    order(actors, today_0030, status=OrderStatus.FAILED, amount=10_000)
    order(actors, today_0030, status=OrderStatus.AWAITING_PAYMENT, amount=10_000)
    order(actors, today_0030, status=OrderStatus.CANCELLED, amount=10_000)

    def by(field: str, name: str) -> dict[str, tuple[int, int]]:
        w = orders_reports.window(name, now=NOW)
        return {r.key: (r.count, r.revenue) for r in orders_reports.sales_by(field, w.start, w.end)}

    assert by("channel", "today") == {"app": (1, 500), "web": (1, 700)}
    assert by("channel", "7d") == {
        "app": (1, 500),
        "web": (1, 700),
        "reseller": (1, 460),
        "auto": (1, 900),
    }
    assert by("channel", "30d") == {
        "app": (2, 800),
        "web": (2, 800),
        "reseller": (1, 460),
        "auto": (1, 900),
    }
    assert by("payment_method", "today") == {"card": (1, 500), "alipay": (1, 700)}
    assert by("payment_method", "30d") == {
        "card": (3, 900),
        "alipay": (1, 700),
        "": (1, 460),
        "balance": (1, 900),
    }
    today = orders_reports.window("today", now=NOW)
    assert today.start == datetime(2026, 3, 10, tzinfo=SHANGHAI)
    statuses = orders_reports.orders_by_status(today.start, today.end)
    assert statuses["fulfilled"] == 2
    assert statuses["failed"] == 1
    assert statuses["awaiting_payment"] == 1
    assert statuses["cancelled"] == 1
    assert statuses["paid"] == 0
    assert sum(statuses.values()) == 5


def test_success_rate_refunds_floats_and_usage_per_hour(actors: Actors) -> None:
    at = datetime(2026, 3, 10, 9, 10, tzinfo=SHANGHAI)
    order(actors, at, provider="stripe")
    order(actors, at, provider="stripe", payment_status=PaymentStatus.REFUNDED)
    order(actors, at, provider="stripe", payment_status=PaymentStatus.FAILED)
    order(actors, at, provider="stripe", payment_status=PaymentStatus.PENDING)
    paid = order(actors, at, provider="alipay", payment_status=PaymentStatus.REFUND_PENDING)
    order(actors, at - timedelta(days=1), provider="alipay", payment_status=PaymentStatus.FAILED)
    today = orders_reports.window("today", now=NOW)
    rates = {r.provider: r for r in payments_reports.success_by_provider(today.start, today.end)}
    assert (rates["stripe"].attempts, rates["stripe"].succeeded, rates["stripe"].pending) == (
        3,
        2,
        1,
    )
    assert rates["stripe"].rate == pytest.approx(2 / 3)
    assert rates["alipay"].rate == 1.0
    week = orders_reports.window("7d", now=NOW)
    assert {r.provider: r.rate for r in payments_reports.success_by_provider(week.start, week.end)}[
        "alipay"
    ] == 0.5

    Refund.objects.create(
        order=paid,
        payment=Payment.objects.get(order=paid),
        reference="rf-1",
        amount=500,
        currency="CNY",
        reason="x",
    )
    PaymentEvent.objects.create(
        provider="stripe", event_id="ev-1", kind="payment.succeeded", flagged_at=timezone.now()
    )
    PaymentEvent.objects.create(
        provider="stripe",
        event_id="ev-2",
        kind="payment.succeeded",
        flagged_at=timezone.now(),
        reviewed_at=timezone.now(),
    )
    refunds = payments_reports.refunds_open()
    assert (refunds.pending, refunds.pending_amounts, refunds.flagged_events) == (
        1,
        {"CNY": 500},
        1,
    )

    # Alice starts with 100000 (1000.00 CNY), Bob with 5000: Bob is low, listed first.
    floats = resellers_reports.floats(threshold=10_000)
    assert [(f.reseller.code, f.balance, f.low) for f in floats] == [
        (actors.bob.code, 5000, True),
        (actors.alice.code, 100000, False),
    ]
    assert Account.objects.get(pk=actors.bob.float_account_id).balance == 5000

    for n, hour in enumerate([0, 0, 5, 23]):
        record = UsageRecord.objects.create(
            record_id=f"u-{n}",
            device=actors.device,
            bytes=1000,
            overage_bytes=1000,
            started_at=NOW,
            ended_at=NOW,
        )
        UsageRecord.objects.filter(pk=record.pk).update(
            received_at=datetime(2026, 3, 10, hour, 15, tzinfo=SHANGHAI)
        )
    late = UsageRecord.objects.create(
        record_id="u-yesterday",
        device=actors.device,
        bytes=1,
        overage_bytes=1,
        started_at=NOW,
        ended_at=NOW,
    )
    UsageRecord.objects.filter(pk=late.pk).update(
        received_at=datetime(2026, 3, 9, 23, 59, tzinfo=SHANGHAI)
    )
    hours = usage_reports.ingested_per_hour(today.start, today.end)
    assert len(hours) == 24
    assert hours[0].start == today.start
    assert [(h.start.hour, h.records, h.bytes) for h in hours if h.records] == [
        (0, 2, 2000),
        (5, 1, 1000),
        (23, 1, 1000),
    ]
    assert len(usage_reports.ingested_per_hour(week.start, week.end)) == 7 * 24


def staff(perms: list[str]) -> Client:
    user = User.objects.create_user(f"staff{next(_seq)}", password="pw-x", is_staff=True)
    for perm in perms:
        app, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app, codename=codename)
        )
    return console_client(user)


def test_the_page_shows_the_numbers_with_links_and_safe_svg(actors: Actors) -> None:
    now = timezone.now()
    order(actors, now - timedelta(seconds=5), channel="web", method="alipay", amount=1234)
    failed = order(actors, now - timedelta(seconds=5), status=OrderStatus.FAILED)
    stuck = order(actors, now - timedelta(hours=1), status=OrderStatus.FULFILLING)
    fresh = order(actors, now - timedelta(seconds=5), status=OrderStatus.PAID)
    client = staff(
        [
            "ledger.view_account",
            "orders.view_order",
            "payments.view_refund",
            "resellers.view_reseller",
        ]
    )
    for name in ("today", "7d", "30d"):
        response = client.get(f"/admin/dashboard/?window={name}")
        assert response.status_code == 200
        page = response.content.decode()
        assert "12.34 CNY" in page, name
        assert "Website" in page
        assert "Alipay" in page
    assert "Reseller floats (1 below 1000.00 CNY)" in page  # Bob's 50.00
    assert "running low" in page
    # The window in the operator's zone: from 00:00 there, 30 days back, to tomorrow 00:00.
    thirty = orders_reports.window("30d", now=now)
    local = thirty.start.astimezone(SHANGHAI)
    assert (local.hour, local.minute) == (0, 0)
    assert f"from {local:%Y-%m-%d} 00:00 to " in page

    stuck_href = re.search(r'id="stuck-link" href="([^"]+)"', page)
    assert stuck_href
    listed = client.get(stuck_href.group(1).replace("&amp;", "&"))
    assert listed.status_code == 200
    assert list(listed.context["cl"].queryset) == [stuck]
    assert fresh.pk != stuck.pk
    failed_href = re.search(r'id="failed-link" href="([^"]+)"', page)
    assert failed_href
    listed = client.get(failed_href.group(1).replace("&amp;", "&"))
    assert list(listed.context["cl"].queryset) == [failed]

    svgs = re.findall(r"<svg [^>]*class=\"dashboard-chart\".*?</svg>", page, re.S)
    assert len(svgs) >= 3
    for svg in svgs:
        assert "<script" not in svg.lower()
        assert "href" not in svg
        assert "url(" not in svg
        assert "<style" not in svg
        assert "http://" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_the_page_speaks_chinese(actors: Actors) -> None:
    client = staff(["ledger.view_account"])
    page = client.get("/admin/dashboard/", headers={"accept-language": "zh-hans"})
    assert page.status_code == 200
    assert "按渠道的销售和收入" in page.content.decode()
    page = client.get("/admin/dashboard/", headers={"accept-language": "zh-hant"})
    assert "按渠道的銷售和收入" in page.content.decode()


def test_the_page_needs_the_permission(db: None) -> None:
    assert staff(["orders.view_order"]).get("/admin/dashboard/").status_code == 403
    anonymous = Client().get("/admin/dashboard/")
    assert anonymous.status_code == 302
    assert "/admin/login/" in anonymous["Location"]


def test_the_console_home_shows_the_dashboard_to_who_may_see_it(actors: Actors) -> None:
    from django.contrib import admin
    from django.test import RequestFactory

    from simtopup.backoffice.dashboard import home_context

    order(actors, timezone.now() - timedelta(seconds=5), channel="web", amount=4321)
    pages = {}
    for who, perms in (
        ("finance", ["ledger.view_account", "orders.view_order"]),
        ("support", ["orders.view_order"]),
    ):
        user = User.objects.create_user(f"home-{who}", password="pw-x", is_staff=True)
        for perm in perms:
            app, codename = perm.split(".")
            user.user_permissions.add(
                Permission.objects.get(content_type__app_label=app, codename=codename)
            )
        request = RequestFactory().get("/admin/")
        request.user = User.objects.get(pk=user.pk)
        site = admin.site
        template = site.index_template
        site.index_template = "backoffice/index.html"
        try:
            response = site.index(request, extra_context=home_context(request))
            pages[who] = response.render().content.decode()
        finally:
            site.index_template = template
    assert "43.21 CNY" in pages["finance"]
    assert 'href="/admin/dashboard/"' in pages["finance"]
    assert "43.21 CNY" not in pages["support"]
    assert "Sales and revenue by channel" not in pages["support"]
    assert 'href="/admin/orders/order/"' in pages["support"]  # the index is still there


def test_the_console_home_is_the_dashboard_for_finance_not_for_support(actors: Actors) -> None:
    from tests.staff_support import make_staff

    order(actors, timezone.now() - timedelta(seconds=5), channel="app", amount=2468)
    finance = console_client(make_staff("fin-home", "finance")).get("/admin/")
    assert finance.status_code == 200
    assert "24.68 CNY" in finance.content.decode()
    assert "Sales and revenue by channel" in finance.content.decode()
    support = console_client(make_staff("sup-home", "support"))
    home = support.get("/admin/")
    assert home.status_code == 200
    assert "24.68 CNY" not in home.content.decode()
    assert support.get("/admin/dashboard/").status_code == 403
    assert (
        console_client(make_staff("adm-home", "admin")).get("/admin/dashboard/").status_code == 200
    )
