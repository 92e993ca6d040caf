"""Rate limits counted in the database, so they hold across web processes.

Fixed windows: ``hit(key, limits)`` adds one to the counter of each limit's current window
by compare-and-swap (``UPDATE … SET count = count + 1 WHERE count < limit``): counted and
checked in one statement, so parallel requests can never all see room that only one has (the
database locks the row; PostgreSQL re-checks the condition after waiting for it); the row count
says whether the call fits. A window's first event inserts its row; concurrent first events
meet on the unique constraint and fall back to the same ``UPDATE``. Call it inside the
caller's transaction: when one limit refuses, raising rolls the other increments back.

To limit how many attempts are *evaluated* (not only how many failed), count the attempt with
``hit`` before evaluating it and ``release`` it (same ``now``) when it turns out not to count.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from simtopup.accounts.models import RateCounter
from simtopup.core.errors import DomainError


@dataclass(frozen=True)
class Limit:
    count: int
    seconds: int

    @classmethod
    def parse(cls, text: str) -> Limit:
        """``"5/3600"`` → at most 5 per hour."""
        count, _sep, seconds = text.partition("/")
        limit = cls(int(count), int(seconds))
        if limit.count < 1 or limit.seconds < 1:
            raise ValueError(f"bad rate limit {text!r}")
        return limit


def limits(texts: Iterable[str]) -> list[Limit]:
    """A setting's list of ``"count/seconds"`` texts → its limits."""
    return [Limit.parse(text) for text in texts]


class RateLimited(DomainError):
    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "too_many_requests",
            _("Too many requests. Please wait %(seconds)s seconds and try again.")
            % {"seconds": retry_after},
            429,
            headers={"Retry-After": str(retry_after)},
        )
        self.retry_after = retry_after


def ip_bucket(ip: str) -> str:
    """The unit an IP rate limit counts: the address for IPv4, its /64 for IPv6 (one
    subscriber usually holds a whole /64 and could rotate through it)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _window_start(now: datetime, seconds: int) -> datetime:
    epoch = math.floor(now.timestamp() / seconds) * seconds
    return datetime.fromtimestamp(epoch, tz=now.tzinfo)


def hit(key: str, limits: list[Limit], now: datetime | None = None) -> None:
    """Count one event for ``key`` against every limit, or raise :class:`RateLimited` with
    the longest wait. Must run inside ``transaction.atomic()``."""
    now = now or timezone.now()
    waits = []
    for limit in limits:
        start = _window_start(now, limit.seconds)
        won = RateCounter.objects.filter(
            key=key, window_seconds=limit.seconds, window_start=start, count__lt=limit.count
        ).update(count=F("count") + 1)
        if not won:
            try:
                with transaction.atomic():
                    RateCounter.objects.create(
                        key=key, window_seconds=limit.seconds, window_start=start, count=1
                    )
                    won = 1
            except IntegrityError:
                # The window exists (full, or created by a concurrent request just now).
                won = RateCounter.objects.filter(
                    key=key,
                    window_seconds=limit.seconds,
                    window_start=start,
                    count__lt=limit.count,
                ).update(count=F("count") + 1)
        if not won:
            end = start + timedelta(seconds=limit.seconds)
            waits.append(max(1, math.ceil((end - now).total_seconds())))
    if waits:
        raise RateLimited(max(waits))


type Keys = list[tuple[str, list[Limit]]]


def hit_all(keys: Keys, now: datetime | None = None) -> None:
    """Count one event for every key against its limits, or raise :class:`RateLimited` with
    the longest wait over all of them (raise inside the caller's transaction: it rolls back
    what the keys with room counted)."""
    now = now or timezone.now()
    waits = []
    for key, key_limits in keys:
        try:
            hit(key, key_limits, now)
        except RateLimited as exc:
            waits.append(exc.retry_after)
    if waits:
        raise RateLimited(max(waits))


def release(key: str, limits: list[Limit], now: datetime) -> None:
    """Give back one event that ``hit(key, limits, now)`` counted (the same ``now``, so the
    same windows), e.g. an attempt reserved before it was checked that was not a failure.
    A counter never goes below zero."""
    for limit in limits:
        RateCounter.objects.filter(
            key=key,
            window_seconds=limit.seconds,
            window_start=_window_start(now, limit.seconds),
            count__gt=0,
        ).update(count=F("count") - 1)


def reset(key: str) -> None:
    """Forget every window of ``key`` (e.g. failures from an address once its user is in)."""
    RateCounter.objects.filter(key=key).delete()


def prune(older_than: timedelta = timedelta(days=2)) -> int:
    """Delete counters of long-finished windows (run by the janitor)."""
    deleted, _ = RateCounter.objects.filter(window_start__lt=timezone.now() - older_than).delete()
    return deleted
