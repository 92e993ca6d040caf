"""Plans (daily / monthly passes, pay-per-use credit), prices and the pay-per-use tariff."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import translation
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy


class PlanKind(models.TextChoices):
    DAILY = "daily", pgettext_lazy("choice", "daily pass")
    MONTHLY = "monthly", pgettext_lazy("choice", "monthly pass")
    PAYG = "payg", pgettext_lazy("choice", "pay per use")


class Plan(models.Model):
    code = models.SlugField(max_length=40, unique=True, verbose_name=_("code"))
    kind = models.CharField(max_length=10, choices=PlanKind.choices, verbose_name=_("kind"))
    name_en = models.CharField(max_length=100, verbose_name=_("name (English)"))
    name_zh_hans = models.CharField(max_length=100, verbose_name=_("name (Simplified Chinese)"))
    name_zh_hant = models.CharField(max_length=100, verbose_name=_("name (Traditional Chinese)"))
    # Bundles: data granted and how long it lasts. Pay-per-use credit: both 0.
    data_bytes = models.BigIntegerField(default=0, verbose_name=_("data (bytes)"))
    validity_hours = models.PositiveIntegerField(default=0, verbose_name=_("valid for (hours)"))
    # Retail price in minor units. For a payg plan it is also the credit added to the card.
    price = models.BigIntegerField(verbose_name=_("price (minor units)"))
    currency = models.CharField(max_length=3, default="CNY", verbose_name=_("currency"))
    active = models.BooleanField(default=True, verbose_name=_("on sale"))
    sort_order = models.IntegerField(default=0, verbose_name=_("sort order"))

    class Meta:
        verbose_name = _("plan")
        verbose_name_plural = _("plans")
        ordering = ["sort_order", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(price__gt=0), name="catalog_plan_price_positive"),
            models.CheckConstraint(
                condition=Q(kind="payg", data_bytes=0, validity_hours=0)
                | (~Q(kind="payg") & Q(data_bytes__gt=0, validity_hours__gt=0)),
                name="catalog_plan_shape",
            ),
        ]

    def __str__(self) -> str:
        return self.code

    @property
    def name(self) -> str:
        lang = (translation.get_language() or "en").lower()
        if lang.startswith("zh-hant") or lang in {"zh-tw", "zh-hk", "zh-mo"}:
            return self.name_zh_hant
        if lang.startswith("zh"):
            return self.name_zh_hans
        return self.name_en

    @property
    def is_payg(self) -> bool:
        return self.kind == PlanKind.PAYG


class PaygTariff(models.Model):
    """Price per started MB of pay-per-use data; the newest effective row applies."""

    currency = models.CharField(max_length=3, default="CNY", verbose_name=_("currency"))
    price_per_mb = models.BigIntegerField(verbose_name=_("price per MB (minor units)"))
    effective_from = models.DateTimeField(verbose_name=_("effective from"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created"))

    class Meta:
        verbose_name = _("pay-per-use tariff")
        verbose_name_plural = _("pay-per-use tariffs")
        ordering = ["-effective_from", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(price_per_mb__gt=0), name="catalog_tariff_positive")
        ]

    def __str__(self) -> str:
        return f"{self.price_per_mb}/{self.currency} per MB from {self.effective_from:%Y-%m-%d}"
