"""The operator's numbers about payments: success rate per provider, refunds pending and
provider notifications flagged for review, read from the payment rows themselves; and the
revenue of a period net of its refunds (the sales of ``orders.reports`` minus the refunds
decided in the period), which the dashboard shows beside the ledger's revenue account."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Q, Sum

from simtopup.orders import reports as orders_reports
from simtopup.payments.models import Payment, PaymentEvent, PaymentStatus, Refund, RefundStatus
from simtopup.payments.staff_refunds import OF_THE_SALE

# The provider took the money (a refund later does not undo the success of the payment).
TOOK_MONEY = (PaymentStatus.SUCCEEDED, PaymentStatus.REFUND_PENDING, PaymentStatus.REFUNDED)


@dataclass(frozen=True)
class ProviderRate:
    provider: str
    attempts: int  # concluded: every payment but the pending ones
    succeeded: int
    pending: int

    @property
    def rate(self) -> float | None:
        """Succeeded / concluded, None when nothing concluded."""
        return self.succeeded / self.attempts if self.attempts else None


def success_by_provider(since: datetime, until: datetime) -> list[ProviderRate]:
    """Payments created in ``[since, until)`` per provider: concluded, succeeded, pending."""
    rows = (
        Payment.objects.filter(created_at__gte=since, created_at__lt=until)
        .values("provider")
        .annotate(
            total=Count("pk"),
            succeeded=Count("pk", filter=Q(status__in=TOOK_MONEY)),
            pending=Count("pk", filter=Q(status=PaymentStatus.PENDING)),
        )
        .order_by("provider")
    )
    return [
        ProviderRate(r["provider"], r["total"] - r["pending"], r["succeeded"], r["pending"])
        for r in rows
    ]


@dataclass(frozen=True)
class RefundsOpen:
    pending: int
    pending_amounts: dict[str, int]  # currency → minor units
    flagged_events: int
    # Provider refunds that failed after every retry: customer service retries them or
    # sends them to the card's credit (payments/staff_refunds.py).
    failed: int = 0


def refunds_open() -> RefundsOpen:
    """Refunds still pending (any age) or failed, and provider notifications flagged and not
    reviewed."""
    amounts = dict(
        Refund.objects.filter(status=RefundStatus.PENDING)
        .values_list("currency")
        .annotate(total=Sum("amount"))
        .order_by("currency")
    )
    return RefundsOpen(
        pending=Refund.objects.filter(status=RefundStatus.PENDING).count(),
        pending_amounts={c: int(a or 0) for c, a in amounts.items()},
        flagged_events=PaymentEvent.objects.filter(
            flagged_at__isnull=False, reviewed_at__isnull=True
        ).count(),
        failed=Refund.objects.filter(status=RefundStatus.FAILED).count(),
    )


# --- revenue net of refunds ----------------------------------------------------------------
# What an operator reads as a period's revenue is what it kept: the sales of the period minus
# the refunds decided in the period (a refund of last week's order lowers this week's
# revenue, as it lowered the ledger's revenue account the moment it was decided). Refunds of
# a fulfilled order are the ones that come out of revenue (payments/staff_refunds.py); an
# order that failed was never revenue, and neither is its automatic refund.


@dataclass(frozen=True)
class RevenueRow:
    key: str
    currency: str
    count: int  # sales in the period
    sold: int  # what those sales took
    refunded: int  # refunds of sold orders decided in the period
    refunds: int  # how many

    @property
    def revenue(self) -> int:
        return self.sold - self.refunded


def refunds_by(
    field: str, since: datetime, until: datetime
) -> dict[tuple[str, str], tuple[int, int]]:
    """Refunds of sold orders decided in ``[since, until)``, by the order's ``channel`` or
    ``payment_method`` and currency: (count, amount). Only the refunds of what paid for
    the order (``staff_refunds.OF_THE_SALE``): those are the ones that left revenue."""
    if field not in ("channel", "payment_method"):
        raise ValueError(field)
    rows = (
        Refund.objects.filter(
            OF_THE_SALE,
            created_at__gte=since,
            created_at__lt=until,
            order__status__in=orders_reports.SOLD,
        )
        .values(f"order__{field}", "currency")
        .annotate(n=Count("pk"), total=Sum("amount"))
        .order_by()
    )
    return {
        (r[f"order__{field}"] or "", r["currency"]): (r["n"], int(r["total"] or 0)) for r in rows
    }


def revenue_by(field: str, since: datetime, until: datetime) -> list[RevenueRow]:
    """Sales (``orders.reports.sales_by``) and refunds (:func:`refunds_by`) of
    ``[since, until)`` side by side, and the revenue they leave, by ``channel`` or
    ``payment_method`` and currency."""
    sales = {(r.key, r.currency): r for r in orders_reports.sales_by(field, since, until)}
    refunds = refunds_by(field, since, until)
    rows = []
    for key, currency in sorted(set(sales) | set(refunds)):
        sale = sales.get((key, currency))
        n, refunded = refunds.get((key, currency), (0, 0))
        rows.append(
            RevenueRow(
                key,
                currency,
                sale.count if sale else 0,
                sale.revenue if sale else 0,
                refunded,
                n,
            )
        )
    return rows
