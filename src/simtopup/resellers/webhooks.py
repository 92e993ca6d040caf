"""Outgoing signed webhooks to resellers, retried with backoff until delivered."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from simtopup.core.signing import HEADER, sign
from simtopup.resellers.models import DeliveryStatus, Reseller, WebhookDelivery

if TYPE_CHECKING:
    from simtopup.orders.models import Order

logger = logging.getLogger(__name__)


def queue_event(order: Order, event: str) -> None:
    """Queue ``event`` about ``order`` in the caller's transaction (once per event and order)."""
    from simtopup.api.serializers import topup_body
    from simtopup.resellers.tasks import deliver_webhook_task

    if order.reseller_id is None:
        return
    reseller = Reseller.objects.select_related("float_account").get(pk=order.reseller_id)
    if not reseller.webhook_url:
        return
    now = timezone.now()
    payload = {
        "type": event,
        "created_at": now.isoformat().replace("+00:00", "Z"),
        "data": topup_body(order, reseller),
    }
    # Once per event and order, whoever queues it: a conflicting insert is ignored.
    WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                reseller=reseller,
                event=event,
                dedupe_key=f"{event}:order:{order.pk}",
                payload=payload,
                next_attempt_at=now,
            )
        ],
        ignore_conflicts=True,
    )
    delivery_id = WebhookDelivery.objects.values_list("pk", flat=True).get(
        dedupe_key=f"{event}:order:{order.pk}"
    )
    deliver_webhook_task.enqueue(delivery_id)


def deliver(delivery_id: int) -> str:
    """Try one delivery now if it is due; schedule the next try on failure."""
    now = timezone.now()
    hold = now + timedelta(seconds=settings.WEBHOOK_TIMEOUT_SECONDS * 2)
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=now
    ).update(next_attempt_at=hold, attempts=F("attempts") + 1)
    if not claimed:
        return "not_due"
    delivery = WebhookDelivery.objects.select_related("reseller").get(pk=delivery_id)
    reseller = delivery.reseller
    body = json.dumps(delivery.payload, separators=(",", ":")).encode()
    request = urllib.request.Request(  # noqa: S310 - the reseller's configured URL
        reseller.webhook_url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "simtopup-webhooks/1",
            HEADER: sign(reseller.webhook_secret, body),
            "X-Simtopup-Event": delivery.event,
            "X-Simtopup-Delivery": str(delivery.pk),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.WEBHOOK_TIMEOUT_SECONDS) as response:  # noqa: S310
            ok = 200 <= response.status < 300
            error = "" if ok else f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        ok, error = False, f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        ok, error = False, str(exc)[:300]
    if ok:
        WebhookDelivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.PENDING).update(
            status=DeliveryStatus.DELIVERED, delivered_at=timezone.now(), last_error=""
        )
        return "delivered"
    backoff = settings.WEBHOOK_BACKOFF
    if delivery.attempts > len(backoff):
        WebhookDelivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.PENDING).update(
            status=DeliveryStatus.FAILED, last_error=error
        )
        logger.error("webhook %s to reseller %s gave up: %s", delivery.pk, reseller.pk, error)
        return "failed"
    delay = timedelta(seconds=backoff[delivery.attempts - 1])
    WebhookDelivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.PENDING).update(
        next_attempt_at=timezone.now() + delay, last_error=error
    )
    return "retry"


def deliver_due(limit: int = 200) -> int:
    """The reconciler's part: deliveries whose time has come (their tasks may be long gone)."""
    ids = list(
        WebhookDelivery.objects.filter(
            status=DeliveryStatus.PENDING, next_attempt_at__lte=timezone.now()
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    return sum(1 for pk in ids if deliver(pk) == "delivered")
