"""``/partner/v2/``: token, packages, top-up orders and a card's top-ups, usage and history.

Each view parses Airalo's request, authorises the partner and calls the reseller domain; the
rules (prices, the float, the card) are checked there, once, for every door.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from simtopup.catalog.models import Plan
from simtopup.core.errors import DomainError
from simtopup.core.transactions import durable
from simtopup.devices.identifiers import find_device, rechargeable_device
from simtopup.devices.models import Device
from simtopup.orders.models import Order, OrderStatus
from simtopup.partner import responses as r
from simtopup.partner import shapes
from simtopup.resellers.actions import price_list, sell_topup, wholesale_price
from simtopup.resellers.bodies import topup_body
from simtopup.resellers.models import PartnerCredential, Reseller
from simtopup.resellers.partner_access import authenticate_token, issue_token, signature_valid
from simtopup.usage.models import Bundle

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# The fields of a top-up order and their longest accepted values.
TOPUP_FIELDS = {"package_id": 40, "iccid": 128, "description": 255}


def _payload(request: HttpRequest) -> dict[str, Any] | None:
    """The request's parameters, from JSON (Airalo's SDKs) or a form (their curl examples);
    None if the body is neither."""
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"null")
        except ValueError:
            return None
        return data if isinstance(data, dict) else None
    if request.content_type in FORM_TYPES:
        return dict(request.POST.items())
    return None


def _partner(request: HttpRequest) -> PartnerCredential | HttpResponse:
    """The credential of the request's bearer token, or the refusal to answer: 401 for no
    live token, 403 for a suspended reseller (read in this request, so a suspension stops
    sales at once)."""
    scheme, _space, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    credential = authenticate_token(token.strip()) if scheme.lower() == "bearer" else None
    if credential is None:
        return r.unauthenticated()
    if not credential.reseller.active:
        return r.message(403, "This reseller account is suspended.")
    return credential


@r.endpoint("POST")
def token(request: HttpRequest) -> HttpResponse:
    """OAuth2 client credentials grant, as Airalo's ``POST /v2/token``."""
    data = _payload(request) or {}
    missing = {
        name: f"The {name.replace('_', ' ')} field is required."
        for name in ("client_id", "client_secret", "grant_type")
        if not isinstance(data.get(name), str) or not data[name]
    }
    if missing:
        return r.invalid(missing)
    if data["grant_type"] != "client_credentials":
        return r.invalid({"grant_type": "The selected grant type is invalid."})
    issued = issue_token(data["client_id"], data["client_secret"])
    if issued is None:
        return r.message(401, "Client authentication failed")
    access_token, expires_in = issued
    return r.success(
        {"token_type": "Bearer", "expires_in": expires_in, "access_token": access_token}
    )


def _plans(reseller: Reseller) -> list[dict[str, Any]]:
    """The plans this reseller sells (those of its currency) at its wholesale prices."""
    explicit = price_list(reseller)
    return [
        shapes.package(plan, wholesale_price(reseller, plan, explicit))
        for plan in Plan.objects.filter(active=True, currency=reseller.currency)
    ]


def _positive(text: str | None, default: int) -> int | None:
    if text is None or text == "":
        return default
    if not (text.isascii() and text.isdigit()) or len(text) > 6:
        return None
    return int(text) if int(text) > 0 else None


