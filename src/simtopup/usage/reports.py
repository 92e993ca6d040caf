"""The operator's numbers about usage: records and bytes ingested per hour of the operator's
clock (settings.DISPLAY_TIME_ZONE), by when they were received; a card's data used per day
(the desk's chart)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db.models import Count, Sum
from django.db.models.functions import TruncDate, TruncHour

from simtopup.orders.receipts import customer_zone
from simtopup.usage.models import UsageRecord


@dataclass(frozen=True)
class Hour:
    start: datetime  # in the operator's zone
    records: int
    bytes: int


def ingested_per_hour(since: datetime, until: datetime) -> list[Hour]:
    """Every hour of ``[since, until)`` (empty hours included) with what was received in it."""
    zone = customer_zone(None)
    rows = (
        UsageRecord.objects.filter(received_at__gte=since, received_at__lt=until)
        .annotate(hour=TruncHour("received_at", tzinfo=zone))
        .values("hour")
        .annotate(records=Count("pk"), total=Sum("bytes"))
        .order_by("hour")
    )
    found = {r["hour"].astimezone(zone): (r["records"], r["total"] or 0) for r in rows}
    hours = []
    at = since.astimezone(zone)
    while at < until:
        records, total = found.get(at, (0, 0))
        hours.append(Hour(at, records, total))
        at = (at + timedelta(hours=1)).astimezone(zone)
    return hours


@dataclass(frozen=True)
class Day:
    day: date  # in the operator's zone
    bytes: int


def used_by_day(device_id: int, days: int, now: datetime) -> list[Day]:
    """The card's data used on each of the last ``days`` days of the operator's calendar
    (today included, empty days too), by when each session ended."""
    zone = customer_zone(None)
    today = now.astimezone(zone).date()
    first = today - timedelta(days=days - 1)
    since = datetime.combine(first, time.min, tzinfo=zone)
    rows = (
        UsageRecord.objects.filter(device_id=device_id, ended_at__gte=since, ended_at__lte=now)
        .annotate(day=TruncDate("ended_at", tzinfo=zone))
        .values("day")
        .annotate(total=Sum("bytes"))
        .order_by("day")
    )
    found = {r["day"]: r["total"] or 0 for r in rows}
    return [
        Day(first + timedelta(days=i), found.get(first + timedelta(days=i), 0)) for i in range(days)
    ]
