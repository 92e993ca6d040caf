"""Stripe routed into the money path (the SDK's HTTP client replaced by a fake, webhooks
signed with a test secret): Checkout Session, signed event to our endpoint, credited once,
refunded through Stripe when fulfilment fails."""

from __future__ import annotations

from typing import Any

import pytest
import stripe
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
from tests.test_provider_stripe import FakeStripe, _stripe_settings, intent, sign, stripe_event

pytestmark = pytest.mark.usefixtures("sandbox_direct", "stripe_routed")
__all__ = ["RefusingUpstream", "_stripe_settings", "sandbox_direct"]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeStripe:
    client = FakeStripe(
        {
            ("POST", "/v1/checkout/sessions"): (
                200,
                {
                    "id": "cs_test_a1",
                    "object": "checkout.session",
                    "url": "https://checkout.stripe.com/c/pay/cs_test_a1",
                    "status": "open",
                },
            )
        }
    )
    monkeypatch.setattr(stripe, "RequestsClient", lambda *args, **kwargs: client)
    return client


@pytest.fixture
def stripe_routed(settings: Any, fake: FakeStripe) -> None:
    settings.PAYMENT_ROUTES = {"card": "stripe"}


def place(actors: Actors, phone: str) -> dict[str, Any]:
    token, _c = make_customer(phone)
    response = post_json(
        app(token),
        "/api/v1/orders",
        {"device": actors.device.iccid, "plan": "day-1g", "payment_method": "card"},
    )
    assert response.status_code == 201, response.content
    return response.json()


def succeeded(payment: Payment, event_id: str = "evt_1", **changes: Any) -> bytes:
    obj = intent(
        "succeeded",
        **{
            "amount": 500,
            "amount_received": 500,
            "metadata": {"reference": payment.reference},
            **changes,
        },
    )
    return stripe_event("payment_intent.succeeded", obj, id=event_id)


def deliver(body: bytes, **kwargs: Any) -> Any:
    return Client().post(
        "/payments/webhooks/stripe",
        data=body,
        content_type="application/json",
        headers=sign(body, **kwargs),
    )


def test_a_stripe_card_payment_is_credited_once(actors: Actors, fake: FakeStripe) -> None:
    order = place(actors, "+8613200000001")
    assert order["payment"]["provider"] == "stripe"
    assert order["payment"]["checkout_url"] == "https://checkout.stripe.com/c/pay/cs_test_a1"
    payment = Payment.objects.get()
    assert fake.calls[0].form["metadata[reference]"] == payment.reference
    assert fake.calls[0].form["line_items[0][price_data][unit_amount]"] == "500"
    body = succeeded(payment)
    assert deliver(body).status_code == 200
    assert deliver(body).status_code == 200  # Stripe retries: a duplicate
    other = stripe_event(
        "charge.succeeded", {"id": "ch_1", "metadata": {"reference": payment.reference}}
    )
    assert deliver(other).status_code == 200  # stored, ignored
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.FULFILLED
    assert Bundle.objects.count() == 1
    assert sorted(PaymentEvent.objects.values_list("outcome", flat=True)) == [
        EventOutcome.APPLIED,
        EventOutcome.IGNORED,
    ]
    payment.refresh_from_db()
    assert payment.provider_ref == "pi_3Test"
    assert_ledger_clean()


def test_forged_or_underpaid_stripe_events_credit_nothing(actors: Actors) -> None:
    place(actors, "+8613200000002")
    payment = Payment.objects.get()
    assert deliver(succeeded(payment), secret="whsec_wrong").status_code == 400
    assert not PaymentEvent.objects.exists()
    cheap = succeeded(payment, event_id="evt_cheap", amount=1, amount_received=1)
    assert deliver(cheap).status_code == 200
    assert PaymentEvent.objects.get().outcome == EventOutcome.MISMATCH
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.PENDING
    assert not Bundle.objects.exists()
    assert_ledger_clean()


def test_a_failed_fulfilment_is_refunded_through_stripe(
    actors: Actors, settings: Any, fake: FakeStripe
) -> None:
    settings.NETWORK_ADAPTER = "tests.test_payments_refunds.RefusingUpstream"
    order = place(actors, "+8613200000003")
    payment = Payment.objects.get()
    paid_intent = intent(
        "succeeded", amount=500, amount_received=500, metadata={"reference": payment.reference}
    )
    fake.routes[("GET", "/v1/payment_intents/pi_3Test")] = (200, paid_intent)
    fake.routes[("GET", "/v1/refunds")] = (200, {"object": "list", "data": [], "has_more": False})
    fake.routes[("POST", "/v1/refunds")] = lambda call: (
        200,
        {
            "id": "re_1",
            "object": "refund",
            "amount": 500,
            "currency": "cny",
            "status": "succeeded",
            "payment_intent": "pi_3Test",
            "metadata": {
                "reference": payment.reference,
                "refund_reference": call.form["metadata[refund_reference]"],
            },
        },
    )
    assert deliver(succeeded(payment)).status_code == 200
    run_tasks()
    refund = Refund.objects.get()
    assert refund.status == RefundStatus.SUCCEEDED
    assert refund.provider_refund_ref == "re_1"
    [create] = [c for c in fake.calls if (c.method, c.path) == ("POST", "/v1/refunds")]
    assert create.headers["Idempotency-Key"] == refund.reference
    assert create.form["amount"] == "500"
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.REFUNDED
    assert_ledger_clean()
