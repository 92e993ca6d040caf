"""Paying the way the device pays, and honest states (issue 13, points 4 and 5).

Where the payer is comes from the User-Agent (payments/surface.py); the methods are offered
in that surface's order, the first preselected, the card's credit only when it covers the
price. The status page says what happened to the money: declined → nothing was charged and
the other ways to pay one tap away; paid → never an offer to pay again; failed after payment
→ where the refund goes and when. Through the sandbox gateway (the real providers' flows per
surface are tested against their fakes in test_provider_alipay.py / test_provider_wechatpay.py).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from simtopup.orders.models import Order, OrderStatus
from simtopup.payments.models import Payment, PaymentStatus
from simtopup.payments.providers.base import DESKTOP, PHONE, WECHAT
from simtopup.payments.surface import methods_for, surface_of
from tests.payments_support import (
    assert_ledger_clean,
    bind,
    give_credit,
    pay_on_page,
    run_tasks,
    sandbox_direct,  # noqa: F401  (fixture)
)
from tests.support import Actors
from tests.web_support import browser, customer, query_of, text

pytestmark = pytest.mark.usefixtures("sandbox_direct")

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Mobile Safari/537.36"
)
WECHAT_ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; V2307A) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/111.0.5563.116 Mobile Safari/537.36 XWEB/1160117 MMWEBSDK/20240301 "
    "MMWEBID/1234 MicroMessenger/8.0.49.2600(0x28003133) WeChat/arm64 Weixin NetType/WIFI "
    "Language/zh_CN ABI/arm64"
)
WECHAT_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.48(0x18003030) NetType/WIFI "
    "Language/zh_CN"
)
WECHAT_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/81.0.4044.138 Safari/537.36 NetType/WIFI MicroMessenger/7.0.20.1781(0x6700143B) "
    "WindowsWechat(0x63090a13) XWEB/9129"
)
HARMONY = (
    "Mozilla/5.0 (Phone; OpenHarmony 4.1) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/114.0.0.0 Safari/537.36 ArkWeb/4.1.6.1 Mobile HuaweiBrowser/5.0.4.300"
)
WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15"
)


@pytest.mark.parametrize(
    ("user_agent", "surface"),
    [
        (IPHONE, PHONE),
        (ANDROID, PHONE),
        (HARMONY, PHONE),
        (WECHAT_ANDROID, WECHAT),
        (WECHAT_IPHONE, WECHAT),
        (WECHAT_WINDOWS, DESKTOP),  # WeChat on a computer: the phone scans
        (WINDOWS, DESKTOP),
        (MAC, DESKTOP),
        ("", DESKTOP),
        (None, DESKTOP),
        ("curl/8.5.0", DESKTOP),
    ],
)
def test_it_tells_where_the_payer_is_from_the_user_agent(
    user_agent: str | None, surface: str
) -> None:
    assert surface_of(user_agent) == surface


ALL = ["card", "alipay", "wechat_pay"]


def test_it_orders_the_methods_for_each_surface() -> None:
    assert methods_for(PHONE, ALL) == ["alipay", "wechat_pay", "card"]
    assert methods_for(DESKTOP, ALL) == ["alipay", "wechat_pay", "card"]
    # Inside WeChat: WeChat Pay (JSAPI) first once the payer's openid is known; Alipay's
    # pages do not open in WeChat's browser.
    assert methods_for(WECHAT, ALL, wechat_openid=True) == ["wechat_pay", "card"]
    assert methods_for(WECHAT, ALL) == ["card"]
    # Only what a provider serves now.
    assert methods_for(PHONE, ["card"]) == ["card"]


def test_the_cards_credit_is_offered_only_when_it_covers_the_price() -> None:
    assert methods_for(PHONE, ALL, credit=500, price=500)[-1] == "balance"
    assert "balance" not in methods_for(PHONE, ALL, credit=499, price=500)
    assert "balance" not in methods_for(PHONE, ALL, credit=0, price=500)
    assert "balance" not in methods_for(PHONE, ALL, credit=None, price=500)


# --- the confirmation page ------------------------------------------------------------------


def confirmation(client: Client, device: str, plan: str = "day-1g") -> str:
    response = client.post("/topup/device", {"plan": plan, "device": device})
    assert response.status_code == 302, text(response)[:2000]
    return query_of(response["Location"], "c")


def offered(page: Any) -> list[tuple[str, bool]]:
    """The methods' radio buttons in page order, and whether each is checked."""
    inputs = re.findall(r'<input[^>]*name="payment_method"[^>]*>', text(page))
    return [
        (re.search(r'value="([^"]+)"', tag).group(1), " checked" in tag)  # type: ignore[union-attr]
        for tag in inputs
    ]


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        (IPHONE, ["alipay", "wechat_pay", "card"]),
        (WINDOWS, ["alipay", "wechat_pay", "card"]),
        (WECHAT_IPHONE, ["card"]),
    ],
)
def test_the_confirmation_offers_the_surfaces_methods_first_one_preselected(
    actors: Actors, user_agent: str, expected: list[str]
) -> None:
    client = browser()
    token = confirmation(client, actors.device.iccid)
    page = client.get(f"/topup/confirm?c={token}", headers={"User-Agent": user_agent})
    assert page.status_code == 200
    assert [m for m, _ in offered(page)] == expected
    assert [m for m, checked in offered(page) if checked] == [expected[0]]


