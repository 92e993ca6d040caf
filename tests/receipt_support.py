"""Orders with receipts, for the receipt and verification tests.

A customer's order is created paid (the provider's money parked in order clearing through
the ledger, as a payment would) and completed by the real fulfilment code
(``orders.actions.complete``), which issues the receipt number.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.db import transaction
from django.test import Client

from simtopup.accounts.models import Customer
from simtopup.accounts.tokens import issue_token
from simtopup.catalog.models import Plan
from simtopup.devices.models import Device
from simtopup.ledger.actions import Posting, post, system_account
from simtopup.network.adapters import bundle_window
from simtopup.orders.actions import complete
from simtopup.orders.models import Channel, Order, OrderStatus

# 08:00 UTC is 16:00 in Shanghai and Taipei, midnight in Los Angeles (PST).
FULFILLED_AT = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def make_customer(
    phone: str, *, language: str = "zh-hans", time_zone: str = "Asia/Shanghai"
) -> tuple[Customer, Client]:
    customer = Customer.objects.create(phone=phone, language=language, time_zone=time_zone)
    raw, _token = issue_token(customer, "test")
    return customer, Client(HTTP_AUTHORIZATION=f"Bearer {raw}")


def paid_order(
    customer: Customer, device: Device, plan: Plan, *, payment_method: str = "alipay"
) -> Order:
    with transaction.atomic():
        order = Order.objects.create(
            channel=Channel.APP,
            status=OrderStatus.PAID,
            device=device,
            plan=plan,
            customer=customer,
            payment_method=payment_method,
            amount=plan.price,
            retail_amount=plan.price,
            currency=plan.currency,
            paid_at=FULFILLED_AT,
        )
        post(
            [
                Posting(
                    system_account("adjustments", plan.currency),
                    system_account("order_clearing", plan.currency),
                    plan.price,
                    "order_payment",
                    f"order:{order.pk}:pay",
                )
            ]
        )
    return order


def fulfil(order: Order, at: datetime = FULFILLED_AT) -> Order:
    with transaction.atomic():
        assert complete(order, bundle_window(order, at), now=at)
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED
    assert order.receipt_no
    return order


def fulfilled_order(
    customer: Customer, device: Device, plan: Plan, *, payment_method: str = "alipay"
) -> Order:
    return fulfil(paid_order(customer, device, plan, payment_method=payment_method))
