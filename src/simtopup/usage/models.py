"""Data bundles and usage records."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from simtopup.catalog.models import Plan
from simtopup.devices.models import Device
from simtopup.ledger.models import Account
from simtopup.orders.models import Order


class Bundle(models.Model):
    """Data granted to a device. Its remaining bytes are its ledger account's balance."""

    # No foreign-key constraints: see Order.device (devices, plans, orders and accounts are
    # permanent; core/integrity.py checks every reference on insert).
    # Indexed by (device, expires_at) in Meta.
    device = models.ForeignKey(
        Device,
        on_delete=models.PROTECT,
        related_name="bundles",
        db_index=False,
        db_constraint=False,
        verbose_name=_("data card"),
    )
    # Not indexed: nothing looks bundles up by plan.
    plan = models.ForeignKey(
        Plan,
        on_delete=models.PROTECT,
        related_name="+",
        db_constraint=False,
        db_index=False,
        verbose_name=_("plan"),
    )
    # Exactly one bundle per order: the fulfilment's unique fact.
    order = models.OneToOneField(
        Order,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="bundle",
        db_constraint=False,
        verbose_name=_("order"),
    )
    account = models.OneToOneField(
        Account,
        on_delete=models.PROTECT,
        related_name="+",
        db_constraint=False,
        verbose_name=_("account"),
    )
    granted_bytes = models.BigIntegerField(verbose_name=_("data granted (bytes)"))
    starts_at = models.DateTimeField(verbose_name=_("starts"))
    expires_at = models.DateTimeField(verbose_name=_("expires"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created"))
    # Set once by the expiry job (usage/expiry.py), by compare-and-swap, when the bundle's
    # end has passed and its unused bytes went back to ``data_issued``.
    closed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("closed"))

    class Meta:
        verbose_name = _("bundle")
        verbose_name_plural = _("bundles")
        indexes = [
            models.Index(fields=["device", "expires_at"]),
            # The expiry job's scan: open bundles by end.
            models.Index(
                fields=["expires_at"], condition=Q(closed_at=None), name="usage_bundle_open_end"
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(granted_bytes__gt=0), name="usage_bundle_positive"),
            models.CheckConstraint(
                condition=Q(expires_at__gt=models.F("starts_at")), name="usage_bundle_window"
            ),
        ]

    def __str__(self) -> str:
        return f"bundle {self.pk} of device {self.device_id}"


class UsageRecord(models.Model):
    """One usage record from the network, rated exactly once (unique record id)."""

    # unique: see Meta (one index, no LIKE twin)
    record_id = models.CharField(max_length=100, verbose_name=_("record ID"))
    # Indexed by (device, -ended_at) in Meta. No foreign-key constraint: its check would
    # row-lock each of a batch's thousand devices; devices are permanent and an insert-time
    # check refuses a missing one (core/integrity.py).
    device = models.ForeignKey(
        Device,
        on_delete=models.PROTECT,
        related_name="usage_records",
        db_index=False,
        db_constraint=False,
        verbose_name=_("data card"),
    )
    bytes = models.BigIntegerField(verbose_name=_("data used (bytes)"))
    started_at = models.DateTimeField(verbose_name=_("started"))
    ended_at = models.DateTimeField(verbose_name=_("ended"))
    # drained from bundles
    bundle_bytes = models.BigIntegerField(default=0, verbose_name=_("from bundles (bytes)"))
    # charged to credit per started MB
    payg_bytes = models.BigIntegerField(default=0, verbose_name=_("pay per use (bytes)"))
    # minor units taken from credit
    charged = models.BigIntegerField(default=0, verbose_name=_("charged (minor units)"))
    # beyond bundles and credit
    overage_bytes = models.BigIntegerField(default=0, verbose_name=_("overage (bytes)"))
    received_at = models.DateTimeField(auto_now_add=True, verbose_name=_("received"))

    class Meta:
        verbose_name = _("usage record")
        verbose_name_plural = _("usage records")
        constraints = [
            models.UniqueConstraint(fields=["record_id"], name="usage_record_once"),
            models.CheckConstraint(
                condition=Q(bytes__gte=0), name="usage_record_bytes_nonnegative"
            ),
            models.CheckConstraint(
                condition=Q(
                    bytes=models.F("bundle_bytes")
                    + models.F("payg_bytes")
                    + models.F("overage_bytes")
                ),
                name="usage_record_every_byte",
            ),
        ]
        indexes = [models.Index(fields=["device", "-ended_at"])]

    def __str__(self) -> str:
        return self.record_id


class AutoTopupRule(models.Model):
    """Automatic top-up (自动充值): when usage leaves the device below ``threshold_bytes``,
    buy ``plan`` with the card's credit. Set by the card's owner."""

    device = models.OneToOneField(
        Device, on_delete=models.CASCADE, related_name="auto_topup", verbose_name=_("data card")
    )
    customer = models.ForeignKey(
        "accounts.Customer",
        on_delete=models.CASCADE,
        related_name="auto_topups",
        verbose_name=_("customer"),
    )
    enabled = models.BooleanField(default=True, verbose_name=_("enabled"))
    threshold_bytes = models.BigIntegerField(
        verbose_name=_("when remaining data falls below (bytes)")
    )
    plan = models.ForeignKey(
        Plan, on_delete=models.PROTECT, related_name="+", verbose_name=_("plan")
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated"))
    # The last time a top-up was attempted, and how it went (placed / a failure code).
    last_attempt_at = models.DateTimeField(null=True, blank=True, verbose_name=_("last attempt"))
    last_outcome = models.CharField(max_length=40, blank=True, verbose_name=_("last outcome"))

    class Meta:
        verbose_name_plural = _("automatic top-up rules")
        verbose_name = _("automatic top-up rule")
        constraints = [
            models.CheckConstraint(
                condition=Q(threshold_bytes__gte=0), name="usage_autotopup_threshold_nonnegative"
            )
        ]

    def __str__(self) -> str:
        return f"auto top-up of device {self.device_id}"


class AlertKind(models.TextChoices):
    USED_80 = "used_80", pgettext_lazy("choice", "80 % used")
    USED_100 = "used_100", pgettext_lazy("choice", "100 % used")
    EXPIRES_3D = "expires_3d", pgettext_lazy("choice", "expires in 3 days")
    EXPIRES_1D = "expires_1d", pgettext_lazy("choice", "expires in 1 day")
    EXPIRED = "expired", pgettext_lazy("choice", "expired")
    CREDIT_LOW = "credit_low", pgettext_lazy("choice", "credit low")
    CREDIT_EXHAUSTED = "credit_exhausted", pgettext_lazy("choice", "credit exhausted")


class Alert(models.Model):
    """A threshold crossed, raised exactly once: ``key`` is unique and names the bundle and
    kind (``b:<bundle>:<kind>``) or, for credit, the card, kind and episode
    (``c:<device>:<kind>:<episode>``, the episode being the transfer that last put credit on
    the card). Inserted in the transaction that crossed the threshold; delivered after commit
    (usage/alerts.py)."""

    key = models.CharField(max_length=80)  # unique: see Meta
    kind = models.CharField(max_length=20, choices=AlertKind.choices)
    device = models.ForeignKey(
        Device, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )
    bundle = models.ForeignKey(
        Bundle,
        on_delete=models.PROTECT,
        related_name="alerts",
        null=True,
        blank=True,
        db_index=False,
        db_constraint=False,
    )
    # What the alert says, as of the crossing: remaining bytes or credit, threshold.
    facts = models.JSONField(default=dict)
    created_at = models.DateTimeField()
    # When its channels were planned (AlertDelivery rows made); null: the delivery task has
    # not run yet — the janitor plans alerts whose task was lost (usage/alerts.py).
    planned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key"], name="usage_alert_once")]
        indexes = [
            models.Index(fields=["device", "-created_at"]),
            models.Index(
                fields=["created_at"], condition=Q(planned_at=None), name="usage_alert_unplanned"
            ),
        ]

    def __str__(self) -> str:
        return self.key


class AlertDelivery(models.Model):
    """One channel of one alert, claimed by compare-and-swap: sent at most once."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=10)  # sms, email, push, webhook
    status = models.CharField(max_length=10, default="pending")  # pending, sent, failed
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_error = models.CharField(max_length=300, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["alert", "channel"], name="usage_alert_channel_once")
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.channel} of alert {self.alert_id}"


class AlertSettings(models.Model):
    """The card owner's choice of channels for the card's alerts, and the credit below which
    a pay-per-use card warns (null: enough for 100 MB at the current tariff)."""

    device = models.OneToOneField(Device, on_delete=models.CASCADE, related_name="alert_settings")
    sms = models.BooleanField(default=True)
    email = models.BooleanField(default=True)
    push = models.BooleanField(default=True)
    credit_threshold = models.BigIntegerField(null=True, blank=True)  # minor units
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(credit_threshold__gte=0), name="usage_alert_threshold_nonnegative"
            )
        ]

    def __str__(self) -> str:
        return f"alert settings of device {self.device_id}"


class PushSubscription(models.Model):
    """A Web Push subscription of one of the customer's installed apps (browser/device)."""

    customer = models.ForeignKey(
        "accounts.Customer", on_delete=models.CASCADE, related_name="push_subscriptions"
    )
    endpoint = models.URLField(max_length=1000)  # unique: see Meta
    p256dh = models.CharField(max_length=200)
    auth = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["endpoint"], name="usage_push_endpoint_once")
        ]

    def __str__(self) -> str:
        return f"push subscription {self.pk} of customer {self.customer_id}"
