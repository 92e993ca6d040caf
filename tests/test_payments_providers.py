"""A real provider routed into the money path: Alipay (against the local fake gateway and
keys the tests generate) — order, signed notify to our endpoint, credited once, answered
``success``; refunds go back through Alipay's refund API."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from simtopup.orders.models import Order, OrderStatus
from simtopup.payments.models import (
    EventOutcome,
    Payment,
    PaymentEvent,
    PaymentStatus,
    Refund,
    RefundStatus,
)
from simtopup.usage.models import Bundle
from tests.payment_keys import KeyPair
from tests.payments_support import (
    app,
    assert_ledger_clean,
    make_customer,
    post_json,
    run_tasks,
    sandbox_direct,
)
from tests.support import Actors
from tests.test_payments_refunds import RefusingUpstream
from tests.test_provider_alipay import (
    FORM,
    FakeAlipayGateway,
    alipay_keys,
    app_keys,
    gateway,
    notify_params,
    signed_body,
)

pytestmark = pytest.mark.usefixtures("sandbox_direct", "alipay_routed")
__all__ = ["RefusingUpstream", "alipay_keys", "app_keys", "gateway", "sandbox_direct"]


@pytest.fixture
def alipay_routed(settings: Any, gateway: FakeAlipayGateway) -> None:
    settings.PAYMENT_ROUTES = {"alipay": "alipay"}


def place(actors: Actors, phone: str) -> dict[str, Any]:
    token, _c = make_customer(phone)
    response = post_json(
        app(token),
        "/api/v1/orders",
        {"device": actors.device.iccid, "plan": "day-1g", "payment_method": "alipay"},
    )
    assert response.status_code == 201, response.content
    return response.json()


def notify(payment: Payment, keys: KeyPair, **changes: str) -> Any:
    amounts = {
        "total_amount": "5.00",
        "receipt_amount": "5.00",
        "buyer_pay_amount": "5.00",
        "invoice_amount": "5.00",
    }
    params = notify_params(**{"out_trade_no": payment.reference, **amounts, **changes})
    return Client().post(
        "/payments/webhooks/alipay",
        data=signed_body(params, keys),
        content_type=FORM["Content-Type"],
    )


def test_an_alipay_payment_is_credited_once(
    actors: Actors, gateway: FakeAlipayGateway, alipay_keys: KeyPair
) -> None:
    order = place(actors, "+8613400000001")
    assert order["payment"]["provider"] == "alipay"
    assert order["payment"]["checkout_url"].startswith(gateway.url + "?")
    payment = Payment.objects.get()
    for _ in range(3):  # Alipay repeats a notification until it reads "success"
        response = notify(payment, alipay_keys)
        assert response.status_code == 200
        assert response.content == b"success"
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.FULFILLED
    assert Bundle.objects.filter(order_id=order["id"]).count() == 1
    assert PaymentEvent.objects.get().outcome == EventOutcome.APPLIED
    payment.refresh_from_db()
    assert payment.provider_ref == "2026112622001446880501234567"  # Alipay's trade_no
    assert_ledger_clean()


def test_a_forged_or_mismatched_alipay_notification_credits_nothing(
    actors: Actors, app_keys: KeyPair, alipay_keys: KeyPair
) -> None:
    place(actors, "+8613400000002")
    payment = Payment.objects.get()
    forged = notify(payment, app_keys)  # signed, but not with Alipay's key
    assert forged.status_code == 400
    assert forged.content == b"fail"
    assert not PaymentEvent.objects.exists()
    cheap = notify(payment, alipay_keys, total_amount="0.01", notify_id="n-cheap")
    assert cheap.content == b"success"  # authentic: acknowledged, but not credited
    assert PaymentEvent.objects.get().outcome == EventOutcome.MISMATCH
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.PENDING
    assert payment.order.status == OrderStatus.AWAITING_PAYMENT
    assert not Bundle.objects.exists()
    assert_ledger_clean()


def test_a_failed_fulfilment_is_refunded_through_alipay(
    actors: Actors, settings: Any, gateway: FakeAlipayGateway, alipay_keys: KeyPair
) -> None:
    settings.NETWORK_ADAPTER = "tests.test_payments_refunds.RefusingUpstream"
    gateway.answers["alipay.trade.refund"] = lambda biz: {
        "code": "10000",
        "msg": "Success",
        "trade_no": "2026112622001446880501234567",
        "out_trade_no": biz["out_trade_no"],
        "refund_fee": biz["refund_amount"],
        "fund_change": "Y",
    }
    order = place(actors, "+8613400000003")
    payment = Payment.objects.get()
    assert notify(payment, alipay_keys).content == b"success"
    run_tasks()  # fulfilment fails for good → refund through Alipay
    refund = Refund.objects.get()
    assert refund.status == RefundStatus.SUCCEEDED
    [sent] = [r for r in gateway.requests if r["method"] == "alipay.trade.refund"]
    assert sent["biz_content"] == {
        "out_trade_no": payment.reference,
        "trade_no": "2026112622001446880501234567",  # learnt from the notification
        "refund_amount": "5.00",
        "out_request_no": refund.reference,
    }
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.REFUNDED
    assert Payment.objects.get().status == PaymentStatus.REFUNDED
    assert_ledger_clean()
