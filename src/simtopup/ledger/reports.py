"""The ledger by day: what chosen accounts held at the end of each day, and how much they
moved that day, for the finance reports (revenue earned, money taken for orders not yet
fulfilled, money the payment providers hold).

A hot system account keeps no cached balance (ledger/models.py): its balance at an instant is
the sum of its transfers up to it, which is what :func:`derived_balance` answers for now. So
each day's closing balance here is the sum of the account's transfers up to the end of that
day — the balance the ledger held at that instant — computed as the sum before the first day
plus each day's movements, all read in one snapshot. The last day ends at its midnight, so
for today the balance is the account's balance now.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

from django.db.models import Sum
from django.db.models.functions import TruncDate

from simtopup.ledger.audit import read_snapshot
from simtopup.ledger.models import Account, Transfer


@dataclass(frozen=True)
class Day:
    day: date
    # One per account, in the order asked: the balance at the day's end, the day's movement.
    balances: tuple[int, ...]
    changes: tuple[int, ...]


def _day_start(day: date, zone: tzinfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone)


def _net_by_day(
    account: Account, since: datetime, until: datetime, zone: tzinfo
) -> dict[date, int]:
    """The account's movement (in − out) on each day of [since, until) in ``zone``."""
    net: dict[date, int] = defaultdict(int)
    window = Transfer.objects.filter(created_at__gte=since, created_at__lt=until)
    for field, sign in (("destination", 1), ("source", -1)):
        rows = (
            window.filter(**{field: account})
            .annotate(day=TruncDate("created_at", tzinfo=zone))
            .values("day")
            .annotate(total=Sum("amount"))
            .values_list("day", "total")
        )
        for day, total in rows:
            net[day] += sign * int(total)
    return net


def _sum_before(account: Account, moment: datetime) -> int:
    before = Transfer.objects.filter(created_at__lt=moment)
    incoming = before.filter(destination=account).aggregate(s=Sum("amount"))["s"] or 0
    outgoing = before.filter(source=account).aggregate(s=Sum("amount"))["s"] or 0
    return int(incoming - outgoing)


def balances_by_day(
    accounts: Sequence[Account], first: date, last: date, zone: tzinfo
) -> list[Day]:
    """Each day from ``first`` to ``last`` (the operator's calendar in ``zone``), oldest
    first, with every account's balance at the day's end and its movement that day."""
    since = _day_start(first, zone)
    until = _day_start(last + timedelta(days=1), zone)
    with read_snapshot():
        openings = [_sum_before(a, since) for a in accounts]
        nets = [_net_by_day(a, since, until, zone) for a in accounts]
    running = list(openings)
    days = []
    day = first
    while day <= last:
        changes = tuple(net.get(day, 0) for net in nets)
        running = [r + c for r, c in zip(running, changes, strict=True)]
        days.append(Day(day, tuple(running), changes))
        day += timedelta(days=1)
    return days


@dataclass(frozen=True)
class Movement:
    currency: str
    into: int  # transfers into the account in the period
    out: int  # transfers out of it

    @property
    def net(self) -> int:
        return self.into - self.out


def revenue_movements(since: datetime, until: datetime) -> list[Movement]:
    """What went into and out of each currency's ``revenue`` account in ``[since, until)``
    (sales and pay-per-use charges in; refunds of fulfilled orders out), read in one
    snapshot: the revenue the ledger itself recorded for the period."""
    with read_snapshot():
        accounts = list(Account.objects.filter(code__startswith="system:revenue:").order_by("code"))
        window = Transfer.objects.filter(created_at__gte=since, created_at__lt=until)
        moves = []
        for account in accounts:
            into = window.filter(destination=account).aggregate(s=Sum("amount"))["s"] or 0
            out = window.filter(source=account).aggregate(s=Sum("amount"))["s"] or 0
            moves.append(Movement(account.unit, int(into), int(out)))
    return moves
