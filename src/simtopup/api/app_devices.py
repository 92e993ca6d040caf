"""App API — /api/v1: my cards (bind, list, unbind, nickname), eSIM activation, balance,
credit movements; and the public plan list.

Binding a card needs proof of holding it (its binding PIN, or an eSIM's activation code;
devices/binding.py); binding a card that is already mine answers 200 with the card (201 when
this call bound it). Another customer's card is 404 ``not_found`` on every endpoint here.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Query, Router, Schema, Status
from pydantic import Field

from simtopup.accounts.models import AppToken
from simtopup.api.app_auth import ERRORS, me
from simtopup.api.auth import AppBearer
from simtopup.api.pagination import page
from simtopup.api.schemas import MoneyOut, PlanOut, Problem, Strict, Text, one_of
from simtopup.api.serializers import plan_body, rfc3339
from simtopup.catalog.models import Plan
from simtopup.core.http import client_ip
from simtopup.core.money import money
from simtopup.devices.binding import (
    PROOF_MAX_LENGTH,
    bind_device,
    my_device,
    my_devices,
    not_found,
    rename_device,
    unbind_device,
)
from simtopup.devices.credit import CREDIT_KINDS, credit_transfers, movements
from simtopup.devices.esim import activate
from simtopup.devices.models import Device, DeviceKind, DeviceStatus
from simtopup.usage.bundles import remaining_bytes
from simtopup.usage.reads import BalanceRead, device_balance, remaining_by_device

router = Router(auth=AppBearer(), tags=["app: devices"])


class BindIn(Strict):
    device: str = Field(min_length=1, max_length=128, description="IMEI, ICCID, EID or serial")
    proof: str = Field(
        min_length=1,
        max_length=PROOF_MAX_LENGTH,
        description=(
            "Proof of holding the card: the binding PIN printed with it, or for an eSIM its "
            "activation code (the whole `LPA:1$…` string or just its matching ID). Case, "
            "spaces and dashes do not matter. Not checked when the card is already mine."
        ),
        examples=["48210937"],
    )
    nickname: str = Field("", max_length=60)


class RenameIn(Strict):
    nickname: str = Field(max_length=60)


class DeviceOut(Schema):
    id: int
    kind: DeviceKind
    device: str = Field(description="masked identifier")
    iccid: str | None
    imei: str | None
    eid: str | None
    serial: str | None
    nickname: str
    status: DeviceStatus
    payg: bool
    remaining_bytes: int
    credit: MoneyOut
    bound_at: str | None
    activated_at: str | None
    esim_activated_at: str | None


class DeviceList(Schema):
    items: list[DeviceOut]
    next_cursor: str | None


class EsimOut(Schema):
    activation_code: str = Field(examples=["LPA:1$smdp.example.net$MATCHING-ID"])
    qr_svg: str = Field(description="SVG image of the QR code of activation_code")


class BundleOut(Schema):
    plan: str
    granted_bytes: int
    remaining_bytes: int
    starts_at: str
    expires_at: str
    status: str = Field(description="active, upcoming, expired or used_up")


class BalanceOut(Schema):
    device: str
    remaining_bytes: int
    bundles: list[BundleOut]
    credit: MoneyOut
    payg: bool


class CreditItemOut(Schema):
    id: int
    kind: str = Field(json_schema_extra=one_of((*CREDIT_KINDS.values(), "adjustment")))
    direction: str = Field(description="in (added to the credit) or out (taken from it)")
    amount: MoneyOut = Field(description="signed: negative when taken from the credit")
    created_at: str
    memo: str = Field(description="what it was, in the request's language")
    order_id: int | None = Field(description="the order behind it, if any")


class CreditOut(Schema):
    credit: MoneyOut
    items: list[CreditItemOut]
    next_cursor: str | None


def device_body(device: Device, remaining: int | None = None) -> dict[str, Any]:
    """A card as the app shows it; ``remaining``: its data valid now, when the caller read
    it already (a list reads all its cards' in one statement)."""
    credit = device.credit_account
    return {
        "id": device.pk,
        "kind": device.kind,
        "device": device.masked,
        # The owner may see the full identifiers of their own card.
        "iccid": device.iccid,
        "imei": device.imei,
        "eid": device.eid,
        "serial": device.serial,
        "nickname": device.nickname,
        "status": device.status,
        "payg": device.payg,
        "remaining_bytes": remaining_bytes(device) if remaining is None else remaining,
        "credit": money(credit.balance, credit.unit),
        "bound_at": rfc3339(device.bound_at),
        "activated_at": rfc3339(device.activated_at),
        "esim_activated_at": rfc3339(device.esim_activated_at),
    }


def _mine(request: HttpRequest, device_id: int) -> Device:
    return my_device(me(request), device_id)


@router.get("/plans", auth=None, response={200: list[PlanOut], **ERRORS}, summary="Plans on sale")
def plans(request: HttpRequest) -> list[dict[str, Any]]:
    """Active plans; names in the request's language (Accept-Language)."""
    return [plan_body(p) for p in Plan.objects.filter(active=True)]


@router.post(
    "/devices",
    response={200: DeviceOut, 201: DeviceOut, 429: Problem, **ERRORS},
    summary="Add a card to my account (bind)",
    description=(
        "201 when bound now, 200 when it already was mine (nickname updated if given; "
        "`proof` is not checked). A card number alone never binds: `proof` must be the "
        "card's binding PIN or, for an eSIM, its activation code. 422 `invalid_proof` when "
        "it does not match (counted per customer and per client IP; past the limit, 429 "
        "`too_many_requests` with `Retry-After`, whatever the proof); 409 "
        "`proof_unavailable` when the card has neither (the seller or customer service "
        "can help); 409 `device_bound_elsewhere` when, with the right proof, it is in "
        "another account."
    ),
)
def bind(request: HttpRequest, payload: BindIn) -> Status[dict[str, Any]]:
    device, created = bind_device(
        me(request),
        payload.device,
        proof=payload.proof,
        nickname=payload.nickname,
        ip=client_ip(request),
    )
    return Status(201 if created else 200, device_body(device))


@router.get("/devices", response={200: DeviceList, **ERRORS}, summary="My cards")
def list_devices(
    request: HttpRequest,
    cursor: Text | None = Query(None, max_length=40),
    limit: int = Query(50, ge=1, le=100),
) -> dict[str, Any]:
    rows, next_cursor = page(
        my_devices(me(request)).select_related("credit_account"), cursor, limit
    )
    remaining = remaining_by_device([d.pk for d in rows])
    return {"items": [device_body(d, remaining[d.pk]) for d in rows], "next_cursor": next_cursor}


@router.get(
    "/devices/{int:device_id}",
    response={200: DeviceOut, **ERRORS},
    summary="One of my cards",
)
def get_device(request: HttpRequest, device_id: int) -> dict[str, Any]:
    return device_body(_mine(request, device_id))


@router.patch(
    "/devices/{int:device_id}",
    response={200: DeviceOut, **ERRORS},
    summary="Rename one of my cards",
)
def patch_device(request: HttpRequest, device_id: int, payload: RenameIn) -> dict[str, Any]:
    return device_body(rename_device(me(request), device_id, payload.nickname))


@router.delete(
    "/devices/{int:device_id}",
    response={204: None, **ERRORS},
    summary="Remove a card from my account (unbind)",
)
def delete_device(request: HttpRequest, device_id: int) -> HttpResponse:
    unbind_device(me(request), device_id)
    return HttpResponse(status=204)


@router.get(
    "/devices/{int:device_id}/esim",
    response={200: EsimOut, **ERRORS},
    summary="eSIM activation code and its QR code",
    description="409 `not_an_esim` for physical cards, `no_activation_code` when none is on file.",
)
def esim(request: HttpRequest, device_id: int) -> dict[str, Any]:
    activation = activate(_mine(request, device_id))
    return {"activation_code": activation.activation_code, "qr_svg": activation.qr_svg}


@router.get(
    "/devices/{int:device_id}/balance",
    response={200: BalanceOut, **ERRORS},
    summary="Remaining data, bundles and credit of one of my cards",
    description="Bundles that are active, upcoming, used up, or expired in the last 30 days.",
)
def balance(request: HttpRequest, device_id: int) -> dict[str, Any]:
    token: AppToken = request.auth  # type: ignore[attr-defined]
    read = device_balance(token.customer_id, device_id)
    if read is None:
        raise not_found()
    return balance_body(read)


def balance_body(read: BalanceRead) -> dict[str, Any]:
    """A card's balance as the app shows it (BalanceOut); also the hot path's (api/hot_reads.py)."""
    return {
        "device": read.device,
        "remaining_bytes": read.remaining_bytes,
        "bundles": [
            {
                "plan": b.plan,
                "granted_bytes": b.granted_bytes,
                "remaining_bytes": b.remaining_bytes,
                "starts_at": rfc3339(b.starts_at),
                "expires_at": rfc3339(b.expires_at),
                "status": b.status,
            }
            for b in read.bundles
        ],
        "credit": money(read.credit, read.currency),
        "payg": read.payg,
    }


@router.get(
    "/devices/{int:device_id}/credit",
    response={200: CreditOut, **ERRORS},
    summary="The credit of one of my cards and its movements, newest first",
)
def credit(
    request: HttpRequest,
    device_id: int,
    cursor: Text | None = Query(None, max_length=40),
    limit: int = Query(50, ge=1, le=200),
) -> dict[str, Any]:
    device = _mine(request, device_id)
    account = device.credit_account
    rows, next_cursor = page(credit_transfers(account.pk), cursor, limit)
    items = [
        {
            "id": m.id,
            "kind": m.kind,
            "direction": "in" if m.incoming else "out",
            "amount": money(m.amount if m.incoming else -m.amount, m.unit),
            "created_at": rfc3339(m.created_at),
            "memo": m.memo,
            "order_id": m.order_id,
        }
        for m in movements(list(rows), account.pk)
    ]
    return {
        "credit": money(account.balance, account.unit),
        "items": items,
        "next_cursor": next_cursor,
    }
