"""WeChat Pay routed into the money path (local fake gateway, keys the tests generate):
Native QR order, signed and encrypted notification to our endpoint, credited once; a refund
WeChat Pay accepts as PROCESSING is confirmed later by its REFUND.SUCCESS notification."""

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
from tests.payment_keys import KeyPair, key_pair, wechat_signature_headers
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
from tests.test_provider_wechatpay import (
    MCHID,
    PUBLIC_KEY_ID,
    FakeWechatGateway,
    gateway,
    merchant_keys,
    notification,
    platform_keys,
    transaction,
)

pytestmark = pytest.mark.usefixtures("sandbox_direct", "wechat_routed")
__all__ = ["RefusingUpstream", "gateway", "merchant_keys", "platform_keys", "sandbox_direct"]
CODE_URL = "weixin://wxpay/bizpayurl?pr=p4lpSuKzz"


@pytest.fixture
def wechat_routed(settings: Any, gateway: FakeWechatGateway) -> None:
    settings.PAYMENT_ROUTES = {"wechat_pay": "wechatpay"}
    gateway.routes[("POST", "/v3/pay/transactions/native")] = (200, {"code_url": CODE_URL})


def place(actors: Actors, phone: str) -> dict[str, Any]:
    token, _c = make_customer(phone)
    response = post_json(
        app(token),
        "/api/v1/orders",
        {"device": actors.device.iccid, "plan": "day-1g", "payment_method": "wechat_pay"},
    )
    assert response.status_code == 201, response.content
    return response.json()


def notify(body: bytes, keys: KeyPair) -> Any:
    headers = wechat_signature_headers(body, keys, PUBLIC_KEY_ID)
    return Client().post(
        "/payments/webhooks/wechatpay",
        data=body,
        content_type="application/json",
        headers={k: v for k, v in headers.items() if k.lower() != "content-type"},
    )


def paid(payment: Payment, event_id: str = "EV-1", **changes: Any) -> bytes:
    amount = {"total": 500, "payer_total": 500, "currency": "CNY", "payer_currency": "CNY"}
    resource = transaction(**{"out_trade_no": payment.reference, "amount": amount, **changes})
    return notification(resource, event_id=event_id)


def test_a_wechat_pay_qr_payment_is_credited_once(
    actors: Actors, gateway: FakeWechatGateway, platform_keys: KeyPair
) -> None:
    order = place(actors, "+8613300000001")
    assert order["payment"]["provider"] == "wechatpay"
    assert order["payment"]["qr_data"] == CODE_URL
    [sent] = gateway.requests
    payment = Payment.objects.get()
    assert sent["json"]["out_trade_no"] == payment.reference
    assert sent["json"]["amount"] == {"total": 500, "currency": "CNY"}
    assert sent["json"]["notify_url"].endswith("/payments/webhooks/wechatpay")
    body = paid(payment)
    for _ in range(2):
        response = notify(body, platform_keys)
        assert response.status_code in (200, 204), response.content
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.FULFILLED
    assert Bundle.objects.count() == 1
    assert PaymentEvent.objects.get().outcome == EventOutcome.APPLIED
    assert_ledger_clean()


def test_forged_or_foreign_wechat_notifications_credit_nothing(
    actors: Actors, platform_keys: KeyPair
) -> None:
    place(actors, "+8613300000002")
    payment = Payment.objects.get()
    forged = notify(paid(payment), key_pair("wechat-forger"))
    assert forged.status_code >= 400
    underpaid = notify(
        paid(
            payment,
            event_id="EV-2",
            amount={"total": 1, "payer_total": 1, "currency": "CNY", "payer_currency": "CNY"},
        ),
        platform_keys,
    )
    assert underpaid.status_code in (200, 204)
    assert PaymentEvent.objects.get().outcome == EventOutcome.MISMATCH
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.PENDING
    assert not Bundle.objects.exists()
    assert_ledger_clean()


def test_a_processing_refund_is_confirmed_by_its_notification(
    actors: Actors, settings: Any, gateway: FakeWechatGateway, platform_keys: KeyPair
) -> None:
    settings.NETWORK_ADAPTER = "tests.test_payments_refunds.RefusingUpstream"
    gateway.routes[("POST", "/v3/refund/domestic/refunds")] = lambda sent: (
        200,
        {
            "refund_id": "50000000382019052709732678859",
            "out_refund_no": sent["json"]["out_refund_no"],
            "out_trade_no": sent["json"]["out_trade_no"],
            "channel": "ORIGINAL",
            "status": "PROCESSING",
            "amount": {"total": 500, "refund": 500, "currency": "CNY"},
        },
    )
    order = place(actors, "+8613300000003")
    payment = Payment.objects.get()
    assert notify(paid(payment), platform_keys).status_code in (200, 204)
    assert "retry" in run_tasks()  # fulfilment fails for good; WeChat Pay is processing
    refund = Refund.objects.get()
    assert refund.status == RefundStatus.PENDING
    assert refund.provider_refund_ref == "50000000382019052709732678859"
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.FAILED
    done = notification(
        {
            "mchid": MCHID,
            "out_trade_no": payment.reference,
            "transaction_id": "4200002026112612345678901234",
            "out_refund_no": refund.reference,
            "refund_id": "50000000382019052709732678859",
            "refund_status": "SUCCESS",
            "success_time": "2026-11-26T16:20:00+08:00",
            "user_received_account": "支付用户零钱",
            "amount": {"total": 500, "refund": 500, "payer_total": 500, "payer_refund": 500},
        },
        event_type="REFUND.SUCCESS",
        event_id="EV-REFUND-1",
    )
    assert notify(done, platform_keys).status_code in (200, 204)
    assert Refund.objects.get().status == RefundStatus.SUCCEEDED
    assert Payment.objects.get().status == PaymentStatus.REFUNDED
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.REFUNDED
    assert_ledger_clean()


# --- the payer's address, not the proxy's -------------------------------------------------


def test_wechat_pay_is_given_the_app_payer_s_address_behind_a_trusted_proxy(
    actors: Actors, settings: Any, gateway: FakeWechatGateway
) -> None:
    settings.CLIENT_IP_HEADER = "HTTP_X_FORWARDED_FOR"
    token, _c = make_customer("+8613300000010")
    response = post_json(
        app(token),  # the test client's REMOTE_ADDR, 127.0.0.1, is the proxy
        "/api/v1/orders",
        {"device": actors.device.iccid, "plan": "day-1g", "payment_method": "wechat_pay"},
        **{"X-Forwarded-For": "198.51.100.77"},
    )
    assert response.status_code == 201, response.content
    [sent] = gateway.requests
    assert sent["json"]["scene_info"] == {"payer_client_ip": "198.51.100.77"}


def test_wechat_pay_is_given_the_website_payer_s_address_behind_a_trusted_proxy(
    actors: Actors, settings: Any, gateway: FakeWechatGateway
) -> None:
    from tests.test_web_topup import confirmation
    from tests.web_support import browser

    settings.CLIENT_IP_HEADER = "HTTP_X_FORWARDED_FOR"
    client = browser()
    token = confirmation(client, actors.device.iccid)
    paid = client.post(
        "/topup/confirm",
        {"confirmation": token, "payment_method": "wechat_pay"},
        headers={"X-Forwarded-For": "203.0.113.200"},
    )
    assert paid.status_code == 302, paid.content
    assert Payment.objects.get().provider == "wechatpay"
    [sent] = gateway.requests
    assert sent["json"]["scene_info"] == {"payer_client_ip": "203.0.113.200"}
