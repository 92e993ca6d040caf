"""Prices: retail, per-reseller wholesale, and the current pay-per-use tariff."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from simtopup.catalog.models import PaygTariff, Plan
from simtopup.core.errors import field_error


def get_plan(code: str, currency: str | None = None) -> Plan:
    """The active plan ``code``; with ``currency``, only if it is sold in that currency (a
    reseller sells in its float's currency, a customer pays in the site's). Anything else is
    ``unknown_plan``: a plan in another currency is not for sale here at all."""
    plans = Plan.objects.filter(code=code, active=True)
    if currency is not None:
        plans = plans.filter(currency=currency)
    plan = plans.first()
    if plan is None:
        raise field_error("unknown_plan", _("There is no such plan."), "plan")
    return plan


def tariff_schedule() -> Callable[[datetime], int]:
    """The pay-per-use tariff as a function of time, read once (for rating a whole batch):
    usage is charged at the tariff in force when it started."""
    rows = list(PaygTariff.objects.values_list("effective_from", "price_per_mb"))  # newest first
    default = settings.DEFAULT_PAYG_TARIFF_PER_MB

    def at(moment: datetime) -> int:
        return next((price for effective, price in rows if effective <= moment), default)

    return at


def tariff_per_mb(at: datetime | None = None) -> int:
    at = at or timezone.now()
    row = PaygTariff.objects.filter(effective_from__lte=at).first()
    return row.price_per_mb if row else settings.DEFAULT_PAYG_TARIFF_PER_MB
