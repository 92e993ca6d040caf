"""The reseller portal in a real browser: staff log in and sell a top-up to a walk-in customer
(with the confirmation step), on a desktop in English and on a phone in Simplified Chinese."""

from __future__ import annotations

from typing import Any

from simtopup.orders.models import Order
from simtopup.resellers.models import Reseller
from tests.agent_support import PASSWORD, make_staff
from tests.e2e.conftest import shot
from tests.support import float_of, iccid


def _log_in(page: Any, site: str, email: str) -> None:
    page.goto(f"{site}/agent/login")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit].primary")
    page.wait_for_url(f"{site}/agent/")


def _sell(page: Any, site: str, device: str, plan: str, name: str) -> str:
    page.goto(f"{site}/agent/sell")
    shot(page, f"agent-sell-{name}")
    page.fill("input[name=device]", device)
    page.select_option("select[name=plan]", plan)
    page.click("button[type=submit].primary")
    page.wait_for_selector("#confirmation")
    shot(page, f"agent-confirm-{name}")
    assert "•" in page.inner_text("#confirm-device")
    page.click("#confirmation button[type=submit]")
    page.wait_for_selector("#receipt-no")
    shot(page, f"agent-sold-{name}")
    return page.inner_text("#receipt-no").strip()


def test_staff_sells_a_top_up_on_a_desktop_in_english(
    site: str, desktop: Any, monkeypatch: Any
) -> None:
    from ipaddress import ip_address

    from simtopup.resellers import webhooks

    # The webhook URL's host must resolve to a public address; tests have no DNS.
    monkeypatch.setattr(webhooks, "resolve", lambda host, port: [ip_address("93.184.215.14")])
    alice = Reseller.objects.get(name="Alice Mobile")
    make_staff(alice, "owner@alice.example", "owner")
    before = float_of(alice)
    page = desktop("en")
    page.goto(f"{site}/agent/login")
    shot(page, "agent-login-desktop-en")
    _log_in(page, site, "owner@alice.example")
    assert alice.code in page.inner_text("#agent-code")
    shot(page, "agent-dashboard-desktop-en")

    # A typo in the device ID is caught before anything is confirmed.
    page.goto(f"{site}/agent/sell")
    wrong = iccid(1)[:-1] + str((int(iccid(1)[-1]) + 1) % 10)
    page.fill("input[name=device]", wrong)
    page.click("button[type=submit].primary")
    page.wait_for_selector(".field.invalid .errorlist")
    shot(page, "agent-sell-error-desktop-en")

    receipt_no = _sell(page, site, iccid(1), "day-1g", "desktop-en")
    order = Order.objects.get(reseller=alice)
    assert order.receipt_no == receipt_no
    assert order.status == "fulfilled"
    assert float_of(alice) == before - order.amount

    page.click("#print-link")
    page.wait_for_selector("#receipt")
    assert receipt_no in page.inner_text("#receipt")
    shot(page, "agent-receipt-desktop-en")

    page.goto(f"{site}/agent/transactions")
    assert order.reference in page.inner_text("main")
    shot(page, "agent-transactions-desktop-en")

    page.goto(f"{site}/agent/keys")
    page.fill("input[name=name]", "shop till 2")
    page.click("button[type=submit].primary")
    page.wait_for_selector("#new-key-value")
    shot(page, "agent-keys-desktop-en")

    page.goto(f"{site}/agent/webhook")
    page.fill("input[name=webhook_url]", "http://example.com/hooks")
    page.click("button[value=save]")
    page.wait_for_selector(".field.invalid .errorlist")
    shot(page, "agent-webhook-error-desktop-en")
    page.fill("input[name=webhook_url]", "https://hooks.example.com/simtopup")
    page.click("button[value=save]")
    page.wait_for_selector("#new-secret-value")
    shot(page, "agent-webhook-desktop-en")


def test_a_clerk_sells_a_top_up_on_a_phone_in_chinese(site: str, phone: Any) -> None:
    alice = Reseller.objects.get(name="Alice Mobile")
    make_staff(alice, "clerk@alice.example", "clerk")
    page = phone("zh-hans")
    page.goto(f"{site}/agent/login")
    shot(page, "agent-login-phone-zh-hans")
    _log_in(page, site, "clerk@alice.example")
    assert page.locator("html").get_attribute("lang") == "zh-Hans"
    shot(page, "agent-dashboard-phone-zh-hans")
    receipt_no = _sell(page, site, iccid(2), "month-20g", "phone-zh-hans")
    assert Order.objects.get(reseller=alice).receipt_no == receipt_no
    page.click("#print-link")
    page.wait_for_selector("#receipt")
    shot(page, "agent-receipt-phone-zh-hans")
    page.goto(f"{site}/agent/transactions")
    shot(page, "agent-transactions-phone-zh-hans")
    # Clerks do not manage keys.
    page.goto(f"{site}/agent/keys")
    shot(page, "agent-keys-refused-phone-zh-hans")
    assert page.locator("#new-key-value").count() == 0


def test_a_suspended_reseller_sees_why_it_cannot_sell(site: str, phone: Any) -> None:
    from simtopup.resellers.actions import suspend

    alice = Reseller.objects.get(name="Alice Mobile")
    make_staff(alice, "owner@alice.example", "owner")
    page = phone("zh-hant")
    _log_in(page, site, "owner@alice.example")
    suspend(alice)
    page.goto(f"{site}/agent/sell")
    assert page.locator("#suspended").is_visible()
    assert page.locator("input[name=device]").count() == 0
    shot(page, "agent-suspended-phone-zh-hant")
