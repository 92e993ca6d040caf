"""The operator's numbers about orders, read from the orders themselves: the dashboard's
windows (today, 7 days, 30 days in the operator's calendar), sales and revenue by channel
and by payment method, orders by status and the ones stuck or failed.

A sale counts while its money stays with the operator (``paid``, ``fulfilling``,
``fulfilled``), as in resellers/reports.py. ``revenue`` is the order's ``amount``: what the
operator takes (a reseller's sale: the wholesale price its float paid). Money is in minor
units per currency; a window is ``[start, end)`` in the operator's zone
(settings.DISPLAY_TIME_ZONE).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

from django.conf import settings
from django.db.models import Count, Sum
from django.utils import timezone

from simtopup.orders.models import Order, OrderStatus
from simtopup.orders.receipts import customer_zone

SOLD = (OrderStatus.PAID, OrderStatus.FULFILLING, OrderStatus.FULFILLED)
WINDOW_DAYS = {"today": 1, "7d": 7, "30d": 30}


@dataclass(frozen=True)
class Window:
    name: str
    start: datetime
    end: datetime


def window(name: str, *, now: datetime | None = None) -> Window:
    """The last 1, 7 or 30 calendar days of the operator, today included, as [start, end)."""
    days = WINDOW_DAYS[name]
    zone = customer_zone(None)
    today = (now or timezone.now()).astimezone(zone).date()
    start = datetime.combine(today - timedelta(days=days - 1), time.min, tzinfo=zone)
    end = datetime.combine(today + timedelta(days=1), time.min, tzinfo=zone)
    return Window(name, start, end)


@dataclass(frozen=True)
class SalesRow:
    key: str
    currency: str
    count: int
    revenue: int


def sales_by(field: str, since: datetime, until: datetime) -> list[SalesRow]:
    """Sales in ``[since, until)`` grouped by ``channel`` or ``payment_method`` and currency."""
    if field not in ("channel", "payment_method"):
        raise ValueError(field)
    rows = (
        Order.objects.filter(created_at__gte=since, created_at__lt=until, status__in=SOLD)
        .values(field, "currency")
        .annotate(count=Count("pk"), revenue=Sum("amount"))
        .order_by(field, "currency")
    )
    return [SalesRow(r[field] or "", r["currency"], r["count"], r["revenue"] or 0) for r in rows]


def orders_by_status(since: datetime, until: datetime) -> dict[str, int]:
    """How many orders created in ``[since, until)`` are in each status (every status listed)."""
    counts = dict(
        Order.objects.filter(created_at__gte=since, created_at__lt=until)
        .values_list("status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    return {status: counts.get(status, 0) for status in OrderStatus.values}


def stuck_after() -> timedelta:
    """Paid but not fulfilled after this long: stuck (the worker normally finishes in
    seconds); ``SIMTOPUP_STUCK_ORDER_MINUTES``."""
    return timedelta(minutes=settings.STUCK_ORDER_MINUTES)


def stuck_before(now: datetime | None = None) -> datetime:
    """Orders paid or fulfilling created before this instant are stuck."""
    return (now or timezone.now()) - stuck_after()


def stuck_count(*, now: datetime | None = None) -> int:
    """Orders paid or still fulfilling for longer than :func:`stuck_after`, whenever created."""
    return Order.objects.filter(
        status__in=(OrderStatus.PAID, OrderStatus.FULFILLING), created_at__lt=stuck_before(now)
    ).count()
