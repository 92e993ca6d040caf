"""The whole top-up journey in a real browser, through the sandbox gateway: choose a plan,
type a device ID (no login: paying for someone else's card), confirm, pay on the gateway's
page, watch the status page turn to credited by itself, download the receipt.

On a 390×844 phone in zh-Hans and a 1280×800 desktop in English; screenshots of each step
land in test-artifacts/screenshots/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.db import transaction

from simtopup.accounts.models import Customer
from simtopup.catalog.models import Plan
from simtopup.devices.models import Device
from simtopup.ledger.actions import Posting, post, system_account
from simtopup.orders.models import Order, OrderStatus
from simtopup.usage.bundles import remaining_bytes
from simtopup.usage.models import AutoTopupRule
from simtopup.web.session import SESSION_KEY
from tests.e2e.conftest import shot
from tests.support import GB, iccid

TEXTS = {
    "zh-hans": {"pay": "支付 ¥5.00", "credited": "已到账"},
    "en": {"pay": "Pay ¥5.00", "credited": "Credited"},
}


def journey(page: Any, site: str, language: str, device_number: int, name: str, tmp: Path) -> None:
    texts = TEXTS[language]
    number = iccid(device_number)
    device = Device.objects.get(iccid=number)

    page.goto(f"{site}/topup")
    assert page.locator("html").get_attribute("lang") == (
        "zh-Hans" if language == "zh-hans" else "en"
    )
    shot(page, f"topup-1-plans-{name}")
    page.click("a[data-plan=day-1g]")

    page.wait_for_selector("#id_device")
    # A typo first: the check digit catches it, next to the field.
    wrong = number[:-1] + str((int(number[-1]) + 1) % 10)
    page.fill("#id_device", wrong)
    page.click("form.card button[type=submit]")
    error = page.locator("#id_device_error")
    error.wait_for()
    assert "ICCID" in error.inner_text()
    shot(page, f"topup-2-device-error-{name}")
    # Then as printed, with the spaces people type.
    page.fill("#id_device", " ".join(number[i : i + 4] for i in range(0, len(number), 4)))
    shot(page, f"topup-2-device-{name}")
    page.click("form.card button[type=submit]")

    page.wait_for_selector("form.pay")
    assert page.inner_text("[data-testid=device]").strip() == device.masked
    assert number not in page.content()  # masked, never the full identifier
    assert "¥5.00" in page.inner_text("[data-testid=price]")
    shot(page, f"topup-3-confirm-{name}")
    page.check("input[value=alipay]")
    page.click("form.pay button[type=submit]")

    # The sandbox gateway's hosted page.
    page.wait_for_url("**/sandbox/checkout/**")
    shot(page, f"topup-4-gateway-{name}")
    page.get_by_role("button", name=texts["pay"]).click()

    # Back on our status page, which turns to credited by itself (no reload by us).
    page.wait_for_url("**/orders/*/status*")
    shot(page, f"topup-5-status-waiting-{name}")
    page.locator("[data-testid=receipt]").wait_for(timeout=20_000)
    assert texts["credited"] in page.inner_text("[data-testid=outcome]")
    shot(page, f"topup-6-credited-{name}")

    order = Order.objects.get(device=device)
    assert order.status == OrderStatus.FULFILLED
    assert order.customer is None
    assert order.channel == "web"
    assert order.payment_method == "alipay"
    assert remaining_bytes(device) == 1 * GB
    assert order.receipt_no
    assert order.receipt_no in page.inner_text("main")

    with page.expect_download() as download_info:
        page.click("[data-testid=receipt]")
    download = download_info.value
    assert download.suggested_filename == f"receipt-{order.receipt_no}.pdf"
    target = tmp / download.suggested_filename
    download.save_as(str(target))
    assert target.read_bytes().startswith(b"%PDF")


def test_a_visitor_tops_up_a_card_on_a_phone_in_chinese(
    site: str, phone: Any, tmp_path: Path
) -> None:
    journey(phone("zh-hans"), site, "zh-hans", 1, "phone-zh-hans", tmp_path)


def test_a_visitor_tops_up_a_card_on_a_desktop_in_english(
    site: str, desktop: Any, tmp_path: Path
) -> None:
    journey(desktop("en"), site, "en", 2, "desktop-en", tmp_path)


def logged_in(page: Any, site: str, customer: Customer) -> None:
    """Give the browser the session the login page would have left (database sessions)."""
    session = SessionStore()
    session[SESSION_KEY] = customer.pk
    session.save()
    page.context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": session.session_key, "url": site}]
    )


def my_pages(page: Any, site: str, language: str, name: str) -> None:
    """A customer's own pages: bind a card, its balance, eSIM, credit, a top-up paid with
    the card's credit, the history."""
    me = Customer.objects.create(phone="+8613800138000", language=language)
    device = Device.objects.get(iccid=iccid(3))
    code = "LPA:1$smdp.example.net$E2E-3-MATCH"
    Device.objects.filter(pk=device.pk).update(activation_code=code)
    with transaction.atomic():
        post(
            [
                Posting(
                    system_account("adjustments", "CNY"),
                    device.credit_account,
                    2000,
                    "adjustment",
                    f"e2e:{name}",
                )
            ]
        )
    logged_in(page, site, me)

    page.goto(f"{site}/my/devices")
    page.fill("#id_device", iccid(3))
    # The proof of holding the card: this eSIM's activation code (whole, or its matching ID).
    page.fill("#id_proof", code if language == "en" else "e2e-3-match")
    page.fill("#id_nickname", "旅行" if language.startswith("zh") else "Travel")
    page.click("form.card button[type=submit]")
    page.wait_for_url(f"**/my/devices/{device.pk}")
    page.goto(f"{site}/my/devices")
    shot(page, f"my-devices-{name}")

    # Top up from the card's credit: choose plan → my card is preselected → confirm → pay.
    page.goto(f"{site}/my/devices/{device.pk}")
    page.click(f"a[href='/topup?device={device.pk}']")
    page.click("a[data-plan=day-1g]")
    assert page.is_checked("input[name=mine]")
    page.click("form.card button[type=submit]")
    page.check("input[value=balance]")
    page.click("form.pay button[type=submit]")
    page.locator("[data-testid=receipt]").wait_for()
    assert remaining_bytes(device) == 1 * GB

    page.goto(f"{site}/my/devices/{device.pk}")
    assert page.locator("meter").count() == 1
    assert "¥15.00" in page.inner_text("[data-testid=credit]")
    shot(page, f"my-device-{name}")
    page.goto(f"{site}/my/devices/{device.pk}/esim")
    assert page.locator(".qr svg").count() == 1
    assert "E2E-3" in page.inner_text("[data-testid=activation-code]")
    shot(page, f"my-esim-{name}")
    # Three amounts of credit on sale, as in the demo: three 充值余额 buttons.
    for amount in (100, 200):
        code = f"credit-{amount}-{name}"
        Plan.objects.get_or_create(
            code=code,
            defaults={
                "kind": "payg",
                "name_en": code,
                "name_zh_hans": code,
                "name_zh_hant": code,
                "price": amount * 100,
                "currency": "CNY",
                "sort_order": 90 + amount // 100,
            },
        )
    page.goto(f"{site}/my/devices/{device.pk}/credit")
    # The add-credit (充值余额) buttons do not touch: at least 4 px between any two.
    boxes = page.evaluate(
        "[...document.querySelectorAll('.card > a.button')].map(a => {"
        " const r = a.getBoundingClientRect();"
        " return [r.left, r.top, r.right, r.bottom]; })"
    )
    assert len(boxes) >= 2, boxes
    for i, (l1, t1, r1, b1) in enumerate(boxes):
        for l2, t2, r2, b2 in boxes[i + 1 :]:
            apart = max(l2 - r1, l1 - r2, t2 - b1, t1 - b2)
            assert apart >= 4, (boxes, apart)
    page.check("#id_enabled")
    page.fill("#id_threshold", "500")
    page.click("form[action$=auto-topup] button[type=submit]")
    page.wait_for_url(f"**/my/devices/{device.pk}/credit")
    assert AutoTopupRule.objects.get(device=device).enabled
    shot(page, f"my-credit-{name}")
    page.goto(f"{site}/my/orders")
    shot(page, f"my-history-{name}")
    with page.expect_download() as download_info:
        page.click("a[href='/my/orders.csv']")
    assert download_info.value.suggested_filename.endswith(".csv")


def test_a_customer_manages_a_card_on_a_phone_in_chinese(site: str, phone: Any) -> None:
    my_pages(phone("zh-hans"), site, "zh-hans", "phone-zh-hans")


def test_a_customer_manages_a_card_on_a_desktop_in_english(site: str, desktop: Any) -> None:
    my_pages(desktop("en"), site, "en", "desktop-en")
