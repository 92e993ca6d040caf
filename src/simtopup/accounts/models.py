"""Customers of the official app and website, and their app tokens."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy


class Customer(models.Model):
    """A person who logs in by one-time code to a phone number or an email address."""

    # E.164 (``+8613800138000``), as normalised by ``phonenumbers``.
    phone = models.CharField(
        max_length=16, null=True, blank=True, unique=True, verbose_name=_("phone")
    )
    # Lower-cased.
    email = models.EmailField(
        max_length=254, null=True, blank=True, unique=True, verbose_name=_("email")
    )
    language = models.CharField(max_length=10, default="zh-hans", verbose_name=_("language"))
    time_zone = models.CharField(
        max_length=64, default="Asia/Shanghai", verbose_name=_("time zone")
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created"))
    last_login_at = models.DateTimeField(null=True, blank=True, verbose_name=_("last sign-in"))

    class Meta:
        verbose_name = _("customer")
        verbose_name_plural = _("customers")
        constraints = [
            models.CheckConstraint(
                condition=Q(phone__isnull=False) | Q(email__isnull=False),
                name="accounts_customer_has_identity",
            )
        ]

    def __str__(self) -> str:
        return self.phone or self.email or f"customer {self.pk}"


class AppToken(models.Model):
    """An opaque bearer token of the app. Only its SHA-256 is stored; it is shown once."""

    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="tokens", verbose_name=_("customer")
    )
    name = models.CharField(max_length=100, blank=True, verbose_name=_("name"))
    prefix = models.CharField(max_length=16, verbose_name=_("prefix"))
    token_hash = models.CharField(max_length=64, unique=True, verbose_name=_("token (hashed)"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created"))
    last_used_at = models.DateTimeField(null=True, blank=True, verbose_name=_("last used"))
    revoked_at = models.DateTimeField(null=True, blank=True, verbose_name=_("revoked"))

    class Meta:
        verbose_name = _("app token")
        verbose_name_plural = _("app tokens")

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.customer_id})"


class IdentityKind(models.TextChoices):
    PHONE = "phone", pgettext_lazy("choice", "phone")
    EMAIL = "email", pgettext_lazy("choice", "email")


class LoginCode(models.Model):
    """A one-time login code sent to a phone number or email address.

    Only an HMAC of the code is kept. A code is spent at most once (``used_at`` set by
    compare-and-swap); after ``LOGIN_CODE_MAX_ATTEMPTS`` wrong tries it is burned. A newer
    code for the same identity burns the older ones.
    """

    kind = models.CharField(max_length=5, choices=IdentityKind.choices)
    identity = models.CharField(max_length=254)  # E.164 phone or lower-cased email
    code_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=0)
    used_at = models.DateTimeField(null=True, blank=True)
    burned_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    send_failed = models.BooleanField(default=False)
    requested_ip = models.GenericIPAddressField(null=True, blank=True)
    language = models.CharField(max_length=10, default="zh-hans")

    class Meta:
        indexes = [models.Index(fields=["kind", "identity", "-created_at"])]

    def __str__(self) -> str:
        return f"code for {self.identity}"


class RateCounter(models.Model):
    """A fixed-window counter (``key`` within the window starting at ``window_start``),
    incremented by compare-and-swap so limits hold across processes."""

    key = models.CharField(max_length=300)
    window_start = models.DateTimeField()
    window_seconds = models.PositiveIntegerField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["key", "window_seconds", "window_start"], name="accounts_rate_window"
            )
        ]
        indexes = [models.Index(fields=["window_start"])]

    def __str__(self) -> str:
        return f"{self.key} @{self.window_start:%Y-%m-%d %H:%M:%S}: {self.count}"
