"""The customer-service desk in a real browser (issue 14, point 3): a support agent logs in to
the console with a password and an authenticator code, types the phone number a customer
reads out into the console's search box, opens the customer's card, refunds an order with
a reason and sees the refund on the card's story. In zh-Hans and English at desktop size;
the screenshots (desk-*.png) were looked at."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import NoReverseMatch, reverse

from simtopup.accounts.models import Customer
from simtopup.catalog.models import Plan
from simtopup.devices.models import Device
from simtopup.orders.customer import place_balance_order
from simtopup.orders.models import Order
from simtopup.support.actions import create_ticket
from tests.e2e.conftest import shot
from tests.payments_support import bind, give_credit
from tests.staff_support import PASSWORD, add_authenticator, code_of, make_staff

STORY = {
    "en": ("Remaining data", "Credit movements", "Refund"),
    "zh-hans": ("剩余流量", "余额明细", "退款"),
}


def _refund_page_exists() -> bool:
    try:
        reverse("admin:desk-refund", kwargs={"order_id": 1})
    except NoReverseMatch:
        return False
    return True


def _customer_with_an_order(phone: str) -> tuple[Device, Order]:
    customer = Customer.objects.create(phone=phone, language="zh-hans")
    device = Device.objects.order_by("pk")[0]
    bind(device, customer)
    give_credit(device, 2000, f"e2e:desk:{phone}")
    order = place_balance_order(customer, device, Plan.objects.get(code="day-1g"))
    create_ticket(
        reply_channel="phone",
        reply_to=phone,
        message="出国后连不上网，请帮忙看看。",
        device=device.iccid or "",
        customer=customer,
    )
    return device, order


def _log_in(page: Any, site: str, user: Any, device: Any) -> None:
    page.goto(f"{site}/admin/login/")
    page.fill("input[name=username]", user.get_username())
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=otp_token]", code_of(device))
    page.locator("input[type=submit], button[type=submit]").first.click()
    page.wait_for_url(f"{site}/admin/")


@pytest.mark.parametrize("language", ["zh-hans", "en"])
def test_an_agent_finds_the_customer_by_phone_and_refunds_an_order(
    site: str, desktop: Any, language: str
) -> None:
    device, order = _customer_with_an_order("+8613800138000")
    agent = make_staff(f"agent-{language}", "support")
    totp = add_authenticator(agent)
    page = desktop(language)
    complaints: list[str] = []
    page.on(
        "console",
        lambda m: complaints.append(m.text) if "Content Security Policy" in m.text else None,
    )
    _log_in(page, site, agent, totp)

    shot(page, f"desk-home-{language}")
    page.fill("#desk-q", "138 0013 8000")  # as read out over the phone: national form
    page.locator("form.desk-search input[type=submit]").click()
    page.wait_for_url(f"{site}/admin/desk/customers/**")
    shot(page, f"desk-customer-{language}")
    page.locator("#desk-cards a").first.click()
    page.wait_for_url(f"{site}/admin/desk/devices/{device.pk}/")
    body = page.content()
    for words in STORY[language][:2]:
        assert words in body, words
    assert page.locator(f"#order-{order.pk}").count() == 1
    assert page.locator("#desk-usage svg").count() == 1
    shot(page, f"desk-story-{language}")

    # The customer's ticket: a reply by SMS, the ticket then waits on the customer.
    page.locator("#desk-tickets a").first.click()
    page.fill("textarea[name=body]", "请重启设备后再试。")
    page.select_option("select[name=status_after]", "waiting")
    page.locator("#desk-reply input[type=submit]").click()
    page.wait_for_selector(".thread .msg.staff")
    assert "请重启设备后再试。" in page.locator(".thread").inner_text()
    shot(page, f"desk-ticket-{language}")
    page.go_back()
    page.go_back()
    page.goto(f"{site}/admin/desk/devices/{device.pk}/")

    if not _refund_page_exists():
        pytest.skip("the refund page (admin:desk-refund) is not there yet")

    page.locator(f"#order-{order.pk} a.desk-action-refund").click()
    page.wait_for_url(f"{site}/admin/desk/orders/{order.pk}/refund/**")
    reason = "客户出国后无法连接" if language == "zh-hans" else "no signal abroad"
    page.fill("textarea[name=reason]", reason)
    shot(page, f"desk-refund-form-{language}")
    page.locator("form input[type=submit], form button[type=submit]").last.click()
    page.wait_for_url(f"{site}/admin/desk/devices/{device.pk}/")
    refund = page.locator(f"#order-{order.pk} tr.desk-refund")
    assert refund.count() == 1
    assert reason in refund.inner_text()
    assert "¥5.00" in refund.inner_text()
    # The money went back to the card's credit: ¥15.00 + ¥5.00.
    assert page.locator("#desk-credit").inner_text() == "¥20.00"
    shot(page, f"desk-story-refunded-{language}")
    assert complaints == []
