"""The wholesale provider's webhooks: ``POST /network/upstream/<provider>/webhook``.

Verified first (Airalo: ``airalo-signature`` with the client secret; eSIM Go V3 callbacks:
``X-Signature-SHA256`` with the API key), then deduplicated by the body's SHA-256 (a delivery
sent twice is acknowledged and changes nothing). A notification about a card (Airalo's low-data
notice, eSIM Go's usage callback) makes the card's usage due for reading at the next janitor
pass (within the provider's limit per card), and an order of ours still processing for that
card — or the Airalo order whose description is our reference — is tried again now: its attempt
looks up what the provider made and completes it. The webhook itself never completes an order:
the provider's answer to our own lookup does, so the one path that records a fulfilment stays
the worker's.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from simtopup.api.problems import not_found, problem
from simtopup.devices.models import Device
from simtopup.network import airalo, esimgo
from simtopup.network.adapters import get_adapter
from simtopup.network.models import UpstreamCard, UpstreamEvent
from simtopup.orders.actions import enqueue_fulfilment
from simtopup.orders.models import Order, OrderStatus

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024


def _verified(provider: str, request: HttpRequest, body: bytes) -> bool:
    if provider == airalo.PROVIDER:
        return airalo.signature_valid(body, request.headers.get("airalo-signature", ""))
    if provider == esimgo.PROVIDER:
        header = request.headers.get("X-Signature-SHA256", "")
        return esimgo.signature_valid(body, header, settings.ESIMGO_API_KEY)
    return False


def _iccid(payload: dict[str, Any]) -> str:
    data = payload.get("data") if isinstance(payload.get("data"), dict) else payload
    value = data.get("iccid") if isinstance(data, dict) else None
    return str(value) if isinstance(value, (str, int)) else ""


def _our_order(payload: dict[str, Any]) -> int | None:
    """Airalo's order payload carries our reference as its description."""
    data = payload.get("data") if isinstance(payload.get("data"), dict) else payload
    text = str(data.get("description") or "") if isinstance(data, dict) else ""
    number = text.removeprefix("simtopup-order-")
    return int(number) if text != number and number.isdigit() else None


def _act(provider: str, payload: dict[str, Any], spacing: float) -> dict[str, int]:
    now = timezone.now()
    done = {"cards": 0, "orders": 0}
    order_ids: list[int] = []
    if (number := _our_order(payload)) is not None:
        order_ids.append(number)
    if iccid := _iccid(payload):
        device = Device.objects.filter(iccid=iccid).values_list("pk", flat=True).first()
        if device is not None:
            card = UpstreamCard.objects.filter(provider=provider, device_id=device).first()
            if card is not None:
                soonest = (card.read_at or now) + timedelta(seconds=spacing)
                due = max(now, soonest)
                if due < card.next_read_at:
                    UpstreamCard.objects.filter(pk=card.pk).update(next_read_at=due)
                done["cards"] = 1
            order_ids += Order.objects.filter(
                device_id=device, status=OrderStatus.PAID
            ).values_list("pk", flat=True)
    # Orders waiting for their next attempt (processing upstream): that attempt is now.
    waiting = Order.objects.filter(
        pk__in=order_ids, status=OrderStatus.PAID, next_attempt_at__gt=now
    )
    for order in waiting.only("pk"):
        if Order.objects.filter(pk=order.pk, status=OrderStatus.PAID).update(next_attempt_at=now):
            enqueue_fulfilment(order)
            done["orders"] += 1
    return done


@csrf_exempt
@require_POST
def receive(request: HttpRequest, provider: str) -> HttpResponse:
    adapter = get_adapter()
    if getattr(adapter, "provider", None) != provider:
        return not_found()
    body = request.body
    if len(body) > MAX_BODY:
        return problem(413, "payload_too_large", "A webhook body is at most 64 KiB.")
    if not _verified(provider, request, body):
        return problem(401, "invalid_signature", "The webhook's signature does not match.")
    try:
        payload = json.loads(body)
    except ValueError:
        return problem(400, "malformed_json", "The body is not JSON.")
    if not isinstance(payload, dict):
        return problem(400, "malformed_json", "The body is not a JSON object.")
    key = hashlib.sha256(body).hexdigest()
    spacing = float(getattr(adapter, "usage_spacing_seconds", 1.0))
    try:
        with transaction.atomic():
            UpstreamEvent.objects.create(provider=provider, key=key)
            done = _act(provider, payload, spacing)
    except IntegrityError:
        return JsonResponse({"status": "duplicate"})
    logger.info("webhook from %s: %s", provider, done)
    return JsonResponse({"status": "accepted", **done})
