"""The console's dashboard in a real browser, English and Chinese at desktop size: the page
draws its SVG charts with no Content-Security-Policy complaint (screenshots looked at)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings as django_settings
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from simtopup.orders.models import Order, OrderStatus
from simtopup.payments.models import Payment, PaymentStatus
from simtopup.usage.models import UsageRecord
from tests.e2e.conftest import shot
from tests.staff_support import verify_console

PERMISSIONS = [
    ("ledger", "view_account"),
    ("orders", "view_order"),
    ("payments", "view_refund"),
    ("resellers", "view_reseller"),
]


def _sales() -> None:
    from simtopup.catalog.models import Plan
    from simtopup.devices.models import Device
    from simtopup.resellers.models import Reseller

    device = Device.objects.order_by("pk")[0]
    plan = Plan.objects.get(code="day-1g")
    alice = Reseller.objects.order_by("pk").first()
    now = timezone.now()
    rows = [
        ("app", "card", OrderStatus.FULFILLED, 500, "stripe", PaymentStatus.SUCCEEDED),
        ("app", "alipay", OrderStatus.FULFILLED, 5900, "alipay", PaymentStatus.SUCCEEDED),
        ("web", "wechat_pay", OrderStatus.FULFILLED, 500, "wechatpay", PaymentStatus.SUCCEEDED),
        ("web", "card", OrderStatus.FAILED, 500, "stripe", PaymentStatus.FAILED),
        ("auto", "balance", OrderStatus.FULFILLED, 500, None, None),
        ("reseller", "", OrderStatus.FULFILLED, 460, None, None),
        ("app", "card", OrderStatus.FULFILLING, 500, "stripe", PaymentStatus.SUCCEEDED),
    ]
    for n, (channel, method, status, amount, provider, paid) in enumerate(rows):
        order = Order.objects.create(
            channel=channel,
            status=status,
            device=device,
            plan=plan,
            reseller=alice if channel == "reseller" else None,
            payment_method=method,
            amount=amount,
            retail_amount=amount,
            currency="CNY",
        )
        Order.objects.filter(pk=order.pk).update(created_at=now - timedelta(minutes=20 * n))
        if provider and paid:
            Payment.objects.create(
                order=order,
                provider=provider,
                method=method,
                status=paid,
                amount=amount,
                currency="CNY",
                reference=f"e2e-dash-{n}",
            )
    for n in range(30):
        record = UsageRecord.objects.create(
            record_id=f"e2e-u-{n}",
            device=device,
            bytes=1000,
            overage_bytes=1000,
            started_at=now,
            ended_at=now,
        )
        UsageRecord.objects.filter(pk=record.pk).update(
            received_at=now - timedelta(minutes=37 * (n % 9))
        )


def test_the_dashboard_in_english_and_chinese(site: str, desktop: Any) -> None:
    _sales()
    user = User.objects.create_user("finance-e2e", password="pw-e2e-x", is_staff=True)
    for app, codename in PERMISSIONS:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app, codename=codename)
        )
    client = verify_console(Client(), user)  # both factors (tests/staff_support.py)
    session = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    complaints: list[str] = []

    def listen(message: Any) -> None:
        if "Content Security Policy" in message.text:
            complaints.append(message.text)

    for language, heading in (
        ("en", "Sales and revenue by channel"),
        ("zh-hans", "按渠道的销售和收入"),
    ):
        page = desktop(language)
        page.on("console", listen)
        page.context.add_cookies(
            [{"name": django_settings.SESSION_COOKIE_NAME, "value": session, "url": site}]
        )
        page.goto(f"{site}/admin/dashboard/?window=7d")
        assert heading in page.content()
        assert page.locator("svg.dashboard-chart").count() >= 3
        assert page.locator("svg.dashboard-chart rect").count() > 24
        shot(page, f"dashboard-desktop-{language}")
        page.goto(f"{site}/admin/")  # the console's home: the dashboard above the tables
        assert heading in page.content()
        assert page.locator("svg.dashboard-chart").count() >= 3
        shot(page, f"dashboard-home-{language}")
        assert complaints == []
