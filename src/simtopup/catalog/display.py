"""Plans for people: data sizes, validity and a one-line summary, in the active language."""

from __future__ import annotations

from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from simtopup.catalog.models import Plan
from simtopup.core.money import format_money


def format_data(size: int) -> str:
    """``1.5 GB`` / ``500 MB``: at most one decimal, binary units."""
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2)):
        if size >= scale:
            text = f"{size / scale:.1f}".removesuffix(".0")
            return f"{text} {unit}"
    return f"{size} B"


def format_validity(hours: int) -> str:
    if hours % 24 == 0:
        days = hours // 24
        return ngettext("%(count)d day", "%(count)d days", days) % {"count": days}
    return ngettext("%(count)d hour", "%(count)d hours", hours) % {"count": hours}


def plan_label(plan: Plan) -> str:
    """What kind of plan this is, in the customer's words and from the plan's own validity —
    ``7-day pass`` (7天套餐, 7天方案), never the catalogue's kind: a 7-day pass filed as
    ``daily`` is not a 日套餐. Pay-per-use credit has no validity."""
    if plan.is_payg:
        return _("Pay per use")
    hours = plan.validity_hours
    if hours % 24 == 0:
        return _("%(count)d-day pass") % {"count": hours // 24}
    return _("%(count)d-hour pass") % {"count": hours}


def plan_detail(plan: Plan, credit: int | None = None) -> str:
    """``1 GB, valid for 1 day``; for pay-per-use, the credit it puts on the card (its price
    unless ``credit`` says otherwise)."""
    if plan.is_payg:
        amount = plan.price if credit is None else credit
        return _("Pay per use credit: %(amount)s") % {"amount": format_money(amount, plan.currency)}
    return _("%(data)s, valid for %(validity)s") % {
        "data": format_data(plan.data_bytes),
        "validity": format_validity(plan.validity_hours),
    }
