"""Shaping domain objects into API bodies (API.md field names)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from simtopup.catalog.models import Plan
from simtopup.core.money import money
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


def rfc3339(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def plan_body(plan: Plan) -> dict[str, Any]:
    return {
        "code": plan.code,
        "name": plan.name,
        "kind": plan.kind,
        "data_bytes": plan.data_bytes,
        "validity_hours": plan.validity_hours,
        "price": money(plan.price, plan.currency),
    }


def topup_body(
    order: Order, reseller: Reseller, float_balance: int | None = None
) -> dict[str, Any]:
    if float_balance is None:
        from simtopup.ledger.actions import balance

        float_balance = balance(reseller.float_account)
    return {
        "id": order.pk,
        "status": TOPUP_STATUS[OrderStatus(order.status)],
        "reference": order.reference,
        "device": order.device.masked,
        "plan": order.plan.code,
        "charged": money(order.amount, order.currency),
        "float_balance": money(float_balance, reseller.currency),
        "receipt_no": order.receipt_no,
        "created_at": rfc3339(order.created_at),
        "fulfilled_at": rfc3339(order.fulfilled_at),
        "failure_code": order.failure_code or None,
    }
