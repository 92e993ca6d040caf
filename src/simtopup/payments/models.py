"""Payments of customer orders through a provider, the provider's notifications (each stored
once), refunds — and the sandbox gateway's own state, kept apart as a real gateway's would be.
"""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from simtopup.orders.models import Order


class PaymentStatus(models.TextChoices):
    PENDING = "pending", pgettext_lazy("choice", "pending")
    SUCCEEDED = "succeeded", pgettext_lazy("choice", "succeeded")
    FAILED = "failed", pgettext_lazy("choice", "failed")
    CANCELLED = "cancelled", pgettext_lazy("choice", "cancelled")
    REFUND_PENDING = "refund_pending", pgettext_lazy("choice", "refund pending")
    REFUNDED = "refunded", pgettext_lazy("choice", "refunded")


# The provider may still take the customer's money: the janitor keeps asking about these.
OPEN = (PaymentStatus.PENDING, PaymentStatus.CANCELLED, PaymentStatus.FAILED)


class Payment(models.Model):
    """One attempt to take an order's money through a provider. An order has one attempt,
    and another only after a declined one (``actions.retry_payment``): ``order`` is every
    attempt's order, ``current_for`` only the order's latest attempt's — ``order.payment`` is
    that attempt, earlier ones are ``order.payments``. At most one attempt of an order is
    pending (the partial unique constraint); at most one can pay the order (its
    awaiting → paid compare-and-swap), any other money that arrives is refunded."""

    order = models.ForeignKey(
        Order, on_delete=models.PROTECT, related_name="payments", verbose_name=_("order")
    )
    current_for = models.OneToOneField(
        Order,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="payment",
        verbose_name=_("current payment of"),
    )
    provider = models.CharField(max_length=20, verbose_name=_("provider"))
    method = models.CharField(max_length=20, verbose_name=_("payment method"))
    status = models.CharField(
        max_length=20,
        choices=PaymentStatus.choices,
        default=PaymentStatus.PENDING,
        verbose_name=_("status"),
    )
    amount = models.BigIntegerField(verbose_name=_("amount (minor units)"))
    currency = models.CharField(max_length=3, verbose_name=_("currency"))
    # Our merchant reference (out_trade_no, metadata): unique, random, never reused.
    reference = models.CharField(max_length=64, unique=True, verbose_name=_("reference"))
    provider_ref = models.CharField(
        max_length=128, blank=True, verbose_name=_("provider's reference")
    )
    # Signed page URLs (Alipay's carry an RSA signature) run to several kilobytes.
    checkout_url = models.TextField(blank=True, verbose_name=_("checkout URL"))
    qr_data = models.TextField(blank=True, verbose_name=_("QR code data"))
    # Janitor: when to ask the provider next, and how often it was asked.
    next_check_at = models.DateTimeField(null=True, blank=True, verbose_name=_("next check"))
    checks = models.PositiveIntegerField(default=0, verbose_name=_("checks"))
    failure_code = models.CharField(max_length=60, blank=True, verbose_name=_("failure code"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created"))
    # Set once, when the captured money entered the ledger (gateway clearing → order).
    captured_at = models.DateTimeField(null=True, blank=True, verbose_name=_("captured"))
    settled_at = models.DateTimeField(null=True, blank=True, verbose_name=_("settled"))
    refunded_at = models.DateTimeField(null=True, blank=True, verbose_name=_("refunded"))

    class Meta:
        verbose_name = _("payment")
        verbose_name_plural = _("payments")
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payments_amount_positive"),
            models.UniqueConstraint(
                fields=["order"],
                condition=Q(status="pending"),
                name="payments_one_pending_attempt_per_order",
            ),
            models.CheckConstraint(
                condition=Q(current_for__isnull=True) | Q(current_for=models.F("order")),
                name="payments_current_attempt_of_its_order",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "next_check_at"]),
            models.Index(fields=["provider", "provider_ref"]),
        ]

    def __str__(self) -> str:
        return f"payment {self.reference} ({self.status})"

    @property
    def refund(self) -> Refund | None:
        """The payment's first refund (of an order that failed: its only one), or None;
        ``refunds`` are all of them (staff may refund a fulfilled order in parts)."""
        return self.refunds.order_by("pk").first()