def test_the_owner_sees_the_cards_credit_only_when_it_covers_the_price(actors: Actors) -> None:
    me = customer()
    bind(actors.device, me)
    client = browser(me)
    token = confirmation(client, actors.device.iccid)
    headers = {"User-Agent": IPHONE}
    assert "balance" not in dict(offered(client.get(f"/topup/confirm?c={token}", headers=headers)))
    give_credit(actors.device, 499, "test:credit-1")
    assert "balance" not in dict(offered(client.get(f"/topup/confirm?c={token}", headers=headers)))
    give_credit(actors.device, 1, "test:credit-2")  # 5.00: the price of day-1g
    page = client.get(f"/topup/confirm?c={token}", headers=headers)
    assert offered(page) == [
        ("alipay", True),
        ("wechat_pay", False),
        ("card", False),
        ("balance", False),
    ]


def test_a_phone_goes_to_the_payment_page_on_the_phone_not_to_a_qr_code(
    actors: Actors,
) -> None:
    client = browser()
    token = confirmation(client, actors.device.iccid)
    paid = client.post(
        "/topup/confirm",
        {"confirmation": token, "payment_method": "wechat_pay"},
        headers={"User-Agent": ANDROID},
    )
    payment = Payment.objects.get()
    assert payment.qr_data == ""
    assert paid.status_code == 302
    assert paid["Location"] == payment.checkout_url  # straight to the page, on this phone


def test_a_desktop_is_shown_the_qr_code_to_scan_with_a_phone(actors: Actors) -> None:
    client = browser()
    token = confirmation(client, actors.device.iccid)
    paid = client.post(
        "/topup/confirm",
        {"confirmation": token, "payment_method": "wechat_pay"},
        headers={"User-Agent": WINDOWS},
    )
    payment = Payment.objects.get()
    assert payment.qr_data
    assert paid["Location"].startswith(f"/orders/{payment.order_id}/status")
    page = text(client.get(paid["Location"]))
    assert "Scan this QR code with WeChat on your phone to pay:" in page
    assert "<svg" in page


# --- honest states --------------------------------------------------------------------------


def pay_and_decline(client: Client, device: str, method: str = "card") -> tuple[Order, str]:
    token = confirmation(client, device)
    paid = client.post(
        "/topup/confirm",
        {"confirmation": token, "payment_method": method},
        headers={"User-Agent": IPHONE},
    )
    back = pay_on_page(paid["Location"], "decline")
    returned = client.get(back["Location"].split("127.0.0.1:8000")[-1])
    run_tasks()
    return Order.objects.get(), returned["Location"]


