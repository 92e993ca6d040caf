"""Payments: start one through a provider, apply the provider's verdict exactly once,
refund, cancel, and the janitor's sweep of payments left pending.

Every verdict (a webhook event, or the answer to a status query) goes through the same
compare-and-swap transitions, so webhooks, duplicates, out-of-order deliveries and the
janitor can race freely: the ``Payment`` row's status decides who credits, and the ledger's
unique transfer keys make a second credit impossible anyway. Locks are always taken
payment row first, then order row.

Money: a capture moves the amount from ``gateway_clearing`` (money the provider holds for
us) into ``order_clearing``; fulfilment moves it on to revenue or the card's credit; a refund
moves it from ``order_clearing`` back to ``gateway_clearing`` when the refund is decided,
and the provider is then asked (with retries) to return it to the payer.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from simtopup.core.errors import DomainError
from simtopup.core.transactions import durable
from simtopup.ledger.actions import Posting, lock_accounts, post, system_account
from simtopup.ledger.keys import order_key
from simtopup.orders.actions import fulfil_paid_order
from simtopup.orders.models import Order, OrderStatus
from simtopup.orders.notices import tell_customer
from simtopup.orders.payers import Payer
from simtopup.payments.models import (
    OPEN,
    EventOutcome,
    Payment,
    PaymentEvent,
    PaymentStatus,
    Refund,
    RefundDestination,
    RefundStatus,
    settle_refunded_payment,
)
from simtopup.payments.providers.base import (
    FAILED,
    REFUND_FAILED,
    REFUNDED,
    SUCCEEDED,
    CreatedPayment,
    PaymentRequest,
    Provider,
    ProviderError,
    ProviderEvent,
    ProviderPaymentStatus,
)
from simtopup.payments.registry import get_provider

logger = logging.getLogger(__name__)

# How long a claimed refund attempt may run before another worker may try again.
REFUND_LEASE = timedelta(minutes=2)


def new_reference() -> str:
    """Our merchant reference: 28 characters of [a-z0-9_], fine for every provider (WeChat
    Pay allows at most 32)."""
    return "pay_" + secrets.token_hex(12)


def _move_clearing(payment: Payment, leg: Literal["capture", "refund"], memo: str) -> None:
    """A payment's money between the provider and orders (the module's "Money" above), in
    the caller's transaction: a capture moves its amount from ``gateway_clearing`` into
    ``order_clearing``, a refund back; the transfer is ``payment_<leg>``, once per payment
    under the key ``payment:<id>:<leg>``."""
    gateway = system_account("gateway_clearing", payment.currency)
    orders = system_account("order_clearing", payment.currency)
    source, destination = (gateway, orders) if leg == "capture" else (orders, gateway)
    post(
        [
            Posting(
                source,
                destination,
                payment.amount,
                f"payment_{leg}",
                f"payment:{payment.pk}:{leg}",
                memo,
            )
        ]
    )


# --- starting -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedPayment:
    """A payment the provider has created, not yet recorded with its order."""

    provider: str
    method: str
    reference: str
    amount: int
    currency: str
    created: CreatedPayment


def prepare_payment(
    provider: Provider,
    method: str,
    amount: int,
    currency: str,
    *,
    description: str,
    language: str = "zh-hans",
    client_ip: str | None = None,
    surface: str | None = None,
    payer_openid: str | None = None,
) -> PreparedPayment:
    """Ask the provider for a payment under a new reference and the payer's next action.

    Call it outside any transaction (a provider may take seconds; no database lock should
    wait on it), then record it with :func:`start_payment`. A payment prepared but never
    recorded is never shown to anybody and lapses at the provider.
    """
    reference = new_reference()
    base = settings.SITE_URL.rstrip("/")
    try:
        created = provider.create_payment(
            PaymentRequest(
                reference=reference,
                amount=amount,
                currency=currency,
                method=method,
                description=description,
                return_url=f"{base}/payments/return/{reference}",
                notify_url=f"{base}/payments/webhooks/{provider.name}",
                language=language,
                client_ip=client_ip,
                expires_at=timezone.now() + timedelta(seconds=settings.PAYMENT_EXPIRY_SECONDS),
                surface=surface,
                payer_openid=payer_openid,
            )
        )
    except ProviderError as exc:
        logger.warning("provider %s refused payment %s: %s", provider.name, reference, exc)
        if exc.retryable:
            raise DomainError(
                "provider_unavailable",
                _("The payment service is not reachable right now. Please try again."),
                503,
                headers={"Retry-After": "5"},
            ) from exc
        raise DomainError(
            "payment_refused",
            _("The payment service refused this payment. Please try another payment method."),
            422,
        ) from exc
    return PreparedPayment(provider.name, method, reference, amount, currency, created)


def start_payment(
    order: Order,
    provider: Provider,
    method: str,
    *,
    description: str,
    language: str = "zh-hans",
    client_ip: str | None = None,
    prepared: PreparedPayment | None = None,
    surface: str | None = None,
    payer_openid: str | None = None,
) -> Payment:
    """Record the order's payment, in the caller's transaction, from a payment prepared
    beforehand (if it still fits the order) or asked for now."""
    fits = prepared is not None and (
        prepared.provider,
        prepared.method,
        prepared.amount,
        prepared.currency,
    ) == (provider.name, method, order.amount, order.currency)
    if prepared is None or not fits:
        prepared = prepare_payment(
            provider,
            method,
            order.amount,
            order.currency,
            description=description,
            language=language,
            client_ip=client_ip,
            surface=surface,
            payer_openid=payer_openid,
        )
    payment = Payment.objects.create(
        order=order,
        current_for=order,
        provider=provider.name,
        method=method,
        amount=order.amount,
        currency=order.currency,
        reference=prepared.reference,
        provider_ref=prepared.created.provider_ref or "",
        checkout_url=prepared.created.next_action.url or "",
        qr_data=prepared.created.next_action.qr_data or "",
    )
    payment.next_check_at = _next_check(payment.created_at, payment.created_at)
    payment.save(update_fields=["next_check_at"])
    return payment


def _next_check(created_at: datetime, now: datetime) -> datetime | None:
    """The next slot of the query schedule after ``now`` (None once it is exhausted)."""
    for offset in settings.PAYMENT_QUERY_SCHEDULE:
        slot = created_at + timedelta(seconds=offset)
        if slot > now:
            return slot
    return None


# --- applying a provider's verdict --------------------------------------------------------


def mismatch(
    provider: Provider,
    expected: Payment | Refund,
    amount: int | None,
    currency: str | None,
    merchant: str | None,
    *,
    refund_reference: str | None = None,
    provider_refund_ref: str | None = None,
    stated_only: bool = False,
) -> str:
    """Why a provider's report (a notification or a query answer) does not match the payment
    or refund it claims to be about ("" if it does): the same amount and currency, our
    merchant where the provider reports one, and for a refund our refund reference (or the
    provider's refund id we stored). ``stated_only``: a missing amount or currency passes
    (a failure report moves no money); otherwise the report must state both."""
    problems = []
    if isinstance(expected, Refund):
        ours = refund_reference == expected.reference or bool(
            provider_refund_ref
            and expected.provider_refund_ref
            and provider_refund_ref == expected.provider_refund_ref
        )
        if not ours:
            named = refund_reference or provider_refund_ref or "no refund reference"
            problems.append(f"refund {named} != {expected.reference}")
    if amount != expected.amount and not (stated_only and amount is None):
        problems.append(f"amount {amount} != {expected.amount}")
    if (currency or "").upper() != expected.currency and not (stated_only and not currency):
        problems.append(f"currency {currency} != {expected.currency}")
    ours_at_provider = provider.merchant
    if ours_at_provider is not None and merchant is not None and merchant != ours_at_provider:
        problems.append(f"merchant {merchant} != {ours_at_provider}")
    return "; ".join(problems)


def record_event(provider: Provider, event: ProviderEvent) -> str:
    """Store a verified event once and act on it; returns the outcome. A duplicate (same
    provider and event id) changes nothing. One transaction, run again if chosen as a
    lock-conflict victim (core/transactions.py)."""
    return durable(lambda: _record_event(provider, event))


def _record_event(provider: Provider, event: ProviderEvent) -> str:
    payment = _find_payment(provider.name, event.reference, event.provider_ref)
    try:
        with transaction.atomic():
            stored = PaymentEvent.objects.create(
                provider=provider.name,
                event_id=event.event_id[:200],
                payment=payment,
                kind=event.kind[:40],
                payload=_jsonable(event.raw),
            )
    except IntegrityError:
        logger.info("payment event %s/%s is a duplicate", provider.name, event.event_id)
        return "duplicate"
    outcome, detail = _apply(provider, payment, event)
    flagged = outcome == EventOutcome.MISMATCH or (
        outcome == EventOutcome.UNKNOWN_PAYMENT and event.kind != FAILED
    )
    PaymentEvent.objects.filter(pk=stored.pk).update(
        outcome=outcome, detail=detail[:300], flagged_at=timezone.now() if flagged else None
    )
    return str(outcome)


def _jsonable(raw: Any) -> Any:
    import json

    try:
        return json.loads(json.dumps(raw, default=str))
    except (TypeError, ValueError):
        return {"repr": repr(raw)[:2000]}


def _find_payment(provider: str, reference: str | None, provider_ref: str | None) -> Payment | None:
    if reference:
        found = Payment.objects.filter(provider=provider, reference=reference).first()
        if found is not None:
            return found
    if provider_ref:
        return Payment.objects.filter(provider=provider, provider_ref=provider_ref).first()
    return None


def _apply(
    provider: Provider, payment: Payment | None, event: ProviderEvent
) -> tuple[EventOutcome, str]:
    if event.kind not in (SUCCEEDED, FAILED, REFUNDED, REFUND_FAILED):
        return EventOutcome.IGNORED, ""
    if payment is None:
        # Money taken for a payment we do not know (its order never committed?) needs a
        # person: error, not warning.
        logger.error(
            "%s event %s (%s) for an unknown payment %s",
            provider.name,
            event.event_id,
            event.kind,
            event.reference,
        )
        return EventOutcome.UNKNOWN_PAYMENT, f"reference {event.reference}"
    if event.kind == SUCCEEDED:
        return apply_success(
            payment, provider, event.amount, event.currency, event.merchant, event.provider_ref
        )
    if event.kind == FAILED:
        why = mismatch(
            provider, payment, event.amount, event.currency, event.merchant, stated_only=True
        )
        if why:
            return _log_mismatch(payment, provider, why)
        return apply_failure(payment, event.failure_code or "payment_failed")
    return _apply_refund_event(provider, payment, event)


def _refund_named(payment: Payment, event: ProviderEvent) -> Refund | None:
    """The refund of ``payment`` through its provider that a notification names (by our
    refund reference or the provider's refund id); a payment refunded once stands for its
    only refund, so that a notification naming another is flagged by ``mismatch``."""
    refunds = Refund.objects.filter(payment=payment, destination=RefundDestination.PROVIDER)
    named = Q()
    if event.refund_reference:
        named |= Q(reference=event.refund_reference)
    if event.provider_refund_ref:
        named |= Q(provider_refund_ref=event.provider_refund_ref)
    if named:
        found = refunds.filter(named).order_by("pk").first()
        if found is not None:
            return found
    only = list(refunds.order_by("pk")[:2])
    return only[0] if len(only) == 1 else None


def _apply_refund_event(
    provider: Provider, payment: Payment, event: ProviderEvent
) -> tuple[EventOutcome, str]:
    """A refund's notification: it must name our refund of this payment, with its amount and
    currency, before it confirms anything."""
    refund = _refund_named(payment, event)
    if refund is None:
        # Money going back that we never sent back (a refund made at the provider's
        # dashboard?): the ledger does not know of it, a person must look.
        named = event.refund_reference or event.provider_refund_ref or "unnamed"
        return _log_mismatch(payment, provider, f"refund {named} was not made here")
    why = mismatch(
        provider,
        refund,
        event.amount,
        event.currency,
        event.merchant,
        refund_reference=event.refund_reference,
        provider_refund_ref=event.provider_refund_ref,
    )
    if why:
        return _log_mismatch(payment, provider, why)
    if event.kind == REFUNDED:
        confirmed = _confirm_refund(refund, event.provider_refund_ref)
        return (EventOutcome.APPLIED if confirmed else EventOutcome.ALREADY_APPLIED), ""
    logger.error("provider %s: refund %s failed", provider.name, refund.reference)
    Refund.objects.filter(pk=refund.pk).update(last_error=(event.failure_code or "refund failed"))
    return EventOutcome.APPLIED, "refund failed at the provider"


def _log_mismatch(payment: Payment, provider: Provider, why: str) -> tuple[EventOutcome, str]:
    """A report that does not match changes nothing: one ERROR, and the report is flagged for
    an operator (by :func:`record_event`, or :func:`_flag_answer` for a query's answer)."""
    logger.error(
        "payment %s via %s: provider report does not match (%s); nothing changed, flagged "
        "for review",
        payment.reference,
        provider.name,
        why,
    )
    return EventOutcome.MISMATCH, why


def apply_success(
    payment: Payment,
    provider: Provider,
    amount: int | None,
    currency: str | None,
    merchant: str | None,
    provider_ref: str | None,
) -> tuple[EventOutcome, str]:
    """The provider captured the money: credit the order once (or refund it, if the order
    was closed meanwhile). Runs in the caller's transaction."""
    why = mismatch(provider, payment, amount, currency, merchant)
    if why:
        return _log_mismatch(payment, provider, why)
    now = timezone.now()
    updates: dict[str, Any] = {
        "status": PaymentStatus.SUCCEEDED,
        "captured_at": now,
        "settled_at": now,
        "failure_code": "",
    }
    if provider_ref:
        updates["provider_ref"] = provider_ref[:128]
    won = Payment.objects.filter(pk=payment.pk, status__in=OPEN, captured_at__isnull=True).update(
        **updates
    )
    if won != 1:
        return EventOutcome.ALREADY_APPLIED, ""
    payment.status, payment.captured_at = PaymentStatus.SUCCEEDED, now
    _move_clearing(
        payment, "capture", f"{payment.provider} {payment.reference} for order {payment.order_id}"
    )
    order = Order.objects.select_related("plan", "device").get(pk=payment.order_id)
    # Only the order's latest attempt pays it: money for an earlier, declined attempt that
    # arrives late (the payer tried again another way meanwhile) goes back.
    current = Payment.objects.filter(pk=payment.pk, current_for__isnull=False).exists()
    paid = (
        Order.objects.filter(pk=order.pk, status=OrderStatus.AWAITING_PAYMENT).update(
            status=OrderStatus.PAID, paid_at=now
        )
        if current
        else 0
    )
    if paid != 1:
        # Paid after the order was cancelled, expired or failed: the money goes back.
        logger.warning(
            "payment %s succeeded after order %s was %s; refunding",
            payment.reference,
            order.pk,
            order.status,
        )
        _start_refund(payment, "paid_after_close")
        return EventOutcome.LATE_REFUNDED, f"order was {order.status}"
    order.status, order.paid_at = OrderStatus.PAID, now
    fulfil_paid_order(order, now)
    return EventOutcome.APPLIED, ""


def apply_failure(payment: Payment, failure_code: str) -> tuple[EventOutcome, str]:
    """The payer was declined (or gave up): fail the payment and its order; nothing moves."""
    now = timezone.now()
    won = Payment.objects.filter(pk=payment.pk, status=PaymentStatus.PENDING).update(
        status=PaymentStatus.FAILED, failure_code=failure_code[:60], settled_at=now
    )
    if won != 1:
        return EventOutcome.ALREADY_APPLIED, ""
    Order.objects.filter(pk=payment.order_id, status=OrderStatus.AWAITING_PAYMENT).update(
        status=OrderStatus.FAILED,
        closed_at=now,
        failure_code="payment_failed",
        failure_detail=failure_code[:300],
    )
    return EventOutcome.APPLIED, ""


def retry_payment(
    order_id: int,
    provider: Provider,
    method: str,
    *,
    description: str,
    language: str = "zh-hans",
    client_ip: str | None = None,
    prepared: PreparedPayment | None = None,
    surface: str | None = None,
    payer_openid: str | None = None,
) -> Order:
    """Pay a declined order again, another way, in the caller's transaction: its declined
    attempt (failed, nothing captured) stays with the order but is no longer its current
    one, the order goes back from failed to awaiting payment (compare-and-swap) and a new
    attempt starts. Refused, with nothing changed, once the order is paid, expired,
    cancelled or has a live attempt."""
    refused = DomainError(
        "order_not_retryable", _("This order can no longer be paid another way."), 409
    )
    now = timezone.now()
    # Payment row first, then order row: the same lock order as apply_success.
    previous = Payment.objects.select_for_update().filter(current_for_id=order_id).first()
    if (
        previous is None
        or previous.status != PaymentStatus.FAILED
        or previous.captured_at is not None
    ):
        raise refused
    detached = Payment.objects.filter(
        pk=previous.pk,
        current_for_id=order_id,
        status=PaymentStatus.FAILED,
        captured_at__isnull=True,
    ).update(current_for=None)
    reopened = Order.objects.filter(
        pk=order_id,
        status=OrderStatus.FAILED,
        failure_code="payment_failed",
        paid_at__isnull=True,
        # Within the time an order may await its payment (sweep() expires it after that).
        created_at__gt=now - timedelta(seconds=settings.PAYMENT_EXPIRY_SECONDS),
    ).update(
        status=OrderStatus.AWAITING_PAYMENT,
        closed_at=None,
        failure_code="",
        failure_detail="",
        payment_method=method,
    )
    if detached != 1 or reopened != 1:
        raise refused
    order = Order.objects.get(pk=order_id)
    start_payment(
        order,
        provider,
        method,
        description=description,
        language=language,
        client_ip=client_ip,
        prepared=prepared,
        surface=surface,
        payer_openid=payer_openid,
    )
    return order


# --- cancelling ---------------------------------------------------------------------------


def cancel_awaiting_order(order: Order, reason: str = "cancelled") -> None:
    """Cancel an order still awaiting payment (the customer, or expiry). A payment that
    succeeds later is refunded automatically. Runs in the caller's transaction."""
    now = timezone.now()
    not_cancellable = DomainError(
        "order_not_cancellable", _("This order can no longer be cancelled."), 409
    )
    # Payment row first, then order row: the same lock order as apply_success.
    cancelled = Payment.objects.filter(order=order, status=PaymentStatus.PENDING).update(
        status=PaymentStatus.CANCELLED, failure_code=reason[:60]
    )
    if cancelled != 1 and Payment.objects.filter(order=order).exists():
        raise not_cancellable
    won = Order.objects.filter(pk=order.pk, status=OrderStatus.AWAITING_PAYMENT).update(
        status=OrderStatus.CANCELLED, closed_at=now, failure_code=reason[:40]
    )
    if won != 1:
        raise not_cancellable
    order.status, order.closed_at = OrderStatus.CANCELLED, now


# --- refunding ----------------------------------------------------------------------------


def refund_order(order: Order, reason: str) -> None:
    """Return the money of an order that was paid but will not be fulfilled; called by
    ``orders.actions.fail_and_refund`` right after the order left ``paid``/``fulfilling``, in
    its transaction. Card credit comes back at once; a provider payment is refunded through
    the provider (asynchronously, with retries)."""
    if order.payment_method == "balance":
        credit = order.device.credit_account
        lock_accounts([credit.pk])
        post(
            [
                Posting(
                    system_account("order_clearing", order.currency),
                    credit,
                    order.amount,
                    "order_refund",
                    order_key(order.pk, "refund"),
                    f"refund of order {order.pk} to the card's credit",
                )
            ]
        )
        Order.objects.filter(pk=order.pk, status=OrderStatus.FAILED).update(
            status=OrderStatus.REFUNDED
        )
        order.status = OrderStatus.REFUNDED
        tell_customer(order, "refund_issued")
        return
    payment = Payment.objects.get(current_for=order)
    if _start_refund(payment, reason) is None:
        # A paid order's payment is captured and refunded only here: anything else is a bug,
        # and rolling back keeps its money where check-ledger can see it.
        raise RuntimeError(f"order {order.pk}: payment {payment.reference} is {payment.status}")


def refund_failed_order(order: Order, code: str, detail: str) -> None:
    """A customer's order failed (``orders.actions.fail_and_refund``): its money goes back."""
    refund_order(order, code)
    logger.error(
        "order %s failed (%s: %s); refund of %s started", order.pk, code, detail, order.amount
    )


# What orders ask of payments (orders/payers.py), registered in payments/apps.py.
CUSTOMER_PAYER = Payer(refund=refund_failed_order)


def _start_refund(payment: Payment, reason: str) -> Refund | None:
    """Decide a full refund of a captured payment: move the money out of order clearing and
    queue the provider call. Once per payment (CAS + one Refund row per payment)."""
    from simtopup.payments.tasks import refund_task

    moved = Payment.objects.filter(pk=payment.pk, status=PaymentStatus.SUCCEEDED).update(
        status=PaymentStatus.REFUND_PENDING
    )
    if moved != 1:
        return None
    payment.status = PaymentStatus.REFUND_PENDING
    now = timezone.now()
    refund = Refund.objects.create(
        order_id=payment.order_id,
        payment=payment,
        reference="rf_" + payment.reference,
        amount=payment.amount,
        currency=payment.currency,
        reason=reason[:40],
        next_attempt_at=now,
    )
    _move_clearing(
        payment, "refund", f"refund {refund.reference} of order {payment.order_id} ({reason})"
    )
    # The task row commits with the refund (no refund without its trigger); the janitor
    # retries whatever is still pending.
    refund_task.enqueue(refund.pk)
    return refund


def _confirm_refund(refund: Refund, provider_refund_ref: str | None) -> bool:
    """The provider made a refund: settle it once, and its payment once no refund of it is
    left pending (a payment refunded in full is ``refund_pending`` until then; one refunded
    in part stays ``succeeded``). The payment row is locked first (the module's lock order),
    so two refunds of one payment confirmed at once cannot both leave it pending.

    A refund marked ``failed`` after its retries (the provider kept answering "pending", or
    kept failing to answer) may still have been made: when the provider says so it is
    settled too, so that customer service cannot send the same money to the card's credit
    a second time (``staff_refunds.failed_refund_to_credit`` needs it ``failed``)."""
    now = timezone.now()
    payment_id = refund.payment_id
    assert payment_id is not None  # only refunds through the provider are confirmed
    list(Payment.objects.select_for_update().filter(pk=payment_id))
    updates: dict[str, Any] = {"status": RefundStatus.SUCCEEDED, "settled_at": now}
    if provider_refund_ref:
        updates["provider_refund_ref"] = provider_refund_ref[:128]
    won = Refund.objects.filter(
        pk=refund.pk,
        status__in=(RefundStatus.PENDING, RefundStatus.FAILED),
        destination=RefundDestination.PROVIDER,
    ).update(**updates, next_attempt_at=None)
    if won != 1:
        return False
    settle_refunded_payment(payment_id, now)
    order_id = refund.order_id
    Order.objects.filter(pk=order_id, status=OrderStatus.FAILED).update(status=OrderStatus.REFUNDED)
    tell_customer(
        Order.objects.select_related("customer", "device", "plan").get(pk=order_id),
        "refund_issued",
        amount=refund.amount,
    )
    return True


def execute_refund(refund_id: int) -> str:
    """Ask the provider for a decided refund, now if it is due; retried with backoff. The
    provider call runs outside any transaction (providers are idempotent on the refund
    reference)."""
    now = timezone.now()
    claimed = Refund.objects.filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
        pk=refund_id,
        status=RefundStatus.PENDING,
    ).update(next_attempt_at=now + REFUND_LEASE, attempts=F("attempts") + 1)
    if claimed != 1:
        return "not_due"
    refund = Refund.objects.select_related("payment").get(pk=refund_id)
    payment = refund.payment
    # Pending refunds are refunds through the provider (one to the card's credit is made
    # when decided), and those always have their payment (a check constraint).
    assert payment is not None
    error = ""
    try:
        provider = get_provider(payment.provider)
        result = provider.refund(
            payment.reference,
            payment.provider_ref or None,
            refund.amount,
            refund.currency,
            refund.reference,
            payment.amount,
        )
    except ProviderError as exc:
        error = f"{exc.code}: {exc.message}"
    except Exception as exc:
        logger.exception("refund %s: provider crashed", refund.reference)
        error = f"error: {exc.__class__.__name__}"
    else:
        if result.status == "succeeded":
            with transaction.atomic(durable=True):
                _confirm_refund(refund, result.provider_refund_ref)
            logger.info("refund %s of order %s done", refund.reference, payment.order_id)
            return "refunded"
        error = f"provider answered {result.status}"
        if result.status == "pending" and result.provider_refund_ref:
            Refund.objects.filter(pk=refund.pk).update(
                provider_refund_ref=result.provider_refund_ref[:128]
            )
    backoff = settings.PAYMENT_REFUND_BACKOFF
    if refund.attempts > len(backoff):
        Refund.objects.filter(pk=refund.pk, status=RefundStatus.PENDING).update(
            status=RefundStatus.FAILED, last_error=error[:300], next_attempt_at=None
        )
        logger.error(
            "refund %s of order %s FAILED after %s attempts (%s): needs an operator",
            refund.reference,
            payment.order_id,
            refund.attempts,
            error,
        )
        return "failed"
    delay = timedelta(seconds=backoff[refund.attempts - 1])
    Refund.objects.filter(pk=refund.pk, status=RefundStatus.PENDING).update(
        next_attempt_at=timezone.now() + delay, last_error=error[:300]
    )
    logger.warning("refund %s: %s; retry in %s", refund.reference, error, delay)
    return "retry"


# --- the janitor --------------------------------------------------------------------------


def check_payment(payment_id: int) -> str:
    """Ask the provider where an open payment stands (on the query schedule) and apply the
    answer like a notification."""
    now = timezone.now()
    payment = Payment.objects.filter(pk=payment_id).first()
    if payment is None or payment.status not in OPEN:
        return "not_open"
    claimed = Payment.objects.filter(
        pk=payment.pk, status__in=OPEN, next_check_at=payment.next_check_at
    ).update(next_check_at=_next_check(payment.created_at, now), checks=F("checks") + 1)
    if claimed != 1:
        return "not_claimed"
    return _query_and_apply(payment)


def check_on_return(payment_id: int) -> str:
    """The payer is back from the provider's page: ask the provider once, now, where the
    payment stands (outside the query schedule), so that a payment the provider already has
    is shown as paid — never as still to be paid — before its notification arrives."""
    payment = Payment.objects.filter(pk=payment_id).first()
    if payment is None or payment.status != PaymentStatus.PENDING:
        return "not_open"
    return _query_and_apply(payment)


def _query_and_apply(payment: Payment) -> str:
    try:
        provider = get_provider(payment.provider)
        if not provider.supports_query:
            return "no_query"
        status = provider.query(payment.reference, payment.provider_ref or None)
    except Exception as exc:
        logger.warning("query of payment %s failed: %s", payment.reference, exc)
        return "error"
    if status.status == "succeeded":
        with transaction.atomic(durable=True):
            outcome, detail = apply_success(
                payment,
                provider,
                status.amount,
                status.currency,
                status.merchant,
                status.provider_ref,
            )
            if outcome == EventOutcome.MISMATCH:
                _flag_answer(payment, provider, status, detail)
        return str(outcome)
    if status.status == "failed":
        with transaction.atomic(durable=True):
            outcome, _detail = apply_failure(payment, status.failure_code or "payment_failed")
        return f"failed:{outcome}"
    return status.status


def _flag_answer(
    payment: Payment, provider: Provider, status: ProviderPaymentStatus, why: str
) -> None:
    """A query's answer that does not match is flagged like a notification: stored once per
    distinct answer (the janitor asks again on its schedule), for an operator to review."""
    answer = {
        "status": status.status,
        "provider_ref": status.provider_ref,
        "amount": status.amount,
        "currency": status.currency,
        "merchant": status.merchant,
    }
    digest = hashlib.sha256(repr(sorted(answer.items())).encode()).hexdigest()[:16]
    PaymentEvent.objects.get_or_create(
        provider=provider.name,
        event_id=f"query:{payment.reference}:{digest}",
        defaults={
            "payment": payment,
            "kind": SUCCEEDED,
            "payload": {"query": answer},
            "outcome": EventOutcome.MISMATCH,
            "detail": why[:300],
            "flagged_at": timezone.now(),
        },
    )


def expire_order(order_id: int) -> str:
    """An order not paid in time: ask the provider once more, then cancel it."""
    payment = Payment.objects.filter(current_for_id=order_id).first()
    if payment is not None and payment.status == PaymentStatus.PENDING:
        answer = _query_and_apply(payment)
        if answer not in ("pending", "unknown", "error", "no_query"):
            return answer
    order = Order.objects.get(pk=order_id)
    try:
        with transaction.atomic(durable=True):
            cancel_awaiting_order(order, "expired")
    except DomainError:
        return "not_cancellable"
    return "expired"


def sweep(limit: int = 200) -> dict[str, int]:
    """One janitor pass over payments: due status queries, expired orders, due refunds."""
    now = timezone.now()
    counts: dict[str, int] = {}

    def count(outcomes: Iterable[str]) -> None:
        for outcome in outcomes:
            counts[outcome] = counts.get(outcome, 0) + 1

    due = Payment.objects.filter(status__in=OPEN, next_check_at__lte=now).order_by("next_check_at")
    count(check_payment(pk) for pk in list(due.values_list("pk", flat=True)[:limit]))
    expired = Order.objects.filter(
        status=OrderStatus.AWAITING_PAYMENT,
        created_at__lt=now - timedelta(seconds=settings.PAYMENT_EXPIRY_SECONDS),
    ).order_by("pk")
    count(expire_order(pk) for pk in list(expired.values_list("pk", flat=True)[:limit]))
    refunds = Refund.objects.filter(status=RefundStatus.PENDING, next_attempt_at__lte=now)
    count(execute_refund(pk) for pk in list(refunds.values_list("pk", flat=True)[:limit]))
    return counts


# --- check-ledger -------------------------------------------------------------------------


def gateway_clearing_expected() -> dict[str, int]:
    """What the gateway clearing accounts must hold: refunds through the provider decided
    minus captures (the money providers owe us shows as a negative balance, like any source
    of funds). Refunds to the card's credit never pass through it."""
    expected: dict[str, int] = {}
    for currency, total in (
        Payment.objects.filter(captured_at__isnull=False)
        .values_list("currency")
        .annotate(total=Sum("amount"))
    ):
        code = f"system:gateway_clearing:{currency}"
        expected[code] = expected.get(code, 0) - int(total)
    for currency, total in (
        Refund.objects.filter(destination=RefundDestination.PROVIDER)
        .values_list("currency")
        .annotate(total=Sum("amount"))
    ):
        code = f"system:gateway_clearing:{currency}"
        expected[code] = expected.get(code, 0) + int(total)
    return expected


def payment_consistency() -> list[str]:
    """Orders paid through a provider must have a captured payment, and vice versa."""
    problems = []
    paid_without_capture = Order.objects.filter(
        status__in=(OrderStatus.PAID, OrderStatus.FULFILLING, OrderStatus.FULFILLED),
        payment__isnull=False,
        payment__captured_at__isnull=True,
    ).values_list("pk", flat=True)[:20]
    for pk in paid_without_capture:
        problems.append(f"order {pk} is paid but its payment was never captured")
    kept_without_order = Payment.objects.filter(
        captured_at__isnull=False, refunds__isnull=True
    ).exclude(order__status__in=(OrderStatus.PAID, OrderStatus.FULFILLING, OrderStatus.FULFILLED))
    for reference in kept_without_order.values_list("reference", flat=True)[:20]:
        problems.append(f"payment {reference} was captured, its order not served, not refunded")
    return problems
