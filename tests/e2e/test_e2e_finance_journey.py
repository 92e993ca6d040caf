"""A finance clerk's reconciliation in a real browser (issue 14): the sandbox gateway's books of
a day hold one planted mismatch (it took ¥31.00 for a payment we recorded as ¥30.00); the
clerk opens the reconciliation page, runs the day, sees the mismatch first and downloads the
CSV — in English and in Chinese, with no Content-Security-Policy complaint (screenshots
looked at)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone

from simtopup.catalog.models import Plan
from simtopup.devices.models import Device
from simtopup.orders.models import Order, OrderStatus
from simtopup.payments.models import Payment, PaymentStatus, SandboxCharge, SandboxChargeStatus
from tests.e2e.conftest import shot
from tests.staff_support import make_staff, verify_console


def _books(day: Any) -> None:
    """Our payments and the sandbox gateway's charges of ``day`` (UTC): three that agree, one
    the gateway took more for."""
    device = Device.objects.order_by("pk")[0]
    plan = Plan.objects.get(code="day-1g")
    for n, (ours, theirs) in enumerate([(3000, 3000), (500, 500), (5900, 5900), (3000, 3100)]):
        when = datetime.combine(day, time(9 + n), tzinfo=UTC)
        reference = f"pay_e2e_recon_{n}"
        order = Order.objects.create(
            channel="web",
            status=OrderStatus.FULFILLED,
            device=device,
            plan=plan,
            payment_method="alipay",
            amount=ours,
            retail_amount=ours,
            currency="CNY",
        )
        Payment.objects.create(
            order=order,
            provider="sandbox",
            method="alipay",
            status=PaymentStatus.SUCCEEDED,
            amount=ours,
            currency="CNY",
            reference=reference,
            provider_ref=f"sbx_e2e_{n}",
            captured_at=when,
        )
        SandboxCharge.objects.create(
            public_id=f"sbx_e2e_{n}",
            merchant="simtopup-sandbox",
            reference=reference,
            amount=theirs,
            currency="CNY",
            method="alipay",
            description="day-1g",
            notify_url="http://127.0.0.1/payments/webhooks/sandbox",
            return_url="http://127.0.0.1/return",
            status=SandboxChargeStatus.SUCCEEDED,
            settled_at=when,
        )


def test_a_finance_clerk_finds_the_planted_mismatch(site: str, desktop: Any) -> None:
    day = timezone.now().astimezone(UTC).date() - timedelta(days=1)
    _books(day)
    clerk = verify_console(Client(), make_staff("clerk-e2e", "finance"))
    session = clerk.cookies[django_settings.SESSION_COOKIE_NAME].value
    complaints: list[str] = []

    def listen(message: Any) -> None:
        if "Content Security Policy" in message.text:
            complaints.append(message.text)

    for language, heading, differs in (
        ("en", "Payment reconciliation", "Amount differs"),
        ("zh-hans", "支付对账", "金额不符"),
    ):
        page = desktop(language)
        page.on("console", listen)
        page.context.add_cookies(
            [{"name": django_settings.SESSION_COOKIE_NAME, "value": session, "url": site}]
        )
        page.goto(f"{site}/admin/")  # the console's home links to the reconciliation
        page.click("#finance-reconciliation-link a")
        page.wait_for_url("**/admin/finance/reconciliation/")
        assert heading in page.content()
        shot(page, f"finance-reconciliation-{language}")

        page.select_option("#id_provider", "sandbox")
        page.fill("#id_day", day.isoformat())
        page.click("#run-now input[type=submit]")
        page.wait_for_url("**/admin/finance/reconciliation/*/")
        mismatch = page.locator("#outcome-amount_mismatch")
        assert differs in mismatch.inner_text()
        assert "pay_e2e_recon_3" in mismatch.inner_text()
        assert "¥30.00" in mismatch.inner_text()
        assert "¥31.00" in mismatch.inner_text()
        assert page.locator("#outcome-matched tbody tr").count() == 3
        # Mismatches first: the planted one is above the matched lines.
        text = page.content()
        assert text.index("pay_e2e_recon_3") < text.index("pay_e2e_recon_0")
        shot(page, f"finance-reconciliation-run-{language}")

        with page.expect_download() as waiting:
            page.click("#csv-link")
        path = Path(waiting.value.path())
        rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
        assert rows[1][0] == differs
        assert rows[1][2] == "pay_e2e_recon_3"
        assert rows[1][5:7] == ["30.00", "31.00"]
        assert len(rows) == 1 + 4

        # The link to our payment opens its console page.
        mismatch.locator("a", has_text="pay_e2e_recon_3").click()
        assert "pay_e2e_recon_3" in page.content()

        page.goto(f"{site}/admin/finance/reconciliation/")
        assert page.locator("table.runs tbody tr").count() >= 1
        shot(page, f"finance-reconciliation-history-{language}")
    assert complaints == []