@pytest.mark.parametrize(
    ("language", "heading", "label"),
    [
        ("en", "Not paid — nothing was charged", "Not paid"),
        ("zh-hans", "未支付——没有扣款", "未支付"),
        ("zh-hant", "未付款——沒有扣款", "未付款"),
    ],
)
def test_a_declined_payment_says_nothing_was_charged_and_offers_the_other_ways(
    actors: Actors, language: str, heading: str, label: str
) -> None:
    client = browser(language=language)
    order, status_url = pay_and_decline(client, actors.device.iccid)
    assert order.status == OrderStatus.FAILED
    assert order.payment.status == PaymentStatus.FAILED

    page = client.get(status_url, headers={"User-Agent": IPHONE})
    body = text(page)
    assert heading in body
    assert "refunded" not in body.lower()
    assert "退款" not in body
    buttons = re.findall(
        r'<form method="post" action="([^"]+)">.*?data-method="([^"]+)"', body, re.S
    )
    # The other ways first, for a phone; the declined card last.
    assert [m for _url, m in buttons] == ["alipay", "wechat_pay", "card"]
    token_q = query_of(status_url, "t")
    polled = client.get(f"/orders/{order.pk}/status.json?t={token_q}").json()
    assert (polled["label"], polled["final"]) == (label, True)

    # An old link (GET): a new confirmation of the same card and plan, Alipay preselected;
    # Pay places it. The buttons post to the same order (tests/test_payment_retry.py).
    retry_url = buttons[0][0].replace("&amp;", "&")
    confirm = client.get(retry_url, headers={"User-Agent": IPHONE})
    assert confirm.status_code == 302
    page = client.get(confirm["Location"], headers={"User-Agent": IPHONE})
    assert [m for m, checked in offered(page) if checked] == ["alipay"]
    token = query_of(confirm["Location"], "c")
    paid = client.post(
        "/topup/confirm",
        {"confirmation": token, "payment_method": "alipay"},
        headers={"User-Agent": IPHONE},
    )
    assert paid.status_code == 302
    second = Order.objects.exclude(pk=order.pk).get()
    assert (second.device_id, second.plan_id, second.payment_method) == (
        order.device_id,
        order.plan_id,
        "alipay",
    )
    pay_on_page(paid["Location"])
    run_tasks()
    second.refresh_from_db()
    assert second.status == OrderStatus.FULFILLED
    assert_ledger_clean()


def test_retrying_an_order_that_was_paid_offers_nothing(actors: Actors) -> None:
    client = browser()
    token = confirmation(client, actors.device.iccid)
    paid = client.post("/topup/confirm", {"confirmation": token, "payment_method": "card"})
    pay_on_page(paid["Location"])
    run_tasks()
    order = Order.objects.get()
    assert order.status == OrderStatus.FULFILLED
    token_q = order_link(order)
    again = client.get(f"/topup/retry/{order.pk}?m=alipay&t={token_q}")
    assert again.status_code == 302
    assert again["Location"].startswith(f"/orders/{order.pk}/status")
    assert Order.objects.count() == 1


def order_link(order: Order) -> str:
    from simtopup.web.customer.common import order_token

    return order_token(order.pk)


PAY_AGAIN = ("Continue to payment", "Open the payment page", "Scan this QR code")


@pytest.mark.parametrize("status", [OrderStatus.PAID, OrderStatus.FULFILLING])
def test_once_the_provider_has_the_payment_the_page_never_offers_to_pay(
    actors: Actors, status: str
) -> None:
    client = browser()
    token = confirmation(client, actors.device.iccid)
    client.post("/topup/confirm", {"confirmation": token, "payment_method": "wechat_pay"})
    order = Order.objects.get()
    assert text(client.get(f"/orders/{order.pk}/status?t={order_link(order)}")).count(
        "Scan this QR code"
    )  # awaiting payment: the QR code is there
    # The provider has it (the notification applied), fulfilment not done yet.
    Payment.objects.filter(order=order).update(
        status=PaymentStatus.SUCCEEDED, captured_at=timezone.now()
    )
    Order.objects.filter(pk=order.pk).update(status=status, paid_at=timezone.now())
    body = text(client.get(f"/orders/{order.pk}/status?t={order_link(order)}"))
    assert "Paid — crediting the card…" in body
    assert not any(words in body for words in PAY_AGAIN)
    assert "<svg" not in body


