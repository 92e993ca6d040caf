"""Paying the way the device pays, and honest states (issue 13, points 4 and 5), in a real
browser: an iPhone's Safari at 390×844 in zh-Hans (a phone's User-Agent on the browser
context) is offered Alipay first (preselected), then WeChat Pay, then the bank card; a card
payment declined on the gateway's page lands on "未支付——没有扣款" with the other ways to pay
one tap away, and Alipay from there reaches the confirmation with Alipay preselected.
Screenshots in test-artifacts/screenshots/pay-surface-*.png.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from simtopup.orders.models import Order, OrderStatus
from tests.e2e.conftest import LOCALES, shot
from tests.support import iccid

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


@pytest.fixture
def iphone(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(
        viewport={"width": 390, "height": 844},
        user_agent=IPHONE,
        locale=LOCALES["zh-hans"],
        extra_http_headers={"Accept-Language": "zh-hans"},
        is_mobile=True,
        has_touch=True,
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def methods(page: Any) -> list[tuple[str, bool]]:
    radios = page.locator("input[name=payment_method]")
    return [
        (radios.nth(i).get_attribute("value"), radios.nth(i).is_checked())
        for i in range(radios.count())
    ]


def test_a_phone_is_offered_its_apps_first_and_a_decline_says_nothing_was_charged(
    site: str, iphone: Any
) -> None:
    page = iphone
    number = iccid(3)
    page.goto(f"{site}/topup/device?plan=day-1g")
    page.fill("#id_device", number)
    page.click("form.card button[type=submit]")

    page.wait_for_selector("form.pay")
    assert methods(page) == [
        ("alipay", True),
        ("wechat_pay", False),
        ("card", False),
    ]
    labels = page.inner_text("form.pay")
    assert labels.index("支付宝") < labels.index("微信支付") < labels.index("银行卡")
    shot(page, "pay-surface-1-methods-phone-zh-hans")

    page.check("input[value=card]")
    page.click("form.pay button[type=submit]")
    page.wait_for_url("**/sandbox/checkout/**")
    page.click("button.decline")

    page.wait_for_url("**/orders/*/status*")
    outcome = page.inner_text("[data-testid=outcome]")
    assert outcome.strip() == "未支付——没有扣款"
    body = page.inner_text("main")
    assert "退款" not in body
    assert "继续支付" not in body
    retry = page.locator("[data-testid=retry] [data-method]")
    assert [retry.nth(i).get_attribute("data-method") for i in range(retry.count())] == [
        "alipay",
        "wechat_pay",
        "card",
    ]
    assert retry.nth(0).inner_text().strip() == "改用支付宝"
    # Buttons a thumb can hit, not touching one another.
    first, second = retry.nth(0).bounding_box(), retry.nth(1).bounding_box()
    assert first is not None
    assert second is not None
    assert first["height"] >= 40
    assert second["y"] >= first["y"] + first["height"] + 4
    shot(page, "pay-surface-2-declined-phone-zh-hans")
    order = Order.objects.get(device__iccid=number)
    assert order.status == OrderStatus.FAILED

    # 改用支付宝 pays the same order: a second attempt, on the gateway's page.
    retry.nth(0).click()
    page.wait_for_url("**/sandbox/checkout/**")
    assert Order.objects.filter(device__iccid=number).count() == 1
    assert [p.method for p in order.payments.order_by("pk")] == ["card", "alipay"]
    shot(page, "pay-surface-3-retry-phone-zh-hans")
