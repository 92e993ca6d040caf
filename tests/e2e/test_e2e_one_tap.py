"""What the customer came for, first, and one tap (issue 13, points 2 and 3), on a 390×844
phone in zh-Hans: remaining data, days left and "top up this card" inside the first screen
of the card page and the device list (their boxes measured), the identifiers folded behind
"show ID"; "buy again" from a history row and an amount on the credit form reach the
confirmation pre-filled. Screenshots in test-artifacts/screenshots/one-tap-*.png."""

from __future__ import annotations

import time
from typing import Any

from django.db import transaction

from simtopup.accounts.models import Customer
from simtopup.catalog.models import Plan
from simtopup.devices.models import Device
from simtopup.ledger.actions import Posting, post, system_account
from simtopup.orders.customer import place_balance_order
from simtopup.usage.bundles import remaining_bytes
from tests.e2e.conftest import ARTIFACTS, shot
from tests.e2e.test_e2e_topup import logged_in
from tests.support import GB, iccid

WIDTH, HEIGHT = 390, 844


def first_screen(page: Any, name: str) -> None:
    """The first screen as the phone shows it (no scrolling), beside the full-page shot."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}-first-screen.png"))
    shot(page, name)


def inside_first_screen(page: Any, selector: str) -> dict[str, float]:
    box = page.locator(selector).first.bounding_box()
    assert box is not None, f"{selector} is not rendered"
    assert box["x"] >= 0
    assert box["y"] >= 0
    assert box["x"] + box["width"] <= WIDTH, (selector, box)
    assert box["y"] + box["height"] <= HEIGHT, (selector, box)
    return box


def a_customer_with_a_pass(site: str, page: Any) -> tuple[Customer, Device, Device]:
    me = Customer.objects.create(phone="+8613800138001", language="zh-hans")
    device = Device.objects.get(iccid=iccid(4))
    other = Device.objects.get(iccid=iccid(5))
    Device.objects.filter(pk__in=[device.pk, other.pk]).update(owner=me, nickname="")
    device.refresh_from_db()
    with transaction.atomic():
        post(
            [
                Posting(
                    system_account("adjustments", "CNY"),
                    device.credit_account,
                    8000,
                    "adjustment",
                    "e2e:one-tap",
                )
            ]
        )
    place_balance_order(me, device, Plan.objects.get(code="month-20g"))
    deadline = time.monotonic() + 20
    while remaining_bytes(device) < 20 * GB:  # the worker thread credits it
        assert time.monotonic() < deadline, "the pass was never credited"
        time.sleep(0.1)
    logged_in(page, site, me)
    return me, device, other


def test_the_card_page_and_the_list_lead_with_data_days_and_top_up(site: str, phone: Any) -> None:
    page = phone("zh-hans")
    _me, device, _other = a_customer_with_a_pass(site, page)

    page.goto(f"{site}/my/devices/{device.pk}")
    assert page.inner_text("[data-testid=remaining]").strip() == "20 GB"
    days = page.inner_text("[data-testid=days-left]")
    assert "还剩 30 天" in days or "还剩 29 天" in days, days
    assert page.inner_text("[data-testid=topup]").strip() == "为这张卡充值"
    for selector in ("[data-testid=remaining]", "[data-testid=days-left]", "[data-testid=topup]"):
        inside_first_screen(page, selector)
    # The identifiers are folded: the EID is not shown until "显示ID" is tapped.
    eid = page.locator("details.ids dd", has_text=device.eid)
    assert not eid.is_visible()
    first_screen(page, "one-tap-card-phone-zh-hans")
    page.click("details.ids summary")
    assert eid.is_visible()
    shot(page, "one-tap-card-ids-open-phone-zh-hans")
    again = page.locator("[data-testid=buy-again]")
    assert "month-20g 简" in again.inner_text()

    page.goto(f"{site}/my/devices")
    first = page.locator(".device-card").first
    assert first.locator("[data-testid=remaining]").inner_text().strip() == "20 GB"
    for selector in (
        ".device-card [data-testid=remaining]",
        ".device-card [data-testid=days-left]",
        ".device-card [data-testid=topup]",
    ):
        inside_first_screen(page, selector)
    assert not first.locator("details.ids dd", has_text=device.eid).is_visible()
    first_screen(page, "one-tap-devices-phone-zh-hans")


def test_buy_again_from_history_and_add_credit_reach_the_confirmation(
    site: str, phone: Any
) -> None:
    page = phone("zh-hans")
    _me, device, _other = a_customer_with_a_pass(site, page)

    page.goto(f"{site}/my/orders")
    first_screen(page, "one-tap-history-phone-zh-hans")
    page.locator("[data-testid=buy-again]").first.click()
    page.wait_for_selector("form.pay")
    assert page.url.startswith(f"{site}/topup/confirm?c=")
    assert page.inner_text("[data-testid=device]").startswith(device.masked)
    assert page.inner_text("[data-testid=price]").strip() == "¥59.00"
    assert "month-20g 简" in page.inner_text("main")
    first_screen(page, "one-tap-buy-again-confirm-phone-zh-hans")

    page.goto(f"{site}/my/devices/{device.pk}")
    page.click(f"a[href='/my/devices/{device.pk}/credit/add']")
    page.wait_for_selector("form.amounts")
    first_screen(page, "one-tap-credit-form-phone-zh-hans")
    page.get_by_role("button", name="¥50.00").click()
    page.wait_for_selector("form.pay")
    assert page.inner_text("[data-testid=price]").strip() == "¥50.00"
    assert page.inner_text("[data-testid=device]").startswith(device.masked)
    shot(page, "one-tap-credit-confirm-phone-zh-hans")