class EventOutcome(models.TextChoices):
    RECEIVED = "received", pgettext_lazy("choice", "received")
    APPLIED = "applied", pgettext_lazy("choice", "applied")
    ALREADY_APPLIED = "already_applied", pgettext_lazy("choice", "already applied")
    IGNORED = "ignored", pgettext_lazy("choice", "ignored")
    MISMATCH = "mismatch", pgettext_lazy("choice", "mismatch")
    UNKNOWN_PAYMENT = "unknown_payment", pgettext_lazy("choice", "unknown payment")
    LATE_REFUNDED = "late_refunded", pgettext_lazy("choice", "paid late, refunded")


class PaymentEvent(models.Model):
    """A verified provider notification, stored exactly once (provider + event id)."""

    provider = models.CharField(max_length=20, verbose_name=_("provider"))
    event_id = models.CharField(max_length=200, verbose_name=_("event ID"))
    payment = models.ForeignKey(
        Payment,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="events",
        verbose_name=_("payment"),
    )
    kind = models.CharField(max_length=40, verbose_name=_("kind"))
    payload = models.JSONField(default=dict, verbose_name=_("payload"))
    outcome = models.CharField(
        max_length=20,
        choices=EventOutcome.choices,
        default=EventOutcome.RECEIVED,
        verbose_name=_("outcome"),
    )
    detail = models.CharField(max_length=300, blank=True, verbose_name=_("detail"))
    received_at = models.DateTimeField(auto_now_add=True, verbose_name=_("received"))
    # Flagged for an operator: an authentic notification that does not match what we expect
    # (amount, currency, merchant, a refund not ours, money for a payment we do not know).
    # It changed nothing; it waits in the console until an operator marks it reviewed.
    flagged_at = models.DateTimeField(null=True, blank=True, verbose_name=_("flagged"))
    reviewed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("reviewed"))
    reviewed_by = models.CharField(max_length=150, blank=True, verbose_name=_("reviewed by"))

    class Meta:
        verbose_name = _("payment notification")
        verbose_name_plural = _("payment notifications")
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "event_id"], name="payments_event_once_per_provider"
            )
        ]
        indexes = [
            models.Index(
                fields=["flagged_at"],
                condition=Q(flagged_at__isnull=False, reviewed_at__isnull=True),
                name="payments_event_needs_review",
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.event_id} ({self.outcome})"


class RefundStatus(models.TextChoices):
    PENDING = "pending", pgettext_lazy("choice", "pending")
    SUCCEEDED = "succeeded", pgettext_lazy("choice", "succeeded")
    FAILED = "failed", pgettext_lazy("choice", "failed")


class RefundDestination(models.TextChoices):
    """Where a refund's money goes: back through the payment's provider (asynchronously,
    with retries), or onto the card's credit (at once)."""

    PROVIDER = "provider", pgettext_lazy("choice", "provider")
    CREDIT = "credit", pgettext_lazy("choice", "card credit")


class Refund(models.Model):
    """Money of a paid order going back to the payer: one row per refund, several (partial)
    refunds per order, together never more than was paid (``payments.staff_refunds``).

    The ledger moves when the row is created; a refund through the provider is then asked of
    the provider (with retries, idempotently on ``reference``), a refund to the card's credit
    is done at once (``succeeded`` when created). An order paid from the card's credit has no
    payment: its refunds name only the order. ``requested_by`` is empty for the automatic
    refund of an order that failed (``reason``: the failure's code), else the staff member
    who decided it (``reason``: their words)."""

    order = models.ForeignKey(
        Order, on_delete=models.PROTECT, related_name="refunds", verbose_name=_("order")
    )
    payment = models.ForeignKey(
        Payment,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="refunds",
        verbose_name=_("payment"),
    )
    reference = models.CharField(max_length=64, unique=True, verbose_name=_("reference"))
    amount = models.BigIntegerField(verbose_name=_("amount (minor units)"))
    currency = models.CharField(max_length=3, verbose_name=_("currency"))
    destination = models.CharField(
        max_length=10,
        choices=RefundDestination.choices,
        default=RefundDestination.PROVIDER,
        verbose_name=_("refund to"),
    )
    reason = models.CharField(max_length=500, verbose_name=_("reason"))
    requested_by = models.CharField(max_length=200, blank=True, verbose_name=_("requested by"))
    status = models.CharField(
        max_length=10,
        choices=RefundStatus.choices,
        default=RefundStatus.PENDING,
        verbose_name=_("status"),
    )
    provider_refund_ref = models.CharField(
        max_length=128, blank=True, verbose_name=_("provider's refund reference")
    )
    attempts = models.PositiveIntegerField(default=0, verbose_name=_("attempts"))
    next_attempt_at = models.DateTimeField(null=True, blank=True, verbose_name=_("next attempt"))
    last_error = models.CharField(max_length=300, blank=True, verbose_name=_("last error"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created"))
    settled_at = models.DateTimeField(null=True, blank=True, verbose_name=_("settled"))

    class Meta:
        verbose_name = _("refund")
        verbose_name_plural = _("refunds")
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payments_refund_positive"),
            # Only a payment's provider can send money back through the provider.
            models.CheckConstraint(
                condition=Q(destination="credit") | Q(payment__isnull=False),
                name="payments_refund_provider_has_payment",
            ),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"refund {self.reference} ({self.status})"


# A refund not yet made: still asked of the provider, or refused by it for good (customer
# service retries it or sends it to the card's credit).
OUTSTANDING_REFUNDS = (RefundStatus.PENDING, RefundStatus.FAILED)


def settle_refunded_payment(payment_id: int, now: datetime) -> bool:
    """``refund_pending`` → ``refunded`` once none of the payment's refunds is outstanding
    (the one rule for every path that settles a refund; the caller holds the payment's row
    lock). True when it moved."""
    if Refund.objects.filter(payment_id=payment_id, status__in=OUTSTANDING_REFUNDS).exists():
        return False
    return bool(
        Payment.objects.filter(pk=payment_id, status=PaymentStatus.REFUND_PENDING).update(
            status=PaymentStatus.REFUNDED, refunded_at=now
        )
    )


# --- the sandbox gateway's own books ------------------------------------------------------
# The sandbox plays an external gateway: these rows are its state, not ours. Our side only
# learns about them through signed webhooks and query()/refund() answers.


class SandboxChargeStatus(models.TextChoices):
    REQUIRES_ACTION = "requires_action", pgettext_lazy("choice", "requires action")
    SUCCEEDED = "succeeded", pgettext_lazy("choice", "succeeded")
    DECLINED = "declined", pgettext_lazy("choice", "declined")
    REFUNDED = "refunded", pgettext_lazy("choice", "refunded")


class SandboxCharge(models.Model):
    public_id = models.CharField(max_length=40, unique=True)
    merchant = models.CharField(max_length=100)
    reference = models.CharField(max_length=64, unique=True)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    method = models.CharField(max_length=20)
    description = models.CharField(max_length=300)
    notify_url = models.TextField()
    return_url = models.TextField()
    language = models.CharField(max_length=10, default="zh-hans")
    status = models.CharField(
        max_length=20,
        choices=SandboxChargeStatus.choices,
        default=SandboxChargeStatus.REQUIRES_ACTION,
    )
    failure_code = models.CharField(max_length=60, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    settled_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"sandbox charge {self.public_id} ({self.status})"


class SandboxRefund(models.Model):
    public_id = models.CharField(max_length=40, unique=True)
    charge = models.ForeignKey(SandboxCharge, on_delete=models.PROTECT, related_name="refunds")
    refund_reference = models.CharField(max_length=64, unique=True)
    amount = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"sandbox refund {self.public_id}"
