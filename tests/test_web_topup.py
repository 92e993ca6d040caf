"""Website top-up: plan → device → confirmation → pay → status page → receipt.

Visitors (no login) pay for any card by card / Alipay / WeChat Pay through a signed
confirmation; customers' confirmations are stored quotes and may pay with their own card's
credit. One confirmation places one order however often "Pay" is pressed.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.core import signing
from django.test import Client
from django.utils import timezone

from simtopup.catalog.models import Plan
from simtopup.core.models import IdempotencyRecord
from simtopup.orders.models import Order, OrderStatus, Quote
from simtopup.payments import checkout
from simtopup.payments.models import Payment
from simtopup.usage.bundles import remaining_bytes
from simtopup.web.customer.common import order_token
from simtopup.web.customer.topup import CONFIRMATION_SALT, IDEMPOTENCY_SCOPE
from tests.payments_support import (
    assert_ledger_clean,
    bind,
    credit_of,
    give_credit,
    pay_on_page,
    run_tasks,
    sandbox_direct,  # noqa: F401  (fixture)
)
from tests.support import GB, Actors, iccid
from tests.web_support import (
    LANGUAGES,
    browser,
    csrf_token,
    customer,
    field_errors,
    form_errors,
    query_of,
    text,
)

pytestmark = pytest.mark.usefixtures("sandbox_direct")


def confirmation(client: Client, device: str, plan: str = "day-1g") -> str:
    """Steps 1–2: the signed confirmation for ``device`` and ``plan``."""
    response = client.post("/topup/device", {"plan": plan, "device": device})
    assert response.status_code == 302, text(response)[:3000]
    assert response["Location"].startswith("/topup/confirm?")
    return query_of(response["Location"], "c")


def pay(client: Client, token: str, method: str) -> Any:
    return client.post("/topup/confirm", {"confirmation": token, "payment_method": method})


@pytest.mark.parametrize("language", LANGUAGES)
def test_it_lists_the_plans_in_every_language(actors: Actors, language: str) -> None:
    page = browser(language=language).get("/topup")
    assert page.status_code == 200
    body = text(page)
    names = {"en": "day-1g", "zh-hans": "day-1g 简", "zh-hant": "day-1g 繁"}
    assert names[language] in body
    assert "¥5.00" in body
    assert "¥59.00" in body
    assert "¥50.00" in body
    assert 'href="/topup/device?plan=month-20g"' in body


@pytest.mark.parametrize("language", LANGUAGES)
def test_it_renders_the_device_and_confirmation_steps_in_every_language(
    actors: Actors, language: str
) -> None:
    client = browser(language=language)
    step2 = client.get("/topup/device?plan=day-1g")
    assert step2.status_code == 200
    assert 'name="device"' in text(step2)
    token = confirmation(client, actors.device.iccid)
    step3 = client.get(f"/topup/confirm?c={token}")
    assert step3.status_code == 200
    assert actors.device.masked in text(step3)
    assert actors.device.iccid not in text(step3)


def test_a_visitor_pays_for_a_card_and_follows_it_until_credited(actors: Actors) -> None:
    client = browser()
    token = confirmation(client, " ".join(actors.device.iccid[i : i + 4] for i in range(0, 20, 4)))
    page = client.get(f"/topup/confirm?c={token}")
    body = text(page)
    assert "¥5.00" in body
    assert 'value="balance"' not in body  # a visitor cannot spend a card's credit
    assert not Quote.objects.exists()

    paid = pay(client, token, "alipay")
    assert paid.status_code == 302
    order = Order.objects.get()
    assert (order.customer, order.channel, order.status) == (
        None,
        "web",
        OrderStatus.AWAITING_PAYMENT,
    )
    assert order.payment_method == "alipay"
    assert order.amount == 500
    assert paid["Location"] == order.payment.checkout_url

    back = pay_on_page(paid["Location"])
    returned = client.get(back["Location"].split("127.0.0.1:8000")[-1])
    assert returned.status_code == 302
    status_url = returned["Location"]
    assert status_url.startswith(f"/orders/{order.pk}/status?t=")
    # Back from the provider's page, the provider is asked at once: the payment it has is
    # applied before its notification arrives (and credited at once by the built-in
    # network), never shown as still to be paid.
    token_q = query_of(status_url, "t")
    polled = client.get(f"/orders/{order.pk}/status.json?t={token_q}").json()
    assert polled == {"status": "fulfilled", "final": True, "label": "Credited"}

    run_tasks()  # the gateway's webhook: already applied, changes nothing

    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED
    assert remaining_bytes(actors.device) == 1 * GB
    polled = client.get(f"/orders/{order.pk}/status.json?t={token_q}").json()
    assert polled["status"] == "fulfilled"
    assert polled["final"] is True
    done = text(client.get(status_url))
    assert "Credited" in done
    assert order.receipt_no in done
    assert "web/status.js" not in done  # nothing left to wait for
    receipt = client.get(f"/orders/{order.pk}/receipt.pdf?t={token_q}")
    assert receipt.status_code == 200
    assert receipt["Content-Type"] == "application/pdf"
    assert receipt.content.startswith(b"%PDF")
    assert f"receipt-{order.receipt_no}.pdf" in receipt["Content-Disposition"]
    assert_ledger_clean()


def test_the_status_page_and_receipt_need_the_signed_link_or_the_owner(actors: Actors) -> None:
    client = browser()
    pay(client, confirmation(client, actors.device.iccid), "card")
    order = Order.objects.get()
    stranger = browser()
    for path in (
        f"/orders/{order.pk}/status",
        f"/orders/{order.pk}/status.json",
        f"/orders/{order.pk}/receipt.pdf",
        f"/orders/{order.pk}/status?t=forged",
        f"/orders/{order.pk}/status?t={order_token(order.pk + 1)}",
        f"/orders/{order.pk + 1}/status?t={order_token(order.pk + 1)}",
    ):
        assert stranger.get(path).status_code == 404, path
    # A logged-in customer sees nothing of someone else's order either.
    assert browser(customer()).get(f"/orders/{order.pk}/status").status_code == 404
    assert stranger.get(f"/orders/{order.pk}/status?t={order_token(order.pk)}").status_code == 200
    # No receipt before it is credited.
    early = stranger.get(f"/orders/{order.pk}/receipt.pdf?t={order_token(order.pk)}")
    assert early.status_code == 409
    assert early["Content-Type"].startswith("text/html")


def test_a_typo_in_the_device_id_is_shown_next_to_the_field(actors: Actors) -> None:
    number = actors.device.iccid
    wrong = number[:-1] + str((int(number[-1]) + 1) % 10)
    for language, word in (
        ("en", "last digit doesn't match"),
        ("zh-hans", "最后一位"),
        ("zh-hant", "最後一位"),
    ):
        page = browser(language=language).post("/topup/device", {"plan": "day-1g", "device": wrong})
        assert page.status_code == 422
        errors = field_errors(page, "device")
        assert len(errors) == 1, errors
        assert word in errors[0], errors
    english = browser().post("/topup/device", {"plan": "day-1g", "device": wrong})
    assert "re-read" in field_errors(english, "device")[0]
    empty = browser().post("/topup/device", {"plan": "day-1g", "device": ""})
    assert field_errors(empty, "device") == ["Enter the device ID printed on the card."]
    unknown = browser().post("/topup/device", {"plan": "day-1g", "device": iccid(999)})
    assert "not one of our cards" in field_errors(unknown, "device")[0]
    assert not Quote.objects.exists()
    assert not Order.objects.exists()


def test_an_unknown_plan_goes_back_to_the_plans(actors: Actors) -> None:
    page = browser().get("/topup/device?plan=nope")
    assert page.status_code == 302
    assert page["Location"] == "/topup"


def test_pressing_pay_twice_places_one_order(actors: Actors) -> None:
    client = browser()
    token = confirmation(client, actors.device.iccid)
    first = pay(client, token, "card")
    second = pay(client, token, "card")
    assert Order.objects.count() == 1
    assert Payment.objects.count() == 1
    assert first["Location"] == second["Location"] == Payment.objects.get().checkout_url


def test_a_tampered_or_stale_confirmation_is_refused(actors: Actors) -> None:
    client = browser()
    token = confirmation(client, actors.device.iccid)
    data = signing.loads(token, salt=CONFIRMATION_SALT)
    forged = signing.dumps({**data, "a": 1}, salt="another-salt", compress=True)
    for bad in (forged, token[:-3] + "xyz", ""):
        response = pay(client, bad, "card")
        assert response.status_code == 302
        assert response["Location"] == "/topup"
    # Logged in since: the visitor's confirmation is not the customer's.
    assert pay(browser(customer()), token, "card")["Location"] == "/topup"
    assert not Order.objects.exists()


def test_a_visitor_never_pays_another_price_than_confirmed(actors: Actors) -> None:
    client = browser()
    token = confirmation(client, actors.device.iccid)
    Plan.objects.filter(code="day-1g").update(price=700)
    response = pay(client, token, "card")
    assert response.status_code == 302
    assert response["Location"] == "/topup/device?plan=day-1g"
    assert not Order.objects.exists()
    again = client.get(response["Location"])
    assert "price of this plan has changed" in text(again)


def test_a_visitor_cannot_pay_with_a_cards_credit(actors: Actors) -> None:
    client = browser()
    response = pay(client, confirmation(client, actors.device.iccid), "balance")
    assert response.status_code == 422
    assert field_errors(response, "payment_method")
    assert not Order.objects.exists()


def test_a_customer_pays_with_the_cards_credit_at_the_quoted_price(actors: Actors) -> None:
    me = customer()
    bind(actors.device, me)
    give_credit(actors.device, 1000, "test:credit")
    client = browser(me)
    step2 = client.get(f"/topup/device?plan=day-1g&device={actors.device.pk}")
    assert f'value="{actors.device.pk}"' in text(step2)
    assert "checked" in text(step2)
    response = client.post("/topup/device", {"plan": "day-1g", "mine": actors.device.pk})
    token = query_of(response["Location"], "c")
    quote = Quote.objects.get()
    assert (quote.customer, quote.device, quote.amount) == (me, actors.device, 500)
    Plan.objects.filter(code="day-1g").update(price=900)  # the quote keeps its price
    page = client.get(f"/topup/confirm?c={token}")
    assert 'value="balance"' in text(page)
    assert "¥10.00" in text(page)
    paid = pay(client, token, "balance")
    order = Order.objects.get()
    assert paid["Location"] == f"/orders/{order.pk}/status"
    assert (order.status, order.amount, order.customer, order.channel) == (
        OrderStatus.FULFILLED,
        500,
        me,
        "web",
    )
    assert credit_of(actors.device) == 500
    status = client.get(paid["Location"])
    assert "Credited" in text(status)
    assert client.get(f"/orders/{order.pk}/receipt.pdf").content.startswith(b"%PDF")
    assert_ledger_clean()


def test_too_little_credit_is_not_offered(actors: Actors) -> None:
    me = customer()
    bind(actors.device, me)
    give_credit(actors.device, 100, "test:credit")
    client = browser(me)
    token = confirmation(client, actors.device.iccid)
    # Credit that does not cover the price is not offered, and not taken if sent anyway.
    assert 'value="balance"' not in text(client.get(f"/topup/confirm?c={token}"))
    response = pay(client, token, "balance")
    assert response.status_code == 422
    assert field_errors(response, "payment_method")
    assert not Order.objects.exists()
    assert credit_of(actors.device) == 100
    # The same confirmation still works with another method.
    assert pay(client, token, "card").status_code == 302
    assert Order.objects.get().payment_method == "card"


def test_a_customer_may_top_up_someone_elses_card_but_not_spend_its_credit(
    actors: Actors,
) -> None:
    owner, payer = customer(), customer("+8613800138001")
    bind(actors.device, owner)
    give_credit(actors.device, 1000, "test:credit")
    client = browser(payer)
    token = confirmation(client, actors.device.iccid)
    assert 'value="balance"' not in text(client.get(f"/topup/confirm?c={token}"))
    assert pay(client, token, "balance").status_code == 422
    assert credit_of(actors.device) == 1000
    assert pay(client, token, "wechat_pay").status_code == 302
    order = Order.objects.get()
    assert order.customer == payer
    # WeChat Pay: the status page shows the QR code to scan.
    page = client.get(f"/orders/{order.pk}/status")
    assert "<svg" in text(page)
    assert "WeChat" in text(page)


def test_the_app_payment_return_page_stays_for_app_orders(actors: Actors) -> None:
    client = browser()
    pay(client, confirmation(client, actors.device.iccid), "card")
    payment = Payment.objects.get()
    Order.objects.filter(pk=payment.order_id).update(channel="app")
    response = Client().get(f"/payments/return/{payment.reference}")
    assert response.status_code == 200


def test_csrf_is_enforced_on_every_step(actors: Actors) -> None:
    client = browser(csrf=True)
    assert client.post("/topup/device", {"plan": "day-1g", "device": "x"}).status_code == 403
    token = csrf_token(client, "/topup/device?plan=day-1g")
    response = client.post(
        "/topup/device",
        {"plan": "day-1g", "device": actors.device.iccid, "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302
    confirm = query_of(response["Location"], "c")
    assert pay(client, confirm, "card").status_code == 403
    assert not Order.objects.exists()
    assert form_errors(client.get(f"/topup/confirm?c={confirm}")) == []


def test_orders_without_a_customer_never_use_credit_or_quotes(actors: Actors) -> None:
    from simtopup.core.errors import DomainError

    with pytest.raises(DomainError) as credit:
        checkout.place_order(None, actors.device.iccid, "day-1g", "balance")
    assert credit.value.code == "not_device_owner"
    with pytest.raises(DomainError) as quoted:
        checkout.prepare_order(None, actors.device.iccid, "day-1g", "card", quote_id=1)
    assert quoted.value.code == "unknown_quote"
    assert not Order.objects.exists()


def test_a_press_that_outlived_its_lease_places_no_second_order(
    actors: Actors, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two presses of one confirmation: the first stalls while asking the provider until its
    lease runs out, a second press takes the key over and places the order. The first, going
    on, must not place a second one: both end on the one order."""
    token = confirmation(browser(), actors.device.iccid)
    real_prepare = checkout.prepare_order
    presses: list[str] = []
    second: list[Any] = []

    def stalled_past_the_lease(*args: Any, **kwargs: Any) -> Any:
        prepared = real_prepare(*args, **kwargs)
        presses.append("asked the provider")
        if len(presses) == 1:
            IdempotencyRecord.objects.filter(scope=IDEMPOTENCY_SCOPE).update(
                locked_until=timezone.now() - timedelta(seconds=1)
            )
            second.append(pay(browser(), token, "card"))
        return prepared

    monkeypatch.setattr(checkout, "prepare_order", stalled_past_the_lease)
    first = pay(browser(), token, "card")
    order = Order.objects.get()
    payment = Payment.objects.get(order=order)
    assert len(presses) == 2  # the second press did take the key over
    assert second[0].status_code == first.status_code == 302
    assert first["Location"] == second[0]["Location"] == payment.checkout_url
    record = IdempotencyRecord.objects.get(scope=IDEMPOTENCY_SCOPE)
    assert record.response_status == 201
    assert json.loads(record.response_body) == {"order": order.pk}
