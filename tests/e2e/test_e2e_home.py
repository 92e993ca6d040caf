"""The home page, login, help, agent verification and the installable app in a real browser."""

from __future__ import annotations

import re
from typing import Any

from simtopup.accounts.models import Customer
from simtopup.notifications.backends import memory
from simtopup.resellers.models import Reseller
from simtopup.support.models import SupportTicket
from tests.e2e.conftest import ARTIFACTS, shot

CODE = re.compile(r"\b(\d{6})\b")


def no_horizontal_scroll(page: Any) -> None:
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px"


def test_home_on_a_phone_in_simplified_chinese(site: str, phone: Any) -> None:
    page = phone("zh-hans")
    page.goto(f"{site}/")
    assert page.locator("html").get_attribute("lang") == "zh-Hans"
    cards = page.locator("li.plan")
    assert cards.count() == 3
    assert "day-1g 简" in cards.nth(0).inner_text()
    assert "¥5.00" in cards.nth(0).inner_text()
    assert "1 GB" in cards.nth(0).inner_text()
    assert page.locator("#top-up").is_visible()
    no_horizontal_scroll(page)
    shot(page, "home-phone-zh-hans")
    page.click("#top-up")
    page.wait_for_load_state()
    assert page.url.endswith("/topup")


def test_home_on_a_desktop_in_english(site: str, desktop: Any) -> None:
    page = desktop("en")
    page.goto(f"{site}/")
    assert page.locator("html").get_attribute("lang") == "en"
    assert "Top up your data card in seconds" in page.inner_text("main")
    assert "day-1g" in page.locator("li.plan").nth(0).inner_text()
    # Three plan cards side by side on a wide screen.
    tops = {round(page.locator("li.plan").nth(i).bounding_box()["y"]) for i in range(3)}
    assert len(tops) == 1
    shot(page, "home-desktop-en")


def test_log_in_with_a_code_on_a_phone(site: str, phone: Any) -> None:
    page = phone("zh-hans")
    page.goto(f"{site}/help")
    page.click("header a[href^='/login']")
    page.wait_for_load_state()
    shot(page, "login-phone-zh-hans")
    start = len(memory.outbox)
    page.fill("#id_identity", "13800138000")
    page.click("button.primary")
    page.wait_for_url(re.compile(r"/login/code"))
    assert "+8613800138000" in page.inner_text("#code-sent")
    [message] = [m for m in memory.outbox[start:] if m.recipient == "+8613800138000"]
    code = CODE.search(message.body).group(1)  # type: ignore[union-attr]

    page.fill("#id_code", f"{(int(code) + 1) % 1000000:06d}")
    page.click("button.primary")
    page.wait_for_load_state()
    assert page.locator(".field.invalid .errorlist").is_visible()
    shot(page, "login-wrong-code-phone-zh-hans")

    page.fill("#id_code", code)
    page.click("button.primary")
    page.wait_for_load_state()
    assert Customer.objects.get(phone="+8613800138000").language == "zh-hans"
    assert page.locator("header button.link").is_visible()  # the log-out button
    page.click("header button.link")
    page.wait_for_load_state()
    assert page.locator("header a[href^='/login']").is_visible()


def test_help_contact_form(site: str, phone: Any, desktop: Any) -> None:
    page = phone("zh-hans")
    page.goto(f"{site}/help")
    page.click("#fake summary")
    assert page.locator("#fake a[href='/verify/agent']").is_visible()
    page.fill("#id_reply_to", "nope")
    page.fill("#id_message", "short")
    page.click("#contact button.primary")
    page.wait_for_load_state()
    assert page.locator(".field.invalid").count() == 2
    shot(page, "help-errors-phone-zh-hans")
    page.fill("#id_reply_to", "li@example.com")
    page.fill("#id_message", "我的日租卡付款后没有到账。")
    page.click("#contact button.primary")
    page.wait_for_load_state()
    ticket = SupportTicket.objects.get()
    assert ticket.reply_to == "li@example.com"
    assert ticket.language == "zh-hans"
    # The form lands the user on its result: the confirmation is on the phone's screen
    # after the redirect, not at the top of a page scrolled down to the form.
    sent = page.locator("#contact-sent")
    assert f"#{ticket.pk}" in sent.inner_text()
    box = page.evaluate(
        "(() => { const r = document.getElementById('contact-sent').getBoundingClientRect();"
        " return {top: r.top, bottom: r.bottom, height: window.innerHeight}; })()"
    )
    assert box["height"] == 844
    assert 0 <= box["top"] < box["bottom"] <= box["height"], box
    assert page.evaluate("window.scrollY") > 0  # scrolled to it: the section is far down
    page.screenshot(path=str(ARTIFACTS / "help-sent-phone-zh-hans-viewport.png"))
    no_horizontal_scroll(page)
    shot(page, "help-sent-phone-zh-hans")

    english = desktop("en")
    english.goto(f"{site}/help")
    english.click("#device-id summary")
    shot(english, "help-desktop-en")


def test_verify_an_agent(site: str, phone: Any, desktop: Any) -> None:
    alice = Reseller.objects.get(name="Alice Mobile")
    page = phone("zh-hans")
    page.goto(f"{site}/")
    page.click("footer a[href='/verify/agent']")
    page.wait_for_load_state()
    page.fill("#code", alice.code.lower())
    page.click("main button.primary")
    page.wait_for_load_state()
    assert page.locator("#result").get_attribute("data-outcome") == "authorised"
    assert "Alice Mobile" in page.inner_text("#result")
    shot(page, "verify-agent-phone-zh-hans")

    english = desktop("en")
    english.goto(f"{site}/verify/agent?code=AGFAKE2345")
    assert english.locator("#result").get_attribute("data-outcome") == "unknown"
    assert "Not an authorised agent" in english.inner_text("#result")
    shot(english, "verify-agent-unknown-desktop-en")


def test_the_app_installs_and_works_offline(site: str, phone: Any) -> None:
    page = phone("zh-hans")
    page.goto(f"{site}/")
    manifest = page.evaluate(
        "fetch(document.querySelector('link[rel=manifest]').href).then(r => r.json())"
    )
    assert manifest["display"] == "standalone"
    scope = page.evaluate("navigator.serviceWorker.ready.then(r => r.scope)")
    assert scope == f"{site}/"
    page.reload()
    page.wait_for_function("navigator.serviceWorker.controller !== null")
    assert page.evaluate("navigator.serviceWorker.controller.scriptURL") == f"{site}/sw.js"
    cached = page.evaluate(
        "caches.keys().then(ks => Promise.all(ks.map(k => caches.open(k)"
        ".then(c => c.keys())))).then(lists => lists.flat().map(r => new URL(r.url).pathname))"
    )
    assert "/offline" in cached
    assert "/static/web/site.css" in cached
    assert not any(path.startswith(("/api/", "/my/", "/login")) for path in cached)

    page.context.set_offline(True)
    page.goto(f"{site}/help")
    assert page.locator("#offline").is_visible()
    assert page.locator("html").get_attribute("lang") == "zh-Hans"
    # The stylesheet still applies (from the cache): the header is blue.
    colour = page.evaluate("getComputedStyle(document.querySelector('header.top')).backgroundColor")
    assert colour == "rgb(11, 87, 208)"
    shot(page, "offline-phone-zh-hans")
    page.context.set_offline(False)
    page.click("#offline a.button")
    page.wait_for_load_state()
    assert page.locator("#faq-heading").is_visible()
