"""Model-based check of the payment state machine (Jepsen / TigerBeetle style): random
interleavings of what payers, the gateway, customers and the janitor do to a few orders;
at the end every order must be in a state its gateway charge explains, and the books must
balance."""

from __future__ import annotations

import random
import time
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from simtopup.orders.models import Order, OrderStatus
from simtopup.payments.actions import sweep
from simtopup.payments.models import Payment, PaymentStatus, SandboxCharge
from simtopup.payments.providers import sandbox
from simtopup.usage.models import Bundle
from tests.payments_support import (
    app,
    assert_ledger_clean,
    make_customer,
    post_json,
    post_notification,
    run_tasks,
    sandbox_direct,
    sandbox_notification,
)
from tests.support import Actors

pytestmark = pytest.mark.usefixtures("sandbox_direct")
__all__ = ["sandbox_direct"]


def resend_success(payment: Payment, rng: random.Random) -> None:
    """The gateway (re)sends a success notification — only ever for a captured charge."""
    charge = SandboxCharge.objects.get(reference=payment.reference)
    if charge.status not in ("succeeded", "refunded"):
        return
    headers, body = sandbox_notification(
        {
            "payment": charge.public_id,
            "reference": charge.reference,
            "amount": charge.amount,
            "currency": charge.currency,
            "merchant": charge.merchant,
            "status": "succeeded",
        },
        event_id=f"evt_{charge.public_id}_{rng.randrange(3)}",
        timestamp=int(time.time()),
    )
    assert post_notification(Client(), headers, body).status_code == 200


@pytest.mark.parametrize("seed", range(6))
def test_random_interleavings_keep_every_order_explained(
    actors: Actors, settings: Any, seed: int
) -> None:
    rng = random.Random(seed)
    settings.SANDBOX_WEBHOOK_COPIES = rng.choice([1, 2])
    settings.SANDBOX_OUT_OF_ORDER = rng.choice([False, True])
    token, _customer = make_customer(f"+86131000000{seed:02d}")
    client = app(token)
    orders = []
    for i in range(4):
        response = post_json(
            client,
            "/api/v1/orders",
            {
                "device": actors.devices[i].iccid,
                "plan": rng.choice(["day-1g", "month-20g", "credit-50"]),
                "payment_method": rng.choice(["card", "alipay", "wechat_pay"]),
            },
        )
        assert response.status_code == 201, response.content
        orders.append(response.json()["id"])

    for _step in range(30):
        order_id = rng.choice(orders)
        payment = Payment.objects.get(order_id=order_id)
        charge = SandboxCharge.objects.get(reference=payment.reference)
        action = rng.choice(
            ["pay", "pay", "decline", "deliver", "deliver", "resend", "cancel", "janitor", "expire"]
        )
        if action in ("pay", "decline"):
            sandbox.settle(charge, "succeed" if action == "pay" else "decline")
        elif action == "deliver":
            run_tasks()
        elif action == "resend":
            resend_success(payment, rng)
        elif action == "cancel":
            status = post_json(client, f"/api/v1/orders/{order_id}/cancel", {}).status_code
            assert status in (200, 409)
        elif action == "janitor":
            Payment.objects.filter(pk=payment.pk).update(next_check_at=timezone.now())
            sweep()
        else:
            Order.objects.filter(pk=order_id).update(created_at=timezone.now() - timedelta(hours=1))
            sweep()

    # Quiesce: deliver everything, let the janitor ask about everything still open.
    run_tasks()
    Payment.objects.update(next_check_at=timezone.now())
    sweep()
    run_tasks()

    for order_id in orders:
        order = Order.objects.get(pk=order_id)
        payment = Payment.objects.get(order_id=order_id)
        charge = SandboxCharge.objects.get(reference=payment.reference)
        bundles = Bundle.objects.filter(order_id=order_id).count()
        context = (order.status, payment.status, charge.status)
        if charge.status == "requires_action":  # never paid
            assert order.status in (OrderStatus.AWAITING_PAYMENT, OrderStatus.CANCELLED), context
            assert payment.captured_at is None, context
        elif charge.status == "declined":
            assert order.status in (OrderStatus.FAILED, OrderStatus.CANCELLED), context
            assert payment.captured_at is None, context
        elif order.status == OrderStatus.FULFILLED:
            assert charge.status == "succeeded", context
            assert payment.status == PaymentStatus.SUCCEEDED, context
            assert bundles == (0 if order.plan.is_payg else 1), context
        else:  # captured, but the order was closed first: the money went back
            assert order.status == OrderStatus.CANCELLED, context
            assert charge.status == "refunded", context
            assert payment.status == PaymentStatus.REFUNDED, context
            assert bundles == 0, context
    assert_ledger_clean()