def test_returning_from_the_provider_asks_it_at_once(actors: Actors, settings: Any) -> None:
    """The payer is back before the notification: the provider is asked, so the page shows
    the payment it has, not "awaiting payment" with an offer to pay again."""
    settings.SANDBOX_WEBHOOK_DELIVERY = "task"  # the notification has not arrived yet
    client = browser()
    token = confirmation(client, actors.device.iccid)
    paid = client.post("/topup/confirm", {"confirmation": token, "payment_method": "card"})
    back = pay_on_page(paid["Location"])
    order = Order.objects.get()
    assert order.status == OrderStatus.AWAITING_PAYMENT
    returned = client.get(back["Location"].split("127.0.0.1:8000")[-1])
    order.refresh_from_db()
    assert order.status != OrderStatus.AWAITING_PAYMENT
    body = text(client.get(returned["Location"]))
    assert not any(words in body for words in PAY_AGAIN)


@pytest.mark.parametrize(
    ("method", "where", "when"),
    [
        ("card", "the bank card you paid with", "within 5 to 10 working days"),
        ("alipay", "your Alipay account", "within 3 working days"),
        ("wechat_pay", "your WeChat Pay balance", "within 1 to 3 working days"),
    ],
)
def test_failed_after_payment_says_where_the_refund_goes_and_when(
    actors: Actors, method: str, where: str, when: str
) -> None:
    client = browser()
    token = confirmation(client, actors.device.iccid)
    client.post(
        "/topup/confirm",
        {"confirmation": token, "payment_method": method},
        headers={"User-Agent": IPHONE},
    )
    order = Order.objects.get()
    Payment.objects.filter(order=order).update(status=PaymentStatus.REFUNDED)
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.REFUNDED)
    body = text(client.get(f"/orders/{order.pk}/status?t={order_link(order)}"))
    assert "The top-up could not be credited, so ¥5.00 goes back to" in body
    assert where in body
    assert when in body
    assert "nothing was charged" not in body
    assert not any(words in body for words in PAY_AGAIN)


def test_credit_paid_orders_go_back_to_the_credit_at_once(actors: Actors) -> None:
    me = customer()
    bind(actors.device, me)
    give_credit(actors.device, 500, "test:credit")
    client = browser(me)
    token = confirmation(client, actors.device.iccid)
    client.post("/topup/confirm", {"confirmation": token, "payment_method": "balance"})
    order = Order.objects.get()
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.REFUNDED)
    body = text(client.get(f"/orders/{order.pk}/status"))
    assert "goes back to the card&#x27;s credit" in body or "goes back to the card's credit" in body
    assert "It is there now." in body


# --- the app API --------------------------------------------------------------------------


def test_the_app_api_takes_where_the_payer_is(actors: Actors) -> None:
    from tests.payments_support import app, make_customer, post_json

    token, _ann = make_customer("+8613700000001")
    body = {"device": actors.device.iccid, "plan": "day-1g", "payment_method": "wechat_pay"}
    on_phone = post_json(app(token), "/api/v1/orders", {**body, "surface": "phone"}).json()
    assert on_phone["payment"]["qr_data"] is None  # the page on this phone, not a QR code
    assert on_phone["payment"]["checkout_url"]
    on_desktop = post_json(app(token), "/api/v1/orders", {**body, "surface": "desktop"}).json()
    assert on_desktop["payment"]["qr_data"]
    wrong = post_json(app(token), "/api/v1/orders", {**body, "surface": "tablet"})
    assert wrong.status_code == 422
    assert wrong["Content-Type"].startswith("application/problem+json")
    assert Order.objects.count() == 2


def test_history_says_a_declined_order_was_not_paid_not_refunded(actors: Actors) -> None:
    me = customer()
    bind(actors.device, me)
    client = browser(me)
    order, _status_url = pay_and_decline(client, actors.device.iccid)
    assert order.status == OrderStatus.FAILED
    history = text(client.get("/my/orders"))
    assert "Not paid" in history
    assert "Failed, refunded" not in history
    csv_text = client.get("/my/orders.csv").content.decode("utf-8-sig")
    assert "Not paid" in csv_text
    assert "Failed, refunded" not in csv_text
