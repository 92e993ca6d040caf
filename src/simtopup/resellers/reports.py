"""What a reseller sold, read from its orders: the counter's numbers (today's sales, retail,
cost and margin), each sale's retail and margin, the devices it sold to last and the plans
it sells most. The portal's dashboard, sale page, transactions and statement CSV read them
here, so every door shows the same numbers.

A sale counts while its money stays with the operator: ``paid`` and ``fulfilling`` (the float
is charged, the top-up on its way) and ``fulfilled``. A ``failed`` sale's wholesale price went
back to the float (``order_refund``), so it is neither retail nor cost. Money is in the
currency's minor units; ``cost`` is what the float paid (the order's ``amount``), ``retail``
the plan's price when sold (``retail_amount``), ``margin`` their difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.db.models import Count, Sum
from django.utils import timezone

from simtopup.catalog.models import Plan
from simtopup.devices.models import Device
from simtopup.orders.models import Order, OrderStatus
from simtopup.orders.receipts import customer_zone
from simtopup.resellers.models import Reseller

SOLD = (OrderStatus.PAID, OrderStatus.FULFILLING, OrderStatus.FULFILLED)

# The counter's quick picks: this many devices and plans, plans from this many days of sales.
RECENT_DEVICES = 6
TOP_PLANS = 4
TOP_PLAN_DAYS = 30
# Recent devices are found among this many latest sales (an index walk, not a full scan).
RECENT_SALES_SCANNED = 200


@dataclass(frozen=True)
class Sales:
    count: int
    retail: int
    cost: int
    currency: str

    @property
    def margin(self) -> int:
        return self.retail - self.cost


@dataclass(frozen=True)
class SaleMoney:
    retail: int
    cost: int

    @property
    def margin(self) -> int:
        return self.retail - self.cost


def operator_day(
    day: date | None = None, *, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """One calendar day in the operator's time zone (today by default), as [start, end)."""
    zone = customer_zone(None)
    if day is None:
        day = (now or timezone.now()).astimezone(zone).date()
    start = datetime.combine(day, time.min, tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone)
    return start, end


def sales(reseller: Reseller, since: datetime, until: datetime) -> Sales:
    """The reseller's sales made in ``[since, until)``: one aggregate query."""
    totals = Order.objects.filter(
        reseller=reseller, created_at__gte=since, created_at__lt=until, status__in=SOLD
    ).aggregate(count=Count("pk"), retail=Sum("retail_amount"), cost=Sum("amount"))
    return Sales(
        count=totals["count"] or 0,
        retail=totals["retail"] or 0,
        cost=totals["cost"] or 0,
        currency=reseller.currency,
    )


def sales_today(reseller: Reseller, *, now: datetime | None = None) -> Sales:
    """Today's sales, "today" being the operator's calendar day."""
    return sales(reseller, *operator_day(now=now))


def sale_money(order: Order) -> SaleMoney | None:
    """One sale's retail, cost and margin; None for a top-up that is not a sale (failed,
    refunded or cancelled: its money went back)."""
    if order.status not in SOLD:
        return None
    return SaleMoney(retail=order.retail_amount, cost=order.amount)


def movement_money(kind: str, order: Order) -> SaleMoney | None:
    """Retail and margin of one float movement (the statement): a sale's payment adds them,
    the refund of a failed one takes them back, so a column's sum is the net figure."""
    if kind == "order_payment":
        return SaleMoney(retail=order.retail_amount, cost=order.amount)
    if kind == "order_refund":
        return SaleMoney(retail=-order.retail_amount, cost=-order.amount)
    return None


def recent_devices(reseller: Reseller, limit: int = RECENT_DEVICES) -> list[Device]:
    """The last ``limit`` distinct devices the reseller topped up (or tried to), latest first."""
    ids: list[int] = []
    latest = (
        Order.objects.filter(reseller=reseller)
        .order_by("-pk")
        .values_list("device_id", flat=True)[:RECENT_SALES_SCANNED]
    )
    for device_id in latest:
        if device_id not in ids:
            ids.append(device_id)
            if len(ids) == limit:
                break
    found = Device.objects.in_bulk(ids)
    return [found[i] for i in ids if i in found]


def top_plans(
    reseller: Reseller,
    limit: int = TOP_PLANS,
    *,
    days: int = TOP_PLAN_DAYS,
    now: datetime | None = None,
) -> list[Plan]:
    """The reseller's most-sold plans over the last ``days`` days that it can still sell,
    most sales first (ties: the catalogue's order)."""
    since = (now or timezone.now()) - timedelta(days=days)
    counts = dict(
        Order.objects.filter(reseller=reseller, created_at__gte=since, status__in=SOLD)
        .values("plan_id")
        .annotate(n=Count("pk"))
        .values_list("plan_id", "n")
    )
    plans = Plan.objects.filter(pk__in=counts, active=True, currency=reseller.currency)
    ranked = sorted(plans, key=lambda p: (-counts[p.pk], p.sort_order, p.pk))
    return ranked[:limit]


@dataclass(frozen=True)
class Float:
    reseller: Reseller
    balance: int
    low: bool


def low_float() -> int:
    """The console's dashboard marks the floats below this (minor units):
    ``SIMTOPUP_LOW_FLOAT_THRESHOLD``."""
    return int(settings.LOW_FLOAT_THRESHOLD)


def floats(threshold: int | None = None) -> list[Float]:
    """Every reseller with its float (the ledger's cached balance), lowest first; ``low``
    below ``threshold`` (default :func:`low_float`)."""
    threshold = low_float() if threshold is None else threshold
    resellers = Reseller.objects.select_related("float_account").order_by(
        "float_account__balance", "code"
    )
    return [
        Float(r, r.float_account.balance, r.float_account.balance < threshold) for r in resellers
    ]
