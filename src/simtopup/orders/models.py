"""Orders: one purchase of one plan for one device, through one channel."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from simtopup.catalog.models import Plan
from simtopup.devices.models import Device


class OrderStatus(models.TextChoices):
    AWAITING_PAYMENT = "awaiting_payment", pgettext_lazy("choice", "awaiting payment")
    PAID = "paid", pgettext_lazy("choice", "paid")
    FULFILLING = "fulfilling", pgettext_lazy("choice", "fulfilling")
    FULFILLED = "fulfilled", pgettext_lazy("choice", "fulfilled")
    FAILED = "failed", pgettext_lazy("choice", "failed")
    REFUNDED = "refunded", pgettext_lazy("choice", "refunded")
    CANCELLED = "cancelled", pgettext_lazy("choice", "cancelled")


# Orders whose money sits in the order clearing account.
OUTSTANDING = (OrderStatus.PAID, OrderStatus.FULFILLING)
FINAL = (OrderStatus.FULFILLED, OrderStatus.FAILED, OrderStatus.REFUNDED, OrderStatus.CANCELLED)
# Orders still moving: looked up by status (reconciler, payment expiry, clearing checks).
OPEN = (OrderStatus.AWAITING_PAYMENT, *OUTSTANDING)


class Channel(models.TextChoices):
    RESELLER = "reseller", pgettext_lazy("choice", "reseller")
    APP = "app", pgettext_lazy("choice", "app")
    WEB = "web", pgettext_lazy("choice", "website")
    AUTO = "auto", pgettext_lazy("choice", "automatic top-up")


class Order(models.Model):
    channel = models.CharField(max_length=10, choices=Channel.choices, verbose_name=_("channel"))
    status = models.CharField(max_length=20, choices=OrderStatus.choices, verbose_name=_("status"))
    # No foreign-key constraint (nor on plan and reseller below): its check row-locks the
    # referenced row; devices, plans and resellers are permanent and an insert-time check
    # refuses a missing one (core/integrity.py).
    device = models.ForeignKey(
        Device,
        on_delete=models.PROTECT,
        related_name="orders",
        db_constraint=False,
        verbose_name=_("data card"),
    )
    # plan and reseller: every sale of a plan, every sale of a reseller, points at the same
    # row, so no foreign-key constraint (its check row-locks that row): plans and resellers
    # are permanent and an insert-time check refuses a missing one (core/integrity.py).
    # Not indexed: nothing looks orders up by plan.
    plan = models.ForeignKey(
        Plan,
        on_delete=models.PROTECT,
        related_name="+",
        db_constraint=False,
        db_index=False,
        verbose_name=_("plan"),
    )
    # reseller and customer: indexed by (reseller, -id) and (customer, -id) in Meta.
    # By app label, not by import: resellers sells through orders, so it sits above them.
    reseller = models.ForeignKey(
        "resellers.Reseller",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="orders",
        db_index=False,
        db_constraint=False,
        verbose_name=_("reseller"),
    )
    # The logged-in customer who placed it (app / web / auto); may differ from the card's owner.
    customer = models.ForeignKey(
        "accounts.Customer",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="orders",
        db_index=False,
        verbose_name=_("customer"),
    )
    # card | alipay | wechat_pay | balance (empty for reseller orders: paid from the float).
    payment_method = models.CharField(max_length=20, blank=True, verbose_name=_("payment method"))
    # The reseller's own reference for the sale (unique per reseller).
    reference = models.CharField(max_length=100, null=True, blank=True, verbose_name=_("reference"))
    # What the payer was charged, in minor units of `currency` (wholesale for resellers).
    amount = models.BigIntegerField(verbose_name=_("amount (minor units)"))
    # The plan's retail price when ordered (what lands on the card for a credit plan).
    retail_amount = models.BigIntegerField(verbose_name=_("retail amount (minor units)"))
    currency = models.CharField(max_length=3, verbose_name=_("currency"))
    # unique: see Meta
    receipt_no = models.CharField(
        max_length=32, null=True, blank=True, verbose_name=_("receipt number")
    )
    attempts = models.PositiveIntegerField(default=0, verbose_name=_("attempts"))
    next_attempt_at = models.DateTimeField(null=True, blank=True, verbose_name=_("next attempt"))
    # Set when a worker claims the fulfilment; a stale lease is taken over by the reconciler.
    lease_until = models.DateTimeField(null=True, blank=True, verbose_name=_("leased until"))
    failure_code = models.CharField(max_length=40, blank=True, verbose_name=_("failure code"))
    failure_detail = models.CharField(max_length=300, blank=True, verbose_name=_("failure detail"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created"))
    paid_at = models.DateTimeField(null=True, blank=True, verbose_name=_("paid"))
    fulfilled_at = models.DateTimeField(null=True, blank=True, verbose_name=_("fulfilled"))
    closed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("closed"))

    class Meta:
        verbose_name = _("order")
        verbose_name_plural = _("orders")
        constraints = [
            models.UniqueConstraint(fields=["receipt_no"], name="orders_receipt_no_once"),
            models.UniqueConstraint(
                fields=["reseller", "reference"],
                condition=Q(reseller__isnull=False, reference__isnull=False),
                name="orders_reseller_reference_once",
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="orders_amount_positive"),
        ]
        indexes = [
            # Only the orders the worker, the reconciler and the janitor look for: the final
            # ones (nearly all of them) add no entry.
            models.Index(
                fields=["status", "next_attempt_at"],
                condition=Q(status__in=OPEN),
                name="orders_open_by_status",
            ),
            models.Index(fields=["reseller", "-id"]),
            # Customers' orders only (a reseller's sale has no customer).
            models.Index(
                fields=["customer", "-id"],
                condition=Q(customer__isnull=False),
                name="orders_by_customer",
            ),
        ]

    def __str__(self) -> str:
        return f"order {self.pk} ({self.status})"


class Quote(models.Model):
    """The confirmation a customer sees before money moves (masked device, plan, price). An
    order that references it pays exactly this price, if it comes before ``expires_at``."""

    customer = models.ForeignKey(
        "accounts.Customer",
        on_delete=models.CASCADE,
        related_name="quotes",
        verbose_name=_("customer"),
    )
    device = models.ForeignKey(
        Device, on_delete=models.CASCADE, related_name="+", verbose_name=_("data card")
    )
    plan = models.ForeignKey(
        Plan, on_delete=models.PROTECT, related_name="+", verbose_name=_("plan")
    )
    amount = models.BigIntegerField(verbose_name=_("amount (minor units)"))
    currency = models.CharField(max_length=3, verbose_name=_("currency"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created"))
    expires_at = models.DateTimeField(verbose_name=_("expires"))

    class Meta:
        verbose_name = _("quote")
        verbose_name_plural = _("quotes")
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="orders_quote_amount_positive")
        ]
        indexes = [models.Index(fields=["expires_at"])]

    def __str__(self) -> str:
        return f"quote {self.pk}"
