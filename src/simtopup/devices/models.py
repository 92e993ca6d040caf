"""Inventory of data cards and hotspot devices the operator sells."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from simtopup.ledger.models import Account


class DeviceKind(models.TextChoices):
    ESIM = "esim", pgettext_lazy("choice", "eSIM")
    SIM = "sim", pgettext_lazy("choice", "physical SIM card")
    HOTSPOT = "hotspot", pgettext_lazy("choice", "portable hotspot")


class DeviceStatus(models.TextChoices):
    IN_STOCK = "in_stock", pgettext_lazy("choice", "in stock")
    ACTIVE = "active", pgettext_lazy("choice", "active")
    SUSPENDED = "suspended", pgettext_lazy("choice", "suspended")
    RETIRED = "retired", pgettext_lazy("choice", "retired")


RECHARGEABLE = (DeviceStatus.IN_STOCK, DeviceStatus.ACTIVE)


class Device(models.Model):
    kind = models.CharField(max_length=10, choices=DeviceKind.choices, verbose_name=_("kind"))
    # Identifiers as imported (normalised digits for IMEI / ICCID / EID, verbatim serial).
    imei = models.CharField(max_length=15, null=True, blank=True, unique=True, verbose_name="IMEI")
    iccid = models.CharField(
        max_length=20, null=True, blank=True, unique=True, verbose_name="ICCID"
    )
    eid = models.CharField(max_length=32, null=True, blank=True, unique=True, verbose_name="EID")
    serial = models.CharField(
        max_length=64, null=True, blank=True, unique=True, verbose_name=_("serial number")
    )
    activation_code = models.CharField(
        max_length=255, blank=True, verbose_name=_("eSIM activation code")
    )
    # The binding PIN printed with the card (proof of holding it, devices/binding.py), as a
    # keyed hash: ``v1$<salt>$<HMAC>``. Empty: no PIN.
    pin_hash = models.CharField(
        max_length=128, blank=True, default="", verbose_name=_("binding PIN (hashed)")
    )
    status = models.CharField(
        max_length=10,
        choices=DeviceStatus.choices,
        default=DeviceStatus.IN_STOCK,
        verbose_name=_("status"),
    )
    # Pay-per-use: usage beyond all bundles is charged to the card's credit.
    payg = models.BooleanField(default=False, verbose_name=_("pay per use"))
    credit_account = models.OneToOneField(
        Account, on_delete=models.PROTECT, related_name="+", verbose_name=_("credit account")
    )
    overage_account = models.OneToOneField(
        Account, on_delete=models.PROTECT, related_name="+", verbose_name=_("overage account")
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created"))
    activated_at = models.DateTimeField(null=True, blank=True, verbose_name=_("activated"))
    # The customer the card is bound to ("add to my account"), at most one.
    owner = models.ForeignKey(
        "accounts.Customer",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="devices",
        verbose_name=_("bound to customer"),
    )
    nickname = models.CharField(max_length=60, blank=True, verbose_name=_("nickname"))
    bound_at = models.DateTimeField(null=True, blank=True, verbose_name=_("added to account"))
    # When the owner first fetched the eSIM activation code (LPA / QR).
    esim_activated_at = models.DateTimeField(
        null=True, blank=True, verbose_name=_("eSIM activated")
    )

    class Meta:
        verbose_name = _("data card")
        verbose_name_plural = _("data cards")
        constraints = [
            models.CheckConstraint(
                condition=Q(imei__isnull=False)
                | Q(iccid__isnull=False)
                | Q(eid__isnull=False)
                | Q(serial__isnull=False),
                name="devices_device_has_identifier",
            )
        ]

    def __str__(self) -> str:
        return self.display_identifier

    @property
    def display_identifier(self) -> str:
        return self.iccid or self.eid or self.imei or self.serial or f"device {self.pk}"

    @property
    def masked(self) -> str:
        return mask(self.display_identifier)

    @property
    def has_pin(self) -> bool:
        return bool(self.pin_hash)

    @property
    def rechargeable(self) -> bool:
        return self.status in RECHARGEABLE


def mask(identifier: str) -> str:
    """Show the first 4 and last 4 characters: 8986••••••••••••1234."""
    if len(identifier) <= 8:
        return identifier[:2] + "•" * max(len(identifier) - 4, 1) + identifier[-2:]
    return identifier[:4] + "•" * (len(identifier) - 8) + identifier[-4:]


class GoodwillStatus(models.TextChoices):
    PENDING = "pending", _("awaiting approval")
    APPROVED = "approved", _("approved")
    REJECTED = "rejected", _("rejected")
    POSTED = "posted", _("credited")


class GoodwillCredit(models.Model):
    """A goodwill credit customer service gives a card (devices/goodwill.py): from the
    ``adjustments`` ledger account to the card's credit. Above
    ``settings.GOODWILL_APPROVAL_ABOVE`` it waits for a second staff member's approval.
    Rows are never deleted: each is the story of one grant."""

    device = models.ForeignKey(
        Device,
        on_delete=models.PROTECT,
        related_name="goodwill_credits",
        verbose_name=_("data card"),
    )
    # minor units of ``currency``
    amount = models.BigIntegerField(verbose_name=_("amount (minor units)"))
    currency = models.CharField(max_length=3, verbose_name=_("currency"))
    reason = models.TextField(verbose_name=_("reason"))
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        related_name="+",
        verbose_name=_("requested by"),
    )
    requested_at = models.DateTimeField(default=timezone.now, verbose_name=_("requested"))
    status = models.CharField(
        max_length=10,
        choices=GoodwillStatus.choices,
        default=GoodwillStatus.PENDING,
        verbose_name=_("status"),
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("decided by"),
    )
    decided_at = models.DateTimeField(null=True, blank=True, verbose_name=_("decided"))
    decision_reason = models.TextField(
        blank=True, default="", verbose_name=_("reason for the decision")
    )
    # The ledger transfer's idempotency key (``goodwill:<id>``), set when it is posted.
    transfer_key = models.CharField(
        max_length=200, null=True, blank=True, verbose_name=_("ledger transfer key")
    )

    class Meta:
        verbose_name = _("goodwill credit")
        verbose_name_plural = _("goodwill credits")
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="devices_goodwill_positive"),
            models.UniqueConstraint(fields=["transfer_key"], name="devices_goodwill_key_once"),
            models.CheckConstraint(
                condition=~Q(status="posted") | Q(transfer_key__isnull=False),
                name="devices_goodwill_posted_has_key",
            ),
        ]
        indexes = [
            models.Index(
                fields=["requested_at"],
                condition=Q(status="pending"),
                name="devices_goodwill_pending",
            )
        ]

    def __str__(self) -> str:
        return f"goodwill {self.pk} ({self.status})"
