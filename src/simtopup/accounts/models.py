"""Customers of the official app and website, and their app tokens."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class Customer(models.Model):
    """A person who logs in by one-time code to a phone number or an email address."""

    # E.164 (``+8613800138000``), as normalised by ``phonenumbers``.
    phone = models.CharField(max_length=16, null=True, blank=True, unique=True)
    # Lower-cased.
    email = models.EmailField(max_length=254, null=True, blank=True, unique=True)
    language = models.CharField(max_length=10, default="zh-hans")
    time_zone = models.CharField(max_length=64, default="Asia/Shanghai")
    created_at = models.DateTimeField(auto_now_add=True)
    last_login_at = models.DateTimeField(null=True, blank=True)

    class Meta:
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

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="tokens")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.customer_id})"
