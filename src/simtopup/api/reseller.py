"""Reseller API — ``/reseller/v1`` (docs/api.md)."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from ninja import Query, Router

from simtopup.api.auth import ResellerKey
from simtopup.api.idempotency import run_once
from simtopup.api.pagination import page
from simtopup.api.schemas import (
    DeviceCheckOut,
    FloatOut,
    Problem,
    ResellerPlanOut,
    Text,
    TopupIn,
    TopupList,
    TopupOut,
)
from simtopup.api.serializers import plan_body, topup_bodies, topup_body
from simtopup.catalog.models import Plan
from simtopup.core.errors import DomainError
from simtopup.core.money import money
from simtopup.devices.identifiers import find_device
from simtopup.ledger.actions import balance
from simtopup.orders.models import Order
from simtopup.resellers.actions import price_list, sell_topup, wholesale_price
from simtopup.resellers.models import Reseller
from simtopup.usage.bundles import remaining_bytes

router = Router(auth=ResellerKey(), tags=["reseller"])
ERRORS = {
    400: Problem,
    401: Problem,
    402: Problem,
    403: Problem,
    404: Problem,
    409: Problem,
    413: Problem,
    422: Problem,
}


def _reseller(request: HttpRequest) -> Reseller:
    return request.auth  # type: ignore[attr-defined]


@router.get(
    "/plans",
    response={200: list[ResellerPlanOut], **ERRORS},
    summary="Plans with retail and wholesale prices",
)
def plans(request: HttpRequest) -> list[dict[str, object]]:
    reseller = _reseller(request)
    explicit = price_list(reseller)
    return [
        {
            **plan_body(p),
            "wholesale_price": money(wholesale_price(reseller, p, explicit), p.currency),
        }
        for p in Plan.objects.filter(active=True, currency=reseller.currency)
    ]


@router.get(
    "/devices/{identifier}",
    response={200: DeviceCheckOut, **ERRORS},
    summary="Validate and confirm a device before selling",
)
def check_device(request: HttpRequest, identifier: str) -> dict[str, object]:
    device = find_device(identifier)
    return {
        "device": device.masked,
        "kind": device.kind,
        "status": device.status,
        "rechargeable": device.rechargeable,
        "remaining_bytes": remaining_bytes(device),
        "payg": device.payg,
    }


@router.post(
    "/topups", response={201: TopupOut, **ERRORS}, summary="Top up a device from the float"
)
def create_topup(request: HttpRequest, payload: TopupIn) -> HttpResponse:
    reseller = _reseller(request)

    def action() -> tuple[int, dict[str, object]]:
        # ResellerKey refused a suspended reseller while authenticating this request.
        order = sell_topup(
            reseller, payload.device, payload.plan, payload.reference, status_checked=True
        )
        # Read in the sale's own transaction: the float its compare-and-swap left.
        return 201, topup_body(order, reseller)

    return run_once(request, f"reseller:{reseller.pk}", action)


def _orders(reseller: Reseller) -> QuerySet[Order]:
    return Order.objects.filter(reseller=reseller).select_related("device", "plan")


@router.get("/topups/{int:topup_id}", response={200: TopupOut, **ERRORS}, summary="One top-up")
def get_topup(request: HttpRequest, topup_id: int) -> dict[str, object]:
    reseller = _reseller(request)
    order = _orders(reseller).filter(pk=topup_id).first()
    if order is None:
        raise DomainError("not_found", _("There is no such top-up."), 404)
    return topup_body(order, reseller)


@router.get(
    "/topups",
    response={200: TopupList, **ERRORS},
    summary="Top-ups, newest first; filter by reference",
)
def list_topups(
    request: HttpRequest,
    reference: Text | None = Query(None, max_length=100),
    cursor: Text | None = Query(None, max_length=40),
    limit: int = Query(50, ge=1, le=200),
) -> dict[str, object]:
    reseller = _reseller(request)
    qs = _orders(reseller)
    if reference is not None:
        qs = qs.filter(reference=reference)
    rows, next_cursor = page(qs, cursor, limit)
    return {
        "items": topup_bodies(list(rows), reseller),
        "next_cursor": next_cursor,
    }


@router.get("/float", response={200: FloatOut, **ERRORS}, summary="The float balance")
def get_float(request: HttpRequest) -> dict[str, object]:
    reseller = _reseller(request)
    return {"balance": money(balance(reseller.float_account), reseller.currency)}
