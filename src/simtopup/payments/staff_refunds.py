"""Refunds decided by customer service: any part of what a fulfilled order's payer paid goes
back, through the payment's provider or onto the card's credit, with a reason, audited.

The rules, written once here for every door (the console's desk today):

- Only a fulfilled customer order is refunded by staff. An order still being fulfilled
  (``paid``/``fulfilling``) is refused (``order_not_settled``): its fulfilment may still
  fail and refund it in full by itself. An order that failed was refunded in full when it
  failed (``order_already_refunded``); one never paid is refused (``order_not_paid``), and so
  are resellers' sales (their money is the reseller's float, ``refund_not_supported``).
- Several refunds may add up to at most what was paid (``refund_exceeds_paid``): the payment
  row and then the order row are locked (``select_for_update``, the lock order of
  ``payments.actions``) before the refunds so far are summed, so two staff members refunding
  at once are served one after the other and the second sees the first's refund.
- Money: a fulfilled order's money is the operator's (``revenue``; a pay-per-use plan's
  landed on the card's credit, which stays there — a refund is the operator's money going
  back, not a take-back of the credit). A refund through the provider moves ``revenue →
  gateway_clearing`` when decided (the gateway clearing expectation counts every refund
  through the provider), and the provider is then asked, with retries, idempotently on the
  refund's own reference (``actions.execute_refund``); a refund to the card's credit moves
  ``revenue → the card's credit`` at once and is ``succeeded`` when created. An order paid
  from the card's credit is always refunded to the card's credit.
- The payment's status: it stays ``succeeded`` while refunded in part (its refunds say how
  much); once its refunds add up to the whole amount it is ``refund_pending`` until the
  provider has made every one of them, then ``refunded``. The order stays ``fulfilled`` (the
  data or credit was delivered); its refunds are its story's last lines.
- Each refund writes its audit row (``refund``, with the reason) in its own transaction, and
  the customer is told (``refund_issued``, with the refund's amount) when the money has gone:
  at once for the card's credit, when the provider confirms for a provider refund.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import F, Q, Sum
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from simtopup.audit.log import record
from simtopup.audit.models import Action
from simtopup.core.errors import DomainError
from simtopup.core.money import format_money
from simtopup.core.transactions import durable
from simtopup.ledger.actions import Posting, lock_accounts, post, system_account
from simtopup.ledger.keys import order_key
from simtopup.orders.models import Channel, Order, OrderStatus
from simtopup.orders.notices import tell_customer
from simtopup.payments.models import (
    OUTSTANDING_REFUNDS,
    Payment,
    PaymentStatus,
    Refund,
    RefundDestination,
    RefundStatus,
    settle_refunded_payment,
)

# The payment method of an order paid from the card's credit (orders/customer.py).
BALANCE = "balance"
REASON_MAX = 500
CUSTOMER_CHANNELS = (Channel.APP, Channel.WEB, Channel.AUTO)
# The refunds of what paid for their order: to the card's credit, or of the payment that paid
# it (its current attempt). An earlier attempt of the same order whose money arrived late
# was refunded in full by itself (``paid_after_close``, out of gateway clearing): that refund
# gave back another payment, is not part of what the order can still give back, and never
# came out of revenue (``reports.refunds_by``).
OF_THE_SALE = Q(payment__isnull=True) | Q(payment__current_for_id=F("order_id"))


@dataclass(frozen=True)
class Refundable:
    """What can still be refunded of an order, and how; read without locks for a page,
    under locks by :func:`refund_by_staff`."""

    order: Order
    payment: Payment | None  # the captured payment; None when paid from the card's credit
    paid: int
    refunded: int
    refunds: list[Refund] = field(default_factory=list)
    # Why nothing can be refunded (a DomainError to raise), or None.
    refusal: DomainError | None = None

    @property
    def remaining(self) -> int:
        return 0 if self.refusal is not None else max(self.paid - self.refunded, 0)

    @property
    def destinations(self) -> tuple[str, ...]:
        """Where a refund may go: a card-credit-paid order's only ever to the card's credit."""
        if self.payment is None:
            return (RefundDestination.CREDIT,)
        return (RefundDestination.PROVIDER, RefundDestination.CREDIT)


def refunds_of(order: Order) -> list[Refund]:
    """Every refund of ``order``, oldest first — automatic ones and staff ones (the order's
    story shows each with its amount, destination and status)."""
    return list(Refund.objects.filter(order=order).order_by("created_at", "pk"))


def refundable(order: Order, *, lock: bool = False) -> Refundable:
    """What of ``order`` can be refunded. ``lock``: take the payment row's and then the
    order row's lock first (inside the caller's transaction) and read the order again."""
    payments = Payment.objects.filter(order_id=order.pk, captured_at__isnull=False)
    if lock:
        payments = payments.select_for_update(of=("self",)).order_by("pk")
        list(payments)
        order = Order.objects.select_for_update(of=("self",)).get(pk=order.pk)
    payment = (
        None
        if order.payment_method == BALANCE
        else Payment.objects.filter(current_for_id=order.pk, captured_at__isnull=False).first()
    )
    refunds = refunds_of(order)
    refunded = int(
        Refund.objects.filter(OF_THE_SALE, order=order).aggregate(total=Sum("amount"))["total"] or 0
    )
    return Refundable(order, payment, order.amount, refunded, refunds, _refusal(order, payment))


def _refusal(order: Order, payment: Payment | None) -> DomainError | None:
    if order.channel not in CUSTOMER_CHANNELS:
        return DomainError(
            "refund_not_supported",
            _("A reseller's sale is paid from its float: it is not refunded here."),
            409,
        )
    if order.paid_at is None or order.status in (
        OrderStatus.AWAITING_PAYMENT,
        OrderStatus.CANCELLED,
    ):
        return DomainError("order_not_paid", _("This order was never paid."), 409)
    if order.status in (OrderStatus.PAID, OrderStatus.FULFILLING):
        return DomainError(
            "order_not_settled",
            _("This order is still being credited: refund it once it is done."),
            409,
        )
    if order.status in (OrderStatus.FAILED, OrderStatus.REFUNDED):
        return DomainError(
            "order_already_refunded",
            _("This top-up failed and its money already went back in full."),
            409,
        )
    if order.payment_method != BALANCE and payment is None:
        # A fulfilled provider order always has its captured payment (payment_consistency).
        return DomainError("order_not_paid", _("This order was never paid."), 409)
    return None


def refund_by_staff(
    order: Order,
    amount: int,
    destination: str,
    reason: str,
    actor: str,
    ip: str | None = None,
) -> Refund:
    """Refund ``amount`` (minor units of the order's currency) of a fulfilled ``order`` to
    ``destination`` (``provider`` or ``credit``), because of ``reason``, decided by ``actor``
    (``audit.log.staff_actor``). Opens its own transaction (retried if chosen as a
    deadlock's victim); raises :class:`DomainError` with nothing changed. A refund through
    the provider is made afterwards by the worker (``refund_task``)."""
    reason = (reason or "").strip()
    if not reason:
        raise DomainError("reason_required", _("Say why the order is refunded."), 422)
    if len(reason) > REASON_MAX:
        raise DomainError(
            "reason_too_long",
            _("The reason can be at most %(max)s characters.") % {"max": REASON_MAX},
            422,
        )
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise DomainError("amount_invalid", _("The amount must be greater than zero."), 422)
    if destination not in RefundDestination.values:
        raise DomainError(
            "destination_invalid",
            _("Refund through the payment's provider or to the card's credit."),
            422,
        )
    return durable(lambda: _refund(order.pk, amount, destination, reason, actor, ip))


def _refund(
    order_id: int, amount: int, destination: str, reason: str, actor: str, ip: str | None
) -> Refund:
    from simtopup.payments.tasks import refund_task

    state = refundable(Order.objects.get(pk=order_id), lock=True)
    order, payment = state.order, state.payment
    if state.refusal is not None:
        raise state.refusal
    if amount > state.remaining:
        raise DomainError(
            "refund_exceeds_paid",
            _("At most %(amount)s of this order can still be refunded.")
            % {"amount": format_money(state.remaining, order.currency)},
            409,
        )
    if payment is None:
        destination = RefundDestination.CREDIT
    now = timezone.now()
    to_credit = destination == RefundDestination.CREDIT
    refund = Refund.objects.create(
        order=order,
        payment=payment,
        reference="rf_" + secrets.token_hex(12),
        amount=amount,
        currency=order.currency,
        destination=destination,
        reason=reason,
        requested_by=actor[:200],
        status=RefundStatus.SUCCEEDED if to_credit else RefundStatus.PENDING,
        settled_at=now if to_credit else None,
        next_attempt_at=None if to_credit else now,
    )
    revenue = system_account("revenue", order.currency)
    if to_credit:
        credit = order.device.credit_account
        lock_accounts([credit.pk])
        post(
            [
                Posting(
                    revenue,
                    credit,
                    amount,
                    "order_refund",
                    order_key(order.pk, f"refund:{refund.reference}"),
                    f"refund {refund.reference} of order {order.pk} to the card's credit",
                )
            ]
        )
    else:
        assert payment is not None  # only a payment's provider refunds (see above)
        post(
            [
                Posting(
                    revenue,
                    system_account("gateway_clearing", order.currency),
                    amount,
                    "payment_refund",
                    order_key(order.pk, f"refund:{refund.reference}"),
                    f"refund {refund.reference} of order {order.pk} through {payment.provider}",
                )
            ]
        )
    before_status = payment.status if payment is not None else None
    after_status = _settle_payment(payment, state.refunded + amount, now)
    record(
        Action.REFUND,
        order,
        actor=actor,
        ip=ip,
        before={
            "refunded": state.refunded,
            "remaining": state.remaining,
            "payment_status": before_status,
        },
        after={
            "refund": refund.reference,
            "amount": amount,
            "currency": order.currency,
            "destination": destination,
            "status": refund.status,
            "refunded": state.refunded + amount,
            "remaining": state.remaining - amount,
            "payment_status": after_status,
        },
        reason=reason,
    )
    if to_credit:
        tell_customer(order, "refund_issued", amount=amount)
    else:
        # The task row commits with the refund; the janitor retries whatever is pending.
        refund_task.enqueue(refund.pk)
    return refund


def _settle_payment(payment: Payment | None, refunded: int, now: datetime) -> str | None:
    """The payment's status once ``refunded`` of it has been decided (see the module's
    docstring); the payment row is locked by the caller."""
    if payment is None:
        return None
    if refunded < payment.amount:
        return str(payment.status)
    outstanding = Refund.objects.filter(payment=payment, status__in=OUTSTANDING_REFUNDS).exists()
    if outstanding:
        Payment.objects.filter(pk=payment.pk, status=PaymentStatus.SUCCEEDED).update(
            status=PaymentStatus.REFUND_PENDING
        )
        return str(PaymentStatus.REFUND_PENDING)
    Payment.objects.filter(pk=payment.pk, status=PaymentStatus.SUCCEEDED).update(
        status=PaymentStatus.REFUNDED, refunded_at=now
    )
    return str(PaymentStatus.REFUNDED)


# --- a provider refund that failed for good ------------------------------------------------
# After its last retry (``actions.execute_refund``) a refund through the provider is
# ``failed``: its money left revenue (or order clearing) into ``gateway_clearing`` when it
# was decided, so it still counts as refunded (the limit above) and the gateway clearing
# expectation still counts it. Customer service gets it moving again in one of two ways, each
# exactly once (a compare-and-swap on the refund's ``failed`` status) and audited (``refund``,
# with the reason):
# - ask the provider again: the refund is ``pending`` again with its attempts reset, on its
#   own reference (the provider is idempotent on it), and queued; the ledger does not move;
# - send it to the card's credit instead: the money goes ``gateway_clearing → card credit``
#   (it left revenue when the refund was decided, so revenue does not move again and a
#   refund counts once in the revenue of the day it was decided), the refund becomes a
#   ``credit`` refund that ``succeeded`` now, the payment is ``refunded`` once none of its
#   refunds is pending, and the customer is told.


def _not_failed() -> DomainError:
    return DomainError(
        "refund_not_failed",
        _("Only a refund through the provider that failed can be retried or redirected."),
        409,
    )


def _failed_refund(refund_id: int) -> Refund:
    refund = Refund.objects.select_related("order", "payment").get(pk=refund_id)
    if refund.status != RefundStatus.FAILED or refund.destination != RefundDestination.PROVIDER:
        raise _not_failed()
    return refund


def _check_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise DomainError("reason_required", _("Say why the order is refunded."), 422)
    if len(reason) > REASON_MAX:
        raise DomainError(
            "reason_too_long",
            _("The reason can be at most %(max)s characters.") % {"max": REASON_MAX},
            422,
        )
    return reason


def retry_failed_refund(refund: Refund, reason: str, actor: str, ip: str | None = None) -> Refund:
    """Ask the provider once more for a refund that failed after its retries: ``pending``
    again, its attempts counted afresh, queued for the worker. Raises ``refund_not_failed``
    (409) when it is not (or no longer) a failed provider refund."""
    reason = _check_reason(reason)
    return durable(lambda: _retry(refund.pk, reason, actor, ip))


def _retry(refund_id: int, reason: str, actor: str, ip: str | None) -> Refund:
    from simtopup.payments.tasks import refund_task

    refund = _failed_refund(refund_id)
    now = timezone.now()
    won = Refund.objects.filter(
        pk=refund.pk, status=RefundStatus.FAILED, destination=RefundDestination.PROVIDER
    ).update(status=RefundStatus.PENDING, attempts=0, next_attempt_at=now)
    if won != 1:
        raise _not_failed()
    record(
        Action.REFUND,
        refund.order,
        actor=actor,
        ip=ip,
        before={
            "refund": refund.reference,
            "status": refund.status,
            "attempts": refund.attempts,
            "last_error": refund.last_error,
        },
        after={"refund": refund.reference, "status": RefundStatus.PENDING, "retry": True},
        reason=reason,
    )
    refund_task.enqueue(refund.pk)
    refund.refresh_from_db()
    return refund


def failed_refund_to_credit(
    refund: Refund, reason: str, actor: str, ip: str | None = None
) -> Refund:
    """Send a refund that failed at the provider to the card's credit instead (see above).
    Raises ``refund_not_failed`` (409) when it is not (or no longer) a failed provider
    refund."""
    reason = _check_reason(reason)
    return durable(lambda: _to_credit(refund.pk, reason, actor, ip))


def _to_credit(refund_id: int, reason: str, actor: str, ip: str | None) -> Refund:
    refund = _failed_refund(refund_id)
    if refund.provider_refund_ref:
        # The provider took the refund (it answered "pending" with its id) and may still make
        # it: sending the money to the credit too could pay the customer twice.
        raise DomainError(
            "refund_at_provider",
            _(
                "The provider has accepted this refund and may still make it: retry it through "
                "the provider instead."
            ),
            409,
        )
    payment_id = refund.payment_id
    assert payment_id is not None  # a provider refund always has its payment (a constraint)
    # The module's lock order: the payment row first (as _confirm_refund and _refund do).
    list(Payment.objects.select_for_update(of=("self",)).filter(pk=payment_id))
    now = timezone.now()
    won = Refund.objects.filter(
        pk=refund.pk, status=RefundStatus.FAILED, destination=RefundDestination.PROVIDER
    ).update(
        destination=RefundDestination.CREDIT,
        status=RefundStatus.SUCCEEDED,
        settled_at=now,
        next_attempt_at=None,
    )
    if won != 1:
        raise _not_failed()  # someone else got there first
    order = Order.objects.select_related("device", "customer", "plan").get(pk=refund.order_id)
    credit = order.device.credit_account
    lock_accounts([credit.pk])
    post(
        [
            Posting(
                system_account("gateway_clearing", refund.currency),
                credit,
                refund.amount,
                "order_refund",
                order_key(order.pk, f"refund:{refund.reference}:credit"),
                f"refund {refund.reference} of order {order.pk} to the card's credit "
                "instead of the provider",
            )
        ]
    )
    settle_refunded_payment(payment_id, now)
    payment_status = Payment.objects.filter(pk=payment_id).values_list("status", flat=True).first()
    Order.objects.filter(pk=order.pk, status=OrderStatus.FAILED).update(status=OrderStatus.REFUNDED)
    record(
        Action.REFUND,
        order,
        actor=actor,
        ip=ip,
        before={
            "refund": refund.reference,
            "status": refund.status,
            "destination": refund.destination,
            "last_error": refund.last_error,
        },
        after={
            "refund": refund.reference,
            "status": RefundStatus.SUCCEEDED,
            "destination": RefundDestination.CREDIT,
            "amount": refund.amount,
            "currency": refund.currency,
            "payment_status": payment_status,
        },
        reason=reason,
    )
    tell_customer(order, "refund_issued", amount=refund.amount)
    refund.refresh_from_db()
    return refund
