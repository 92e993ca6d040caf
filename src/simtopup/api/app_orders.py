"""App API — /api/v1: quotes and orders (docs/api.md)."""

from __future__ import annotations

from typing import Any, Literal

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from ninja import Query, Router, Schema
from pydantic import Field, StrictInt

from simtopup.accounts.models import Customer
from simtopup.api.auth import AppBearer
from simtopup.api.idempotency import run_once
from simtopup.api.pagination import page
from simtopup.api.schemas import MoneyOut, PlanOut, Problem, Strict, Text, one_of
from simtopup.api.serializers import plan_body, rfc3339
from simtopup.core.http import client_ip
from simtopup.core.money import money
from simtopup.orders import customer as orders
from simtopup.orders.models import Channel, Order, OrderStatus, Quote
from simtopup.payments import checkout
from simtopup.payments.actions import PreparedPayment
from simtopup.payments.customer_refunds import DONE, ON_ITS_WAY, customer_refunds
from simtopup.payments.models import PaymentStatus
from simtopup.payments.providers.base import METHODS

router = Router(auth=AppBearer(), tags=["app: orders"])
ERRORS = {
    400: Problem,
    401: Problem,
    402: Problem,
    403: Problem,
    404: Problem,
    409: Problem,
    413: Problem,
    422: Problem,
    503: Problem,
}


# What a customer may pay with: the providers' methods and the card's own credit.
PAYMENT_METHODS = (*METHODS, orders.BALANCE)
# A payment's status as shown: the provider payment's, or "none" before there is one.
PAYMENT_STATUSES = (*PaymentStatus.values, "none")


class QuoteIn(Strict):
    device: str = Field(min_length=1, max_length=128, description="IMEI, ICCID, EID or serial")
    plan: str = Field(min_length=1, max_length=40)


class QuoteOut(Schema):
    id: int
    device: str = Field(description="masked device identifier")
    plan: PlanOut
    price: MoneyOut
    expires_at: str


class OrderIn(Strict):
    device: str = Field(min_length=1, max_length=128, description="IMEI, ICCID, EID or serial")
    plan: str = Field(min_length=1, max_length=40)
    # Kept a string: a method we do not take is the domain's 422 payment_method_unavailable.
    payment_method: str = Field(
        min_length=1,
        max_length=20,
        description="balance: the card's own credit",
        json_schema_extra=one_of(PAYMENT_METHODS),
    )
    quote: StrictInt | None = Field(
        None, ge=1, description="a quote id: the order pays the quoted price (while valid)"
    )
    surface: Literal["wechat", "phone", "desktop"] | None = Field(
        None,
        description="where the payer is: the provider's flow for it (phone: Alipay WAP, "
        "WeChat Pay H5; desktop: QR codes; wechat: WeChat Pay JSAPI, not yet available "
        "through the API); absent: the operator's configured flow",
    )


class PaymentOut(Schema):
    provider: str
    method: str = Field(json_schema_extra=one_of(PAYMENT_METHODS))
    status: str = Field(json_schema_extra=one_of(PAYMENT_STATUSES))
    checkout_url: str | None
    qr_data: str | None = Field(None, description="content of a QR code to scan, if any")


class RefundOut(Schema):
    amount: MoneyOut
    destination: str = Field(
        json_schema_extra=one_of(("credit", "provider")),
        description="credit: the card's credit; provider: the original payment method",
    )
    status: str = Field(
        json_schema_extra=one_of((DONE, ON_ITS_WAY)),
        description="refunded: the money has gone; pending: on its way",
    )
    at: str = Field(description="when the money went, or when the refund was decided")


class OrderOut(Schema):
    id: int
    status: OrderStatus
    channel: Channel
    device: str = Field(description="masked device identifier")
    plan: str
    plan_name: str
    amount: MoneyOut
    receipt_no: str | None
    created_at: str
    fulfilled_at: str | None
    failure_code: str | None
    payment: PaymentOut
    refunds: list[RefundOut] = Field(description="refunds of a fulfilled order, oldest first")


class OrderList(Schema):
    items: list[OrderOut]
    next_cursor: str | None


def _customer(request: HttpRequest) -> Customer:
    return request.auth.customer  # type: ignore[attr-defined]


def quote_body(quote: Quote) -> dict[str, Any]:
    return {
        "id": quote.pk,
        "device": quote.device.masked,
        "plan": plan_body(quote.plan),
        "price": money(quote.amount, quote.currency),
        "expires_at": rfc3339(quote.expires_at),
    }


