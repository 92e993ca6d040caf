"""One reconciler pass: finish stuck orders, settle payments left pending, prune old keys,
and audit the ledger when its interval has passed. (Due webhooks are delivered by the
worker's webhook lane, never here: a slow receiver must not hold up this pass.)"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from simtopup.accounts.login import prune_login_data
from simtopup.core import idempotency
from simtopup.finance.actions import run_daily as reconcile_daily
from simtopup.ledger.audit import record_audit
from simtopup.ledger.models import LedgerAudit
from simtopup.ops.upstream_usage import sync_usage as sync_upstream_usage
from simtopup.orders.actions import reconcile
from simtopup.orders.customer import prune_quotes
from simtopup.payments.actions import sweep as sweep_payments
from simtopup.payments.registry import enabled_providers
from simtopup.usage import alerts as usage_alerts
from simtopup.usage import expiry

logger = logging.getLogger(__name__)

# After an audit that failed (not one that found violations: that one is stored), this
# process waits for the interval before trying again (monotonic time).
_audit_retry_at = 0.0
# The expiry job runs at most once a minute (this pass runs every reconcile interval).
EXPIRY_INTERVAL_SECONDS = 60.0
_expiry_due_at = 0.0
# The daily reconciliation looks for a due day at most every few minutes.
RECONCILIATION_INTERVAL_SECONDS = 300.0
_reconciliation_due_at = 0.0


def maybe_expire_bundles() -> dict[str, int] | None:
    """The bundle expiry job (usage/expiry.py), once a minute; None when not due."""
    global _expiry_due_at
    if time.monotonic() < _expiry_due_at:
        return None
    _expiry_due_at = time.monotonic() + EXPIRY_INTERVAL_SECONDS
    try:
        return expiry.run()
    except Exception:
        # The rest of the pass goes on; the next pass resumes where this one stopped.
        logger.exception("bundle expiry job failed; next attempt in a minute")
        return None


def maybe_sync_upstream_usage() -> dict[str, int] | None:
    """Usage of the cards a wholesale provider serves (ops/upstream_usage.py); each card is
    read only when due, so this pass may run as often as it likes."""
    try:
        return sync_upstream_usage()
    except Exception:
        logger.exception("upstream usage sync failed; next attempt in the next pass")
        return None


def maybe_reconcile_statements() -> dict[str, str] | None:
    """The daily reconciliation of every enabled provider's statement (finance/actions.py:
    yesterday's, once the provider has made it; a failed run is retried later), looked at
    every few minutes; None when not due."""
    global _reconciliation_due_at
    if time.monotonic() < _reconciliation_due_at:
        return None
    _reconciliation_due_at = time.monotonic() + RECONCILIATION_INTERVAL_SECONDS
    try:
        return reconcile_daily(enabled_providers())
    except Exception:
        logger.exception("daily reconciliation failed; next attempt in a few minutes")
        return None


def maybe_audit_ledger() -> LedgerAudit | None:
    """Audit the ledger if ``LEDGER_AUDIT_INTERVAL_SECONDS`` have passed since the latest
    stored audit (by any worker); returns the stored result, or None when not due.

    The audit runs in the worker's loop: tasks wait while it reads (one snapshot, read-only,
    so sales do not)."""
    global _audit_retry_at
    interval = settings.LEDGER_AUDIT_INTERVAL_SECONDS
    if interval <= 0 or time.monotonic() < _audit_retry_at:
        return None
    latest = LedgerAudit.objects.order_by("-id").values_list("checked_at", flat=True).first()
    if latest is not None and timezone.now() - latest < timedelta(seconds=interval):
        return None
    try:
        return record_audit()
    except Exception:
        _audit_retry_at = time.monotonic() + interval
        logger.exception("ledger audit failed; next attempt in %s s", interval)
        return None


def run_janitor() -> dict[str, object]:
    orders = reconcile()
    payments = sweep_payments()
    pruned = idempotency.prune()
    prune_quotes()
    if orders or payments:
        logger.info("reconciler: orders %s, payments %s", orders, payments)
    bundles = maybe_expire_bundles()
    upstream_usage = maybe_sync_upstream_usage()
    alerts_sent = usage_alerts.deliver_due()
    audited = maybe_audit_ledger()
    reconciled = maybe_reconcile_statements()
    return {
        "orders": orders,
        "payments": payments,
        "idempotency_pruned": pruned,
        "login_codes_pruned": prune_login_data(),
        # Expiry job (None: not due this pass) and alert channels retried and sent.
        "bundles": bundles,
        # Usage read from the wholesale provider's cards that were due ({}: none, or builtin).
        "upstream_usage": upstream_usage,
        "alerts_retried": alerts_sent,
        # Violations the ledger audit found in this pass; None: no audit was due.
        "ledger_violations": audited.violations_count if audited else None,
        # Daily reconciliation runs made in this pass ({provider: "day status"}); None: not
        # looked at this pass.
        "reconciliations": reconciled,
    }
