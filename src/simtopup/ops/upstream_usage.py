"""Usage of the cards a wholesale provider serves, read from it on a schedule (the janitor).

The provider, not our network API, sees these cards' traffic. Each card whose top-up the
provider fulfilled has a :class:`~simtopup.network.models.UpstreamCard`; when it is due, its
usage is read (Airalo: ``GET sims/{iccid}/usage``) and what was used since the last read
becomes one usage record, rated by :func:`simtopup.usage.rating.ingest` like any other — so
bundles drain, balances and usage alerts work as for our own network.

Within the provider's rate limits: a card is read at most once per
``SIMTOPUP_UPSTREAM_USAGE_INTERVAL_SECONDS`` and never sooner than the provider allows per card
(Airalo: 10 requests a minute per ICCID, so 6 s); a 429 moves the card's next read to its
``Retry-After``. A pass reads at most ``limit`` cards (the most overdue first).

The provider reports a used total over the packages on the card now: the difference from the
last read is the new usage. It can go down (a package ended and left the total): the base is
then reset, nothing is rated. Record ids are ``<provider>:<iccid>:<n>``, n counting the records
of the card; the record is rated before the read is saved, so a pass that dies in between
re-sends the same id, which rating refuses as a duplicate — never rated twice.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from simtopup.network.adapters import AdapterError, get_adapter
from simtopup.network.models import UpstreamCard, UpstreamEvent
from simtopup.usage.rating import UsageIn, ingest

logger = logging.getLogger(__name__)

# Webhook deliveries are remembered this long (a duplicate later than that is not expected),
# and forgotten at most once an hour per process.
EVENT_RETENTION = timedelta(days=30)
_prune_due_at = 0.0


def prune_events(now: datetime | None = None) -> int:
    global _prune_due_at
    if time.monotonic() < _prune_due_at:
        return 0
    _prune_due_at = time.monotonic() + 3600
    cutoff = (now or timezone.now()) - EVENT_RETENTION
    return UpstreamEvent.objects.filter(received_at__lt=cutoff).delete()[0]


def sync_usage(limit: int = 50, now: datetime | None = None) -> dict[str, int]:
    """One pass over the due cards; counts of what happened (empty: no provider)."""
    adapter = get_adapter()
    provider = getattr(adapter, "provider", None)
    read = getattr(adapter, "read_usage", None)
    if provider is None or read is None:
        return {}
    now = now or timezone.now()
    interval = timedelta(
        seconds=max(
            settings.UPSTREAM_USAGE_INTERVAL_SECONDS,
            float(getattr(adapter, "usage_spacing_seconds", 1.0)),
        )
    )
    due = (
        UpstreamCard.objects.filter(provider=provider, next_read_at__lte=now)
        .select_related("device")
        .order_by("next_read_at", "pk")[:limit]
    )
    counts: Counter[str] = Counter()
    if pruned := prune_events(now):
        counts["events_pruned"] = pruned
    for card in list(due):
        iccid = card.device.iccid or ""
        try:
            usage = read(iccid)
        except AdapterError as exc:
            wait = max(timedelta(seconds=exc.retry_after or 0), interval)
            UpstreamCard.objects.filter(pk=card.pk).update(next_read_at=now + wait)
            counts["rate_limited" if exc.retry_after is not None else "failed"] += 1
            logger.warning("usage of %s from %s: %s", iccid, provider, exc)
            continue
        sequence, used = card.sequence, usage.used_bytes
        if usage.unlimited:
            counts["unlimited"] += 1
        elif used > card.used_bytes:
            record = UsageIn(
                id=f"{provider}:{iccid}:{sequence + 1}",
                iccid=iccid,
                bytes=used - card.used_bytes,
                started_at=card.read_at or now,
                ended_at=now,
            )
            result = ingest([record])
            if result.rejected:
                logger.warning("usage of %s from %s refused: %s", iccid, provider, result.rejected)
                counts["rejected"] += 1
            else:  # a duplicate: an earlier pass rated it, then died before saving the read
                counts["records" if result.accepted else "duplicates"] += 1
            sequence += 1
        elif used < card.used_bytes:
            counts["reset"] += 1  # a package left the provider's total: a new base
        else:
            counts["unchanged"] += 1
        UpstreamCard.objects.filter(pk=card.pk).update(
            used_bytes=used, sequence=sequence, read_at=now, next_read_at=now + interval
        )
    return dict(counts)