@r.endpoint("GET")
def packages(request: HttpRequest) -> HttpResponse:
    """Our plans, nested as Airalo's destinations → operators → packages, paginated over
    destinations (``limit``, ``page``). All our plans are top-ups to a card, so they are
    listed with ``include=topup`` only; ``filter[type]=local`` and ``filter[country]`` find
    none, as our one destination is global."""
    partner = _partner(request)
    if isinstance(partner, HttpResponse):
        return partner
    limit = _positive(request.GET.get("limit"), 50)
    current = _positive(request.GET.get("page"), 1)
    if limit is None or current is None:
        return r.invalid(
            {
                name: f"The {name} must be a positive integer."
                for name in ("limit", "page")
                if _positive(request.GET.get(name), 1) is None
            }
        )
    kind = request.GET.get("filter[type]", "")
    if kind not in ("", "local", "global"):
        return r.invalid({"filter.type": "The selected filter.type is invalid."})
    listed = (
        request.GET.get("include") == "topup"
        and kind != "local"
        and not request.GET.get("filter[country]")
    )
    plans = _plans(partner.reseller) if listed else []
    destinations = [shapes.catalogue_entry(plans)] if plans else []
    last = max(1, -(-len(destinations) // limit))
    shown = destinations[(current - 1) * limit : current * limit]
    first_index = (current - 1) * limit + 1 if shown else None
    meta = {
        "message": "success",
        "current_page": current,
        "from": first_index,
        "last_page": last,
        "path": request.build_absolute_uri(request.path),
        "per_page": limit,
        "to": first_index + len(shown) - 1 if first_index else None,
        "total": len(destinations),
    }
    return r.answer(200, {"pricing": shapes.PRICING, "data": shown, "meta": meta})


def _reference(request: HttpRequest) -> str:
    """The sale's reference (unique per reseller). Airalo's top-ups carry no idempotency key,
    so each request is a new sale, as on Airalo; a client that sends ``Idempotency-Key``
    gets one sale per key (its retries answer that sale)."""
    key = request.headers.get("Idempotency-Key")
    if key:
        return "partner:" + hashlib.sha256(key.encode()).hexdigest()[:40]
    return "partner:" + uuid.uuid4().hex


def _refusal(exc: DomainError) -> HttpResponse:
    """A sale's refusal in Airalo's words: parameters by field, business rules by code."""
    text = r.english(exc)
    if exc.code == "unknown_plan":
        return r.invalid({"package_id": "invalid topup package"})
    if exc.code in ("invalid_identifier", "unknown_device"):
        return r.invalid({"iccid": text})
    if exc.code == "check_digit_mismatch":
        return r.business(r.INVALID_CHECKSUM, f"Invalid checksum: {text}")
    if exc.code == "insufficient_float":
        return r.business(r.INSUFFICIENT_CREDIT, f"Insufficient credit: {text}")
    if exc.code == "device_not_rechargeable":
        return r.business(
            r.TOPUP_DISABLED, f"The requested top-up has been disabled by the operator. {text}"
        )
    if exc.code == "reseller_suspended":
        return r.message(403, text)
    if exc.status >= 500:
        return r.unexpected(exc.status)
    return r.business(r.BAD_REQUEST, f"Bad request. {text} Please check your input and try again.")


def _replay(reseller: Reseller, reference: str, package_id: str, iccid: str) -> Order | None:
    """The sale an earlier request with the same Idempotency-Key made, if it asked for the
    same package and card."""
    order = (
        Order.objects.filter(reseller=reseller, reference=reference)
        .select_related("plan", "device")
        .first()
    )
    if order is None or order.plan.code != package_id:
        return None
    try:
        device = find_device(iccid, field="iccid")
    except DomainError:
        return None
    return order if device.pk == order.device_id else None


@r.endpoint("POST")
def submit_topup(request: HttpRequest) -> HttpResponse:
    """A top-up of ``package_id`` to the card ``iccid``: the reseller API's sale, from the
    float at the wholesale price. The body must be signed (``airalo-signature``)."""
    partner = _partner(request)
    if isinstance(partner, HttpResponse):
        return partner
    reseller = partner.reseller
    data = _payload(request)
    if data is None:
        return r.invalid({"body": "The request body must be JSON or a form."})
    if not signature_valid(partner, request.headers.get("airalo-signature"), data):
        return r.message(
            401,
            "The airalo-signature header does not match the request: sign the request's "
            "parameters with your client secret (HMAC-SHA512).",
        )
    problems: dict[str, str] = {}
    for name, longest in TOPUP_FIELDS.items():
        value = data.get(name)
        if value is None or value == "":
            if name != "description":
                problems[name] = f"The {name.replace('_', ' ')} field is required."
        elif not isinstance(value, str) or len(value) > longest or "\x00" in value:
            problems[name] = f"The {name.replace('_', ' ')} must be text of at most {longest}."
    if problems:
        return r.invalid(problems)
    package_id, iccid = data["package_id"].strip(), data["iccid"].strip()
    description = data.get("description") or f"Topup ({iccid})"
    reference = _reference(request)

    def sale() -> tuple[Order, dict[str, Any]]:
        # The partner's token check read the reseller's status in this request.
        order = sell_topup(reseller, iccid, package_id, reference, status_checked=True)
        # Read in the sale's own transaction: the float its charge left.
        return order, topup_body(order, reseller)

    try:
        order, ours = durable(sale)
    except DomainError as exc:
        earlier = (
            _replay(reseller, reference, package_id, iccid)
            if exc.code == "duplicate_reference"
            else None
        )
        if exc.code == "duplicate_reference" and earlier is None:
            return r.business(
                r.BAD_REQUEST,
                "Bad request. This Idempotency-Key was used for another top-up. Please check "
                "your input and try again.",
            )
        if earlier is None:
            return _refusal(exc)
        order, ours = earlier, topup_body(earlier, reseller)
    return r.success(shapes.topup_order(order, description, ours))


def _card(iccid: str) -> Device | HttpResponse:
    if "\x00" in iccid:  # no card has one, and PostgreSQL refuses it in a query
        return r.not_found()
    try:
        return find_device(iccid, field="iccid")
    except DomainError:
        return r.not_found()


@r.endpoint("GET")
def sim_topups(request: HttpRequest, iccid: str) -> HttpResponse:
    """The top-up packages this card can take from this reseller."""
    partner = _partner(request)
    if isinstance(partner, HttpResponse):
        return partner
    if "\x00" in iccid:
        return r.not_found()
    try:
        rechargeable_device(iccid, field="iccid")
    except DomainError as exc:
        if exc.code == "device_not_rechargeable":
            return _refusal(exc)
        return r.not_found()
    return r.answer(200, {"pricing": shapes.PRICING, "data": _plans(partner.reseller)})


@r.endpoint("GET")
def sim_usage(request: HttpRequest, iccid: str) -> HttpResponse:
    """The card's data now: what its bundles valid now hold (as ``GET /reseller/v1/devices``
    shows any card in inventory to a reseller before a sale)."""
    partner = _partner(request)
    if isinstance(partner, HttpResponse):
        return partner
    card = _card(iccid)
    if isinstance(card, HttpResponse):
        return card
    bundles = list(
        Bundle.objects.filter(device=card).select_related("account").order_by("expires_at", "pk")
    )
    return r.success(shapes.usage(card.status, bundles, timezone.now()))


@r.endpoint("GET")
def sim_packages(request: HttpRequest, iccid: str) -> HttpResponse:
    """This reseller's top-ups of the card, newest first (failed ones, refunded to the
    float, are left out): the packages it put on the card and what is left of each."""
    partner = _partner(request)
    if isinstance(partner, HttpResponse):
        return partner
    card = _card(iccid)
    if isinstance(card, HttpResponse):
        return card
    orders = (
        Order.objects.filter(
            reseller=partner.reseller,
            device=card,
            status__in=(OrderStatus.PAID, OrderStatus.FULFILLING, OrderStatus.FULFILLED),
        )
        .select_related("plan")
        .prefetch_related(Prefetch("bundle", queryset=Bundle.objects.select_related("account")))
        .order_by("-pk")
    )
    now = timezone.now()
    return r.answer(
        200, {"pricing": shapes.PRICING, "data": [shapes.history_item(o, now) for o in orders]}
    )
