"""Authorised resellers (agents): float, API keys, wholesale prices, outgoing webhooks."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Upper
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from simtopup.catalog.models import Plan
from simtopup.ledger.models import Account, Transfer


class ResellerStatus(models.TextChoices):
    ACTIVE = "active", pgettext_lazy("choice", "active")
    SUSPENDED = "suspended", pgettext_lazy("choice", "suspended")


class Reseller(models.Model):
    name = models.CharField(max_length=200, verbose_name=_("name"))
    # The public agent code customers can verify on the official site.
    code = models.CharField(max_length=20, unique=True, verbose_name=_("code"))
    status = models.CharField(
        max_length=10,
        choices=ResellerStatus.choices,
        default=ResellerStatus.ACTIVE,
        verbose_name=_("status"),
    )
    currency = models.CharField(max_length=3, default="CNY", verbose_name=_("currency"))
    # Discount off retail in basis points (800 = 8 %), unless a ResellerPrice row says otherwise.
    discount_bps = models.PositiveIntegerField(default=0, verbose_name=_("discount (basis points)"))
    float_account = models.OneToOneField(
        Account, on_delete=models.PROTECT, related_name="+", verbose_name=_("float account")
    )
    webhook_url = models.URLField(blank=True, verbose_name=_("webhook URL"))
    webhook_secret = models.CharField(max_length=100, blank=True, verbose_name=_("webhook secret"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created"))
    suspended_at = models.DateTimeField(null=True, blank=True, verbose_name=_("suspended"))

    class Meta:
        verbose_name = _("reseller")
        verbose_name_plural = _("resellers")
        constraints = [
            models.CheckConstraint(
                condition=Q(discount_bps__lt=10000), name="resellers_discount_below_100"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"

    @property
    def active(self) -> bool:
        return self.status == ResellerStatus.ACTIVE


class ApiKey(models.Model):
    """A reseller API key. Only its SHA-256 is stored; the key is shown once."""

    reseller = models.ForeignKey(
        Reseller, on_delete=models.CASCADE, related_name="api_keys", verbose_name=_("reseller")
    )
    name = models.CharField(max_length=100, blank=True, verbose_name=_("name"))
    prefix = models.CharField(max_length=16, verbose_name=_("prefix"))
    key_hash = models.CharField(max_length=64, unique=True, verbose_name=_("key (hashed)"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created"))
    revoked_at = models.DateTimeField(null=True, blank=True, verbose_name=_("revoked"))

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.reseller_id})"


class ResellerPrice(models.Model):
    """An explicit wholesale price for one plan, overriding the reseller's discount."""

    reseller = models.ForeignKey(
        Reseller, on_delete=models.CASCADE, related_name="prices", verbose_name=_("reseller")
    )
    plan = models.ForeignKey(
        Plan, on_delete=models.CASCADE, related_name="+", verbose_name=_("plan")
    )
    price = models.BigIntegerField(verbose_name=_("price (minor units)"))

    class Meta:
        verbose_name = _("reseller price")
        verbose_name_plural = _("reseller prices")
        constraints = [
            models.UniqueConstraint(fields=["reseller", "plan"], name="resellers_price_once"),
            models.CheckConstraint(condition=Q(price__gt=0), name="resellers_price_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.plan_id} at {self.price} for reseller {self.reseller_id}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", pgettext_lazy("choice", "pending")
    DELIVERED = "delivered", pgettext_lazy("choice", "delivered")
    FAILED = "failed", pgettext_lazy("choice", "failed")


class WebhookDelivery(models.Model):
    """One outgoing event to a reseller, retried with backoff until delivered."""

    reseller = models.ForeignKey(
        Reseller, on_delete=models.CASCADE, related_name="deliveries", verbose_name=_("reseller")
    )
    event = models.CharField(max_length=40, verbose_name=_("event"))
    # One event of a kind per object: `topup.fulfilled` for order 12 is sent once.
    dedupe_key = models.CharField(max_length=100, unique=True, verbose_name=_("deduplication key"))
    payload = models.JSONField(verbose_name=_("payload"))
    status = models.CharField(
        max_length=10,
        choices=DeliveryStatus.choices,
        default=DeliveryStatus.PENDING,
        verbose_name=_("status"),
    )
    attempts = models.PositiveIntegerField(default=0, verbose_name=_("attempts"))
    next_attempt_at = models.DateTimeField(verbose_name=_("next attempt"))
    last_error = models.CharField(max_length=300, blank=True, verbose_name=_("last error"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created"))
    delivered_at = models.DateTimeField(null=True, blank=True, verbose_name=_("delivered"))
    # When the latest attempt began (none yet: null); the reseller's delivery log shows it.
    last_attempt_at = models.DateTimeField(null=True, blank=True, verbose_name=_("last attempt"))
    # The request that caused the event (core/requestid.py), sent as X-Request-Id; "" if none.
    request_id = models.CharField(
        max_length=64, blank=True, default="", verbose_name=_("request ID")
    )

    class Meta:
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.event} #{self.pk}"


class MemberRole(models.TextChoices):
    # Owners manage API keys and the webhook; clerks sell and look.
    OWNER = "owner", pgettext_lazy("choice", "owner")
    CLERK = "clerk", pgettext_lazy("choice", "clerk")


class ResellerMember(models.Model):
    """A reseller's staff member: a Django user who may use the reseller portal."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="reseller_member",
        verbose_name=_("user"),
    )
    reseller = models.ForeignKey(
        Reseller, on_delete=models.CASCADE, related_name="members", verbose_name=_("reseller")
    )
    role = models.CharField(
        max_length=10, choices=MemberRole.choices, default=MemberRole.CLERK, verbose_name=_("role")
    )
    # Set for a password the operator handed over: the first login must choose a new one.
    must_change_password = models.BooleanField(default=True, verbose_name=_("must change password"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created"))

    class Meta:
        verbose_name = _("reseller staff member")
        verbose_name_plural = _("reseller staff")

    def __str__(self) -> str:
        return f"{self.user_id} ({self.role}) of reseller {self.reseller_id}"

    @property
    def is_owner(self) -> bool:
        return self.role == MemberRole.OWNER


class FastSaleFallback(models.Model):
    """How often the one-statement top-up (resellers/fast_sale.py) handed a request to the general
    path, by reason: counted where every web process sees it, for ``/metrics``
    (``simtopup_fast_path_fallbacks_total``). Replays and refusals are expected reasons; a
    growing ``lock_conflict`` or ``system_account_missing`` is worth a look."""

    reason = models.CharField(max_length=40, primary_key=True)
    count = models.BigIntegerField(default=0)
    last_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.reason}: {self.count}"


class PartnerCredential(models.Model):
    """OAuth2 client credentials for the Airalo-compatible partner API (``/partner/v2/``,
    resellers/partner_access.py). The client secret is shown once. It is kept twice: as a
    SHA-256 to check the token request, and encrypted with a key derived from the
    installation's SECRET_KEY, because the partner signs each top-up with it (HMAC, the
    ``airalo-signature`` header) and checking an HMAC needs its key. The row is the audit
    record: who made it and when, who revoked it and when."""

    reseller = models.ForeignKey(
        Reseller, on_delete=models.CASCADE, related_name="partner_credentials"
    )
    client_id = models.CharField(max_length=64, unique=True)
    secret_hash = models.CharField(max_length=64)
    secret_encrypted = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=150)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.CharField(max_length=150, blank=True)

    def __str__(self) -> str:
        return f"partner client {self.client_id} of reseller {self.reseller_id}"


class PartnerToken(models.Model):
    """An access token the partner API issued for a credential (opaque; only its SHA-256 is
    stored). It works until it expires or its credential is revoked."""

    credential = models.ForeignKey(
        PartnerCredential, on_delete=models.CASCADE, related_name="tokens"
    )
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"partner token {self.pk} of {self.credential_id}"


class ResellerDeposit(models.Model):
    """Money a reseller paid into the operator's bank account for its float, recorded by
    finance with the bank's reference (resellers.actions.record_deposit). One bank reference
    is recorded once per reseller (case and surrounding spaces aside): a transfer entered
    twice is refused by the database, so the float is credited exactly once. ``transfer`` is
    the ledger's credit of the float; the monthly statement lists deposits through it."""

    reseller = models.ForeignKey(Reseller, on_delete=models.PROTECT, related_name="deposits")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    bank_reference = models.CharField(max_length=100)
    # The day the bank received the money (the operator's calendar), as the bank says.
    received_on = models.DateField()
    # Why it was recorded (the audit's reason), e.g. "bank transfer of 3 December".
    note = models.CharField(max_length=300, blank=True)
    # "staff:<id>:<name>" or "cli:<os user>", as on the audit log.
    recorded_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    transfer = models.OneToOneField(Transfer, on_delete=models.PROTECT, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                F("reseller"), Upper("bank_reference"), name="resellers_deposit_reference_once"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="resellers_deposit_positive"),
        ]
        indexes = [models.Index(fields=["reseller", "received_on"])]

    def __str__(self) -> str:
        return f"deposit {self.bank_reference} of reseller {self.reseller_id}"
