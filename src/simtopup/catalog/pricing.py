"""Prices: retail, per-reseller wholesale, and the current pay-per-use tariff."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from simtopup.catalog.models import PaygTariff, Plan
from simtopup.core.errors import DomainError, FieldError


def get_plan(code: str) -> Plan:
    plan = Plan.objects.filter(code=code, active=True).first()
    if plan is None:
        raise DomainError(
            "unknown_plan",
            _("There is no such plan."),
            422,
            errors=[FieldError("plan", "unknown_plan", _("There is no such plan."))],
        )
    return plan


def tariff_per_mb(at: datetime | None = None) -> int:
    at = at or timezone.now()
    row = PaygTariff.objects.filter(effective_from__lte=at).first()
    return row.price_per_mb if row else settings.DEFAULT_PAYG_TARIFF_PER_MB