def payment_body(order: Order) -> dict[str, Any]:
    if order.payment_method == orders.BALANCE:
        status = {
            OrderStatus.REFUNDED: "refunded",
            OrderStatus.FAILED: "refunded",
        }.get(OrderStatus(order.status), "succeeded")
        return {
            "provider": "balance",
            "method": "balance",
            "status": status,
            "checkout_url": None,
            "qr_data": None,
        }
    payment = getattr(order, "payment", None)
    if payment is None:
        return {
            "provider": "",
            "method": order.payment_method,
            "status": "none",
            "checkout_url": None,
            "qr_data": None,
        }
    open_ = order.status == OrderStatus.AWAITING_PAYMENT
    return {
        "provider": payment.provider,
        "method": payment.method,
        "status": payment.status,
        "checkout_url": (payment.checkout_url or None) if open_ else None,
        "qr_data": (payment.qr_data or None) if open_ else None,
    }


def order_body(order: Order) -> dict[str, Any]:
    """An order as docs/api.md describes it (plus ``plan_name``, ``failure_code`` and the
    payment's ``qr_data``); ``refunds``: payments/customer_refunds.py, as the website and
    the receipt show them."""
    return {
        "id": order.pk,
        "status": order.status,
        "channel": order.channel,
        "device": order.device.masked,
        "plan": order.plan.code,
        "plan_name": order.plan.name,
        "amount": money(order.amount, order.currency),
        "receipt_no": order.receipt_no,
        "created_at": rfc3339(order.created_at),
        "fulfilled_at": rfc3339(order.fulfilled_at),
        "failure_code": order.failure_code or None,
        "payment": payment_body(order),
        "refunds": [
            {
                "amount": money(r.amount, r.currency),
                "destination": r.destination,
                "status": r.state,
                "at": rfc3339(r.at),
            }
            for r in customer_refunds(order)
        ],
    }


@router.post(
    "/quotes",
    response={201: QuoteOut, **ERRORS},
    summary="Confirm device, plan and price before paying",
)
def create_quote(request: HttpRequest, payload: QuoteIn) -> HttpResponse:
    customer = _customer(request)

    def action() -> tuple[int, dict[str, Any]]:
        return 201, quote_body(orders.create_quote(customer, payload.device, payload.plan))

    return run_once(request, f"customer:{customer.pk}", action)


@router.post(
    "/orders",
    response={201: OrderOut, **ERRORS},
    summary="Order a plan for a device: pay by card, Alipay, WeChat Pay or the card's credit",
)
def create_order(request: HttpRequest, payload: OrderIn) -> HttpResponse:
    customer = _customer(request)
    payer_ip = client_ip(request)
    prepared: list[PreparedPayment | None] = []

    def prepare() -> None:
        # The provider is asked before the order's transaction, outside it.
        prepared.append(
            checkout.prepare_order(
                customer,
                payload.device,
                payload.plan,
                payload.payment_method,
                quote_id=payload.quote,
                client_ip=payer_ip,
                surface=payload.surface,
            )
        )

    def action() -> tuple[int, dict[str, Any]]:
        order = checkout.place_order(
            customer,
            payload.device,
            payload.plan,
            payload.payment_method,
            quote_id=payload.quote,
            client_ip=payer_ip,
            prepared=prepared[-1] if prepared else None,
            surface=payload.surface,
        )
        return 201, order_body(orders.get_customer_order(customer, order.pk))

    return run_once(request, f"customer:{customer.pk}", action, prepare=prepare)


@router.get("/orders", response={200: OrderList, **ERRORS}, summary="My orders, newest first")
def list_orders(
    request: HttpRequest,
    cursor: Text | None = Query(None, max_length=40),
    limit: int = Query(50, ge=1, le=200),
) -> dict[str, Any]:
    rows, next_cursor = page(orders.customer_orders(_customer(request)), cursor, limit)
    return {"items": [order_body(o) for o in rows], "next_cursor": next_cursor}


@router.get("/orders/{int:order_id}", response={200: OrderOut, **ERRORS}, summary="One order")
def get_order(request: HttpRequest, order_id: int) -> dict[str, Any]:
    return order_body(orders.get_customer_order(_customer(request), order_id))


@router.post(
    "/orders/{int:order_id}/cancel",
    response={200: OrderOut, **ERRORS},
    summary="Cancel an order still awaiting payment",
)
def cancel_order(request: HttpRequest, order_id: int) -> dict[str, Any]:
    customer = _customer(request)
    with transaction.atomic(durable=True):
        order = checkout.cancel_order(customer, order_id)
    return order_body(order)
