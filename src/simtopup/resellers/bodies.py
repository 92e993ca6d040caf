"""A reseller's top-up as the reseller sees it: the same body in the API's answers (201,
replay, ``GET /topups``) and in the webhooks, so it is shaped here, in the domain both use
(docs/api.md field names)."""

from __future__ import annotations

from typing import Any

from simtopup.core.money import money
from simtopup.core.timefmt import rfc3339
from simtopup.orders.actions import paid_balances
from simtopup.orders.models import Order, OrderStatus
from simtopup.resellers.models import Reseller

TOPUP_STATUS = {
    OrderStatus.AWAITING_PAYMENT: "processing",
    OrderStatus.PAID: "processing",
    OrderStatus.FULFILLING: "processing",
    OrderStatus.FULFILLED: "fulfilled",
    OrderStatus.FAILED: "failed",
    OrderStatus.REFUNDED: "failed",
    OrderStatus.CANCELLED: "failed",
}


def topup_bodies(orders: list[Order], reseller: Reseller) -> list[dict[str, Any]]:
    """Top-ups as the reseller API shows them. ``float_balance`` is the float right after
    each sale was charged, as the ledger recorded it in that sale's transaction
    (:func:`simtopup.orders.actions.paid_balances`) — the same value in the 201, a replay,
    ``GET /topups/{id}``, every list and every webhook; never the float now (that is
    ``GET /float``). None only for sales recorded before the ledger kept balances."""
    floats = paid_balances([o.pk for o in orders])

    def shown(order: Order) -> dict[str, str] | None:
        after = floats[order.pk]
        return None if after is None else money(after, reseller.currency)

    return [
        {
            "id": order.pk,
            "status": TOPUP_STATUS[OrderStatus(order.status)],
            "reference": order.reference,
            "device": order.device.masked,
            "plan": order.plan.code,
            "charged": money(order.amount, order.currency),
            "float_balance": shown(order),
            "receipt_no": order.receipt_no,
            "created_at": rfc3339(order.created_at),
            "fulfilled_at": rfc3339(order.fulfilled_at),
            "failure_code": order.failure_code or None,
        }
        for order in orders
    ]


def topup_body(order: Order, reseller: Reseller) -> dict[str, Any]:
    return topup_bodies([order], reseller)[0]
