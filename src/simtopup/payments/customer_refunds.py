"""What a customer is shown of a fulfilled order's refunds — on the website's order page and
history, in the app API's order body and on the receipt (PDF and HTML) — written once here.

Each refund of a fulfilled order (a staff refund: ``payments.staff_refunds``) is one line:
"Refunded ¥x.xx on <date> (to your card's credit / to your original payment method)" once the
money has gone, "A refund of ¥x.xx to your original payment method is on its way" while the
provider is still to make it. A provider refund that failed after its retries waits for
customer service (retry, or the card's credit instead): for the customer it is still on its
way. Amounts are the refund rows' own, the same amounts the ledger moved when each refund
was decided. The refunds of an order that failed are its automatic full refund, which the
order's own status already tells (``refunded``), so they are not listed again.

The date is the day the money went (``settled_at``), or the day the refund was decided while
it is on its way, in the customer's time zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from django.utils.translation import gettext as _

from simtopup.core.money import format_money
from simtopup.orders.models import Order, OrderStatus
from simtopup.payments.models import Payment, Refund, RefundDestination, RefundStatus

DONE = "refunded"
ON_ITS_WAY = "pending"


@dataclass(frozen=True)
class CustomerRefund:
    amount: int
    currency: str
    destination: str  # "credit" or "provider"
    state: str  # DONE or ON_ITS_WAY
    at: datetime  # when the money went, or when the refund was decided (on its way)


def customer_refunds(order: Order) -> list[CustomerRefund]:
    """The refunds a customer sees of ``order``, oldest first (none unless it is fulfilled)."""
    if order.status != OrderStatus.FULFILLED:
        return []
    # ``order.refunds``: lists prefetch it (orders.customer.customer_orders), so a page of
    # orders reads its refunds in one query, not one per order; and ``order.payment`` (its
    # paying attempt) comes with the order there too.
    paying = _paying_payment_id(order)
    rows = sorted(
        (r for r in order.refunds.all() if of_the_sale(r, paying)),
        key=lambda r: (r.created_at, r.pk),
    )
    return [_of(r) for r in rows]


def of_the_sale(refund: Refund, paying_payment_id: int | None) -> bool:
    """``staff_refunds.OF_THE_SALE`` for a refund already read: to the card's credit, or of the
    payment that paid the order. The automatic refund of an earlier attempt whose money came
    late gave back another payment, not this top-up: the customer is not told the top-up was
    refunded (tests/test_review_fixes.py checks the two forms agree)."""
    return refund.payment_id is None or refund.payment_id == paying_payment_id


def _paying_payment_id(order: Order) -> int | None:
    try:
        return order.payment.pk  # the order's paying attempt (Payment.current_for)
    except Payment.DoesNotExist:
        return None


def _of(refund: Refund) -> CustomerRefund:
    done = refund.status == RefundStatus.SUCCEEDED
    return CustomerRefund(
        amount=refund.amount,
        currency=refund.currency,
        destination=str(refund.destination),
        state=DONE if done else ON_ITS_WAY,
        at=(refund.settled_at or refund.created_at) if done else refund.created_at,
    )


def refund_text(refund: CustomerRefund, zone: ZoneInfo) -> str:
    """One refund as a sentence in the active language."""
    amount = format_money(refund.amount, refund.currency)
    day = f"{refund.at.astimezone(zone):%Y-%m-%d}"
    to_credit = refund.destination == RefundDestination.CREDIT
    if refund.state == DONE:
        if to_credit:
            return _("Refunded %(amount)s on %(date)s (to your card's credit)") % {
                "amount": amount,
                "date": day,
            }
        return _("Refunded %(amount)s on %(date)s (to your original payment method)") % {
            "amount": amount,
            "date": day,
        }
    return _(
        "A refund of %(amount)s to your original payment method is on its way (decided on %(date)s)"
    ) % {"amount": amount, "date": day}


def refund_lines(order: Order, zone: ZoneInfo) -> list[str]:
    """The sentences of :func:`customer_refunds` for ``order``, in the active language."""
    return [refund_text(r, zone) for r in customer_refunds(order)]
