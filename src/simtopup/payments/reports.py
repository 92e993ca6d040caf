"""The operator's numbers about payments: success rate per provider, refunds pending and
provider notifications flagged for review, read from the payment rows themselves."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Q, Sum

from simtopup.payments.models import Payment, PaymentEvent, PaymentStatus, Refund, RefundStatus

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


def refunds_open() -> RefundsOpen:
    """Refunds still pending (any age) and provider notifications flagged and not reviewed."""
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
    )
