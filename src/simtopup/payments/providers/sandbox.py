"""The built-in sandbox gateway: a hosted checkout page, signed asynchronous webhooks,
declines, delays, duplicates and out-of-order deliveries — for demos and tests.

It plays an external gateway: its state lives in its own rows (:class:`SandboxCharge`,
:class:`SandboxRefund`), never in our payments. Its notifications reach our webhook endpoint
through the worker (HTTP POST to the notify URL, or handed straight to our handler with
``SIMTOPUP_SANDBOX_WEBHOOK_DELIVERY=direct``), signed like Stripe's:
``Sandbox-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">``, 300 s tolerance.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from simtopup.core.errors import DomainError
from simtopup.core.signing import sign_body, verify_body
from simtopup.payments.models import (
    SandboxCharge,
    SandboxChargeStatus,
    SandboxRefund,
)
from simtopup.payments.providers import base

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "Sandbox-Signature"
EVENT_KINDS = {
    "payment.succeeded": base.SUCCEEDED,
    "payment.failed": base.FAILED,
    "payment.pending": base.PENDING,
    "refund.succeeded": base.REFUNDED,
}


def webhook_secret() -> str:
    """The signing secret; derived from SECRET_KEY unless set, so none is ever committed."""
    if settings.SANDBOX_WEBHOOK_SECRET:
        return str(settings.SANDBOX_WEBHOOK_SECRET)
    digest = hmac.new(settings.SECRET_KEY.encode(), b"sandbox-webhook", hashlib.sha256)
    return "whsec_" + digest.hexdigest()


def checkout_path(public_id: str) -> str:
    return f"/sandbox/checkout/{public_id}"


class SandboxProvider(base.Provider):
    name = "sandbox"
    methods = frozenset({base.CARD, base.ALIPAY, base.WECHAT_PAY})

    @property
    def merchant(self) -> str | None:
        return str(settings.SANDBOX_MERCHANT)

    def create_payment(self, request: base.PaymentRequest) -> base.CreatedPayment:
        if request.method not in self.methods:
            raise base.ProviderError(
                "method_not_supported", f"sandbox does not take {request.method}"
            )
        charge = SandboxCharge.objects.create(
            public_id="sbx_" + secrets.token_urlsafe(18),
            merchant=str(settings.SANDBOX_MERCHANT),
            reference=request.reference,
            amount=request.amount,
            currency=request.currency,
            method=request.method,
            description=request.description[:300],
            notify_url=request.notify_url,
            return_url=request.return_url,
            language=request.language,
        )
        url = settings.SITE_URL.rstrip("/") + checkout_path(charge.public_id)
        if request.method == base.WECHAT_PAY and request.surface in (None, base.DESKTOP):
            # Native (QR) payment: the payer scans the code with a phone, which opens the page.
            # On a phone (H5, JSAPI) the page opens on the phone itself.
            return base.CreatedPayment(
                charge.public_id, base.NextAction("qr", url=url, qr_data=url)
            )
        return base.CreatedPayment(charge.public_id, base.NextAction("redirect", url=url))

    def parse_notification(
        self, headers: Mapping[str, str], body: bytes
    ) -> list[base.ProviderEvent]:
        header = next(
            (v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER.lower()), None
        )
        try:
            verify_body(webhook_secret(), header, body)
        except DomainError as exc:
            raise base.InvalidNotification(f"{exc.code}: {exc.message}") from None
        try:
            event = json.loads(body)
            data = event["data"]
            event_id = str(event["id"])
            kind = EVENT_KINDS.get(str(event["type"]), base.IGNORED)
            amount = data.get("amount")
            if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int)):
                raise TypeError("amount")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise base.InvalidNotification(f"malformed sandbox event: {exc!r}") from None
        return [
            base.ProviderEvent(
                event_id=event_id,
                kind=kind,
                reference=data.get("reference"),
                provider_ref=data.get("payment"),
                amount=amount,
                currency=data.get("currency"),
                merchant=data.get("merchant"),
                failure_code=data.get("failure_code"),
                raw=event,
                refund_reference=data.get("refund_reference"),
                provider_refund_ref=data.get("refund"),
            )
        ]

    def query(self, reference: str, provider_ref: str | None) -> base.ProviderPaymentStatus:
        charge = SandboxCharge.objects.filter(reference=reference).first()
        if charge is None:
            return base.ProviderPaymentStatus("unknown")
        status = {
            SandboxChargeStatus.REQUIRES_ACTION: "pending",
            SandboxChargeStatus.SUCCEEDED: "succeeded",
            SandboxChargeStatus.REFUNDED: "succeeded",  # it was captured
            SandboxChargeStatus.DECLINED: "failed",
        }[SandboxChargeStatus(charge.status)]
        return base.ProviderPaymentStatus(
            status,  # type: ignore[arg-type]
            provider_ref=charge.public_id,
            amount=charge.amount,
            currency=charge.currency,
            merchant=charge.merchant,
            failure_code=charge.failure_code or None,
        )

    def statement(self, day: date) -> list[base.StatementLine]:
        """The gateway's own books of ``day`` (UTC): charges it captured (settled then, and
        not declined) and the refunds it made."""
        start, end = base.day_window(day, self.statement_zone)
        lines = [
            base.StatementLine(
                kind=base.STATEMENT_PAYMENT,
                reference=charge.reference,
                provider_ref=charge.public_id,
                amount=charge.amount,
                currency=charge.currency,
                at=charge.settled_at,
            )
            for charge in SandboxCharge.objects.filter(
                status__in=(SandboxChargeStatus.SUCCEEDED, SandboxChargeStatus.REFUNDED),
                settled_at__gte=start,
                settled_at__lt=end,
            ).order_by("settled_at", "pk")
        ]
        lines += [
            base.StatementLine(
                kind=base.STATEMENT_REFUND,
                reference=made.refund_reference,
                provider_ref=made.public_id,
                amount=made.amount,
                currency=made.charge.currency,
                at=made.created_at,
                payment_reference=made.charge.reference,
            )
            for made in SandboxRefund.objects.select_related("charge")
            .filter(created_at__gte=start, created_at__lt=end)
            .order_by("created_at", "pk")
        ]
        return lines

    def make_refund(self, refund: base.RefundRequest) -> base.RefundResult:
        amount = refund.amount
        with transaction.atomic():
            existing = SandboxRefund.objects.filter(
                refund_reference=refund.refund_reference
            ).first()
            if existing is not None:  # idempotent on the refund reference
                return base.RefundResult("succeeded", existing.public_id)
            charge = (
                SandboxCharge.objects.select_for_update().filter(reference=refund.reference).first()
            )
            if charge is None:
                raise base.ProviderError("unknown_payment", "no such sandbox payment")
            if charge.status != SandboxChargeStatus.SUCCEEDED:
                raise base.ProviderError("not_refundable", f"sandbox payment is {charge.status}")
            # Like a real gateway: several partial refunds, together at most the charge.
            refunded = charge.refunds.aggregate(total=Sum("amount"))["total"] or 0
            if (
                amount <= 0
                or refund.total != charge.amount
                or amount > charge.amount - refunded
                or refund.currency != charge.currency
            ):
                raise base.ProviderError(
                    "invalid_amount", "the sandbox refunds at most what is left of a payment"
                )
            made = SandboxRefund.objects.create(
                public_id="sbxr_" + secrets.token_urlsafe(12),
                charge=charge,
                refund_reference=refund.refund_reference,
                amount=amount,
            )
            if refunded + amount == charge.amount:
                charge.status = SandboxChargeStatus.REFUNDED
                charge.save(update_fields=["status"])
            queue_event(charge, "refund.succeeded", refund=made)
            if settings.SANDBOX_OUT_OF_ORDER:
                # The payment's success notification arrives again after its refund.
                queue_event(charge, "payment.succeeded", event_id=f"evt_{charge.public_id}_final")
        return base.RefundResult("succeeded", made.public_id)


# --- the gateway side: checkout page outcomes, webhook delivery ----------------------------


def settle(charge: SandboxCharge, outcome: str) -> bool:
    """The payer submitted the hosted page. Settle the charge once and queue its webhook(s).
    Returns False if it was already settled."""
    declined = outcome != "succeed" or settings.SANDBOX_DECLINE_ALL
    now = timezone.now()
    with transaction.atomic():
        won = SandboxCharge.objects.filter(
            pk=charge.pk, status=SandboxChargeStatus.REQUIRES_ACTION
        ).update(
            status=SandboxChargeStatus.DECLINED if declined else SandboxChargeStatus.SUCCEEDED,
            failure_code="card_declined" if declined else "",
            settled_at=now,
        )
        if not won:
            return False
        charge.refresh_from_db()
        kind = "payment.failed" if declined else "payment.succeeded"
        # One event id per fact; copies are a gateway's retries of the same event.
        final_id = f"evt_{charge.public_id}_final"
        for _copy in range(max(1, settings.SANDBOX_WEBHOOK_COPIES)):
            queue_event(charge, kind, event_id=final_id)
        if settings.SANDBOX_OUT_OF_ORDER:
            # A stale "still pending" notification, created earlier, delivered after the result.
            queue_event(
                charge,
                "payment.pending",
                event_id=f"evt_{charge.public_id}_pending",
                created=int(charge.created_at.timestamp()),
            )
    return True


def queue_event(
    charge: SandboxCharge,
    kind: str,
    *,
    event_id: str | None = None,
    refund: SandboxRefund | None = None,
    created: int | None = None,
) -> None:
    """Queue one webhook delivery of event ``kind`` about ``charge`` (or its ``refund``)
    through the worker, in the caller's transaction."""
    from simtopup.payments.tasks import deliver_sandbox_event_task

    status = {
        "payment.succeeded": "succeeded",
        "payment.failed": "failed",
        "payment.pending": "pending",
        "refund.succeeded": "refunded",
    }.get(kind, charge.status)
    data: dict[str, Any] = {
        "payment": charge.public_id,
        "reference": charge.reference,
        "amount": charge.amount,
        "currency": charge.currency,
        "merchant": charge.merchant,
        "method": charge.method,
        "status": status,
        "failure_code": (charge.failure_code or None) if kind == "payment.failed" else None,
    }
    if refund is not None:
        data["refund"] = refund.public_id
        data["refund_reference"] = refund.refund_reference
        data["amount"] = refund.amount
    payload = {
        "id": event_id or "evt_" + secrets.token_urlsafe(16),
        "type": kind,
        "created": created if created is not None else int(time.time()),
        "data": data,
    }
    task = deliver_sandbox_event_task
    delay = settings.SANDBOX_WEBHOOK_DELAY_SECONDS
    if delay > 0:
        task = task.using(run_after=timezone.now() + timedelta(seconds=delay))
    task.enqueue(payload, charge.notify_url, 1)


