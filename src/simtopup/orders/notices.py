"""Telling the customer who placed an order what became of it (SMS or email)."""

from __future__ import annotations

from django.utils import translation

from simtopup.core.money import format_money
from simtopup.orders.models import Order


def tell_customer(order: Order, template: str, *, amount: int | None = None) -> None:
    """Queue ``template`` (see notifications.templates) for the order's customer, after the
    current transaction commits. Orders without a customer (resellers') are skipped: the
    reseller hears through its webhook. ``amount``: the sum to name, when it is not the
    order's (a partial refund)."""
    from simtopup.notifications.actions import notify

    if order.customer_id is None:
        return
    customer = order.customer
    assert customer is not None
    # The plan's name and the amount in the customer's language, not the worker's.
    with translation.override(customer.language):
        context = {
            "device": order.device.masked,
            "plan": order.plan.name,
            "amount": format_money(order.amount if amount is None else amount, order.currency),
        }
    notify(customer, template, context)
