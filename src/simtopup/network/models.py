"""What simtopup keeps about a wholesale provider: which of its packages each of our plans is,
and, per card it serves, where the usage sync stands."""

from __future__ import annotations

from django.db import models

from simtopup.catalog.models import Plan
from simtopup.devices.models import Device


class UpstreamPackage(models.Model):
    """One of the provider's top-up packages and the plan of ours that sells it (made by
    ``simtopup network sync-catalogue``; the plan stays inactive until the operator turns it
    on). A top-up of the plan is fulfilled by ordering ``package_id`` from the provider."""

    provider = models.CharField(max_length=20)
    package_id = models.CharField(max_length=200)
    plan = models.OneToOneField(Plan, on_delete=models.PROTECT, related_name="upstream_package")
    title = models.CharField(max_length=200, blank=True)
    # What the provider charges us, in minor units of `currency` (its net price).
    net_price = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    data_bytes = models.BigIntegerField()
    validity_hours = models.PositiveIntegerField()
    # False once the provider stopped listing it (the plan is then switched off too).
    listed = models.BooleanField(default=True)
    synced_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "package_id"], name="network_package_per_provider"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.package_id}"


class UpstreamCard(models.Model):
    """A card one of whose top-ups a provider fulfilled: its usage is read from the provider
    (ops/upstream_usage.py). ``used_bytes``: the provider's used total at the last read, the
    base of the next read's difference; ``sequence`` numbers the usage records made."""

    provider = models.CharField(max_length=20)
    device = models.OneToOneField(Device, on_delete=models.PROTECT, related_name="+")
    used_bytes = models.BigIntegerField(default=0)
    sequence = models.PositiveIntegerField(default=0)
    # Not read before this (the interval, or the provider's Retry-After).
    next_read_at = models.DateTimeField()
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["provider", "next_read_at"], name="network_card_due")]

    def __str__(self) -> str:
        return f"{self.provider}:{self.device_id}"


class UpstreamOrder(models.Model):
    """The provider's reference for one of our orders, recorded the moment the provider
    answers — before the order is completed — so that an attempt after a crash polls that
    order instead of buying again (for a provider with no idempotency key, e.g. eSIM Go)."""

    provider = models.CharField(max_length=20)
    order_id = models.BigIntegerField(unique=True)  # ours (orders sit above the network)
    reference = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "reference"], name="network_order_reference_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.reference}"


class UpstreamEvent(models.Model):
    """A provider's webhook delivery, by its body's SHA-256: a duplicate delivery is
    acknowledged and changes nothing."""

    provider = models.CharField(max_length=20)
    key = models.CharField(max_length=64)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "key"], name="network_event_once")
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.key[:12]}"