def deliver(payload: dict[str, Any], notify_url: str, attempt: int) -> str:
    """Send one event to the merchant, signed now; retried with backoff when refused."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "simtopup-sandbox-gateway/1",
        SIGNATURE_HEADER: sign_body(webhook_secret(), body),
    }
    if settings.SANDBOX_WEBHOOK_DELIVERY == "direct":
        from simtopup.payments.webhooks import receive

        status = receive("sandbox", headers, body).status
    else:
        request = urllib.request.Request(  # noqa: S310 - our own notify URL
            notify_url, data=body, method="POST", headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=settings.WEBHOOK_TIMEOUT_SECONDS) as r:  # noqa: S310
                status = r.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError as exc:
            logger.warning("sandbox webhook to %s failed: %s", notify_url, exc)
            status = 0
    if 200 <= status < 300:
        return "delivered"
    backoff = settings.SANDBOX_WEBHOOK_BACKOFF
    if attempt > len(backoff):
        logger.error("sandbox webhook %s given up after %s attempts", payload["id"], attempt)
        return "failed"
    from simtopup.payments.tasks import deliver_sandbox_event_task

    deliver_sandbox_event_task.using(
        run_after=timezone.now() + timedelta(seconds=backoff[attempt - 1])
    ).enqueue(payload, notify_url, attempt + 1)
    return f"retry (HTTP {status})"
