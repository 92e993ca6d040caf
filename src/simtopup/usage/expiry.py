"""The expiry job (every minute, in the worker's janitor pass): warn 3 days and 1 day before a
bundle's end, and close bundles whose end has passed.

Closing a bundle, in one transaction per bundle: lock its account, set ``closed_at`` by
compare-and-swap (only an open bundle is closed), move its unused bytes back to
``data_issued`` through the ledger (``bundle_expiry``, one idempotency key per bundle) and
raise ``expired``. Each bundle's transaction stands on its own, so a run that stops half way
is resumed by the next; a second run finds nothing open and does nothing (idempotent).
Usage rating locks the same account, so a late usage batch and the closing queue.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from simtopup.core.transactions import durable
from simtopup.ledger.actions import Posting, lock_accounts, post, system_account
from simtopup.ledger.models import BYTES
from simtopup.usage.alerts import bundle_alert, raise_alerts
from simtopup.usage.models import Alert, AlertKind, Bundle

logger = logging.getLogger(__name__)

# (kind, how long before the end). Only bundles that run longer than the lead are warned
# (a 1-day pass gets no "expires in 1 day" at purchase); of the two, only the nearer one is
# raised for a bundle inside both windows.
WARNINGS = ((AlertKind.EXPIRES_1D, timedelta(days=1)), (AlertKind.EXPIRES_3D, timedelta(days=3)))


def run(now: datetime | None = None, limit: int = 1000) -> dict[str, int]:
    """One pass: warnings raised, bundles closed."""
    now = now or timezone.now()
    return {"warned": warn(now), "closed": close_ended(now, limit)}


def warn(now: datetime) -> int:
    """Raise the expiry warnings due (each once: unique alert keys)."""
    alerts: list[Alert] = []
    seen: set[int] = set()
    for i, (kind, lead) in enumerate(WARNINGS):
        rows = (
            Bundle.objects.filter(
                closed_at=None,
                expires_at__gt=now,
                expires_at__lte=now + lead,
                account__balance__gt=0,
            )
            # This warning or a nearer one already raised.
            .exclude(alerts__kind__in=[k for k, _lead in WARNINGS[: i + 1]])
            .values_list("id", "device_id", "starts_at", "expires_at", "account__balance")
        )
        for pk, device_id, starts_at, expires_at, balance in rows:
            if pk in seen or expires_at - starts_at <= lead:
                continue
            seen.add(pk)
            alerts.append(bundle_alert(pk, device_id, kind, now, remaining=balance))
    if alerts:
        durable(lambda: raise_alerts(alerts))
    return len(alerts)


def close_ended(now: datetime, limit: int = 1000) -> int:
    """Close the open bundles whose end has passed, each in its own transaction."""
    ids = list(
        Bundle.objects.filter(closed_at=None, expires_at__lte=now)
        .order_by("expires_at", "id")
        .values_list("id", flat=True)[:limit]
    )
    return sum(1 for pk in ids if durable(lambda pk=pk: _close(pk, now)))  # type: ignore[misc]


def _close(bundle_id: int, now: datetime) -> bool:
    bundle = Bundle.objects.select_related("account").get(pk=bundle_id)
    account = lock_accounts([bundle.account_id])[bundle.account_id]
    if not Bundle.objects.filter(pk=bundle_id, closed_at=None).update(closed_at=now):
        return False  # closed by another run meanwhile
    if account.balance > 0:
        post(
            [
                Posting(
                    account,
                    system_account("data_issued", BYTES),
                    account.balance,
                    "bundle_expiry",
                    f"bundle:{bundle_id}:expiry",
                    f"unused data of bundle {bundle_id} at its end",
                )
            ]
        )
    if bundle.expires_at > now - timedelta(seconds=settings.ALERT_EXPIRED_WINDOW_SECONDS):
        raise_alerts(
            [
                bundle_alert(
                    bundle_id, bundle.device_id, AlertKind.EXPIRED, now, remaining=account.balance
                )
            ]
        )
    return True
