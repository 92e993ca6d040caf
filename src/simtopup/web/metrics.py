"""Prometheus text exposition of business gauges, read from the database (the truth).

The ledger gauges report the latest audit the worker stored (``LEDGER_AUDIT_INTERVAL_SECONDS``,
ops/janitor.py): ``simtopup_ledger_violations`` (0: sound), when it ran and how long it took.
Before the first audit they have no sample at all (only HELP/TYPE), so an alert on
``absent(simtopup_ledger_audit_timestamp_seconds)`` or on
``time() - simtopup_ledger_audit_timestamp_seconds > 900`` catches an audit that never ran
or stopped running, and no made-up value can pass for a result.

Business counters are counted from the rows that hold the truth, one GROUP BY query per
table, never in a process's memory (which a restart or a second process would make wrong).
They are Prometheus counters because those rows are never deleted (orders, payment
notifications: nothing in the application deletes them) and what they count only grows: an
order's ``attempts`` only goes up, and an order reaches one outcome once — ``fulfilled``
(``fulfilled_at`` is set once and stays, whatever happens to the order later), ``failed``
(failed, and then refunded, without being fulfilled) or ``cancelled`` (never paid) — and a
notification's result is written in the transaction that stores it. What moves both ways
(orders by status, deliveries by status, the backlog's age) is a gauge.
The dashboard over these names is deploy/grafana/simtopup.json
(tests/test_metrics.py checks that every name it uses is served here).
"""

from __future__ import annotations

from django.db.models import BooleanField, Count, ExpressionWrapper, F, Min, Q, Sum
from django.utils import timezone

from simtopup.devices.models import GoodwillCredit, GoodwillStatus
from simtopup.finance.models import ReconciliationRun, RunStatus
from simtopup.ledger.models import LedgerAudit
from simtopup.orders.models import Channel, Order, OrderStatus
from simtopup.payments.models import PaymentEvent, Refund, RefundStatus
from simtopup.resellers.models import DeliveryStatus, FastSaleFallback, WebhookDelivery
from simtopup.usage.models import UsageRecord


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics() -> str:
    lines = _orders()
    lines += _payment_notifications()
    lines += _webhooks()
    lines += _finance()
    usage = UsageRecord.objects.aggregate(n=Count("id"), b=Sum("bytes"), o=Sum("overage_bytes"))
    lines += [
        "# HELP simtopup_usage_records_total Usage records rated.",
        "# TYPE simtopup_usage_records_total counter",
        f"simtopup_usage_records_total {usage['n'] or 0}",
        "# HELP simtopup_usage_bytes_total Bytes rated.",
        "# TYPE simtopup_usage_bytes_total counter",
        f"simtopup_usage_bytes_total {usage['b'] or 0}",
        "# HELP simtopup_overage_bytes_total Bytes used beyond bundles and credit.",
        "# TYPE simtopup_overage_bytes_total counter",
        f"simtopup_overage_bytes_total {usage['o'] or 0}",
    ]
    flagged = PaymentEvent.objects.filter(flagged_at__isnull=False, reviewed_at__isnull=True)
    lines += [
        "# HELP simtopup_payment_events_flagged Provider notifications that did not match"
        " (amount, currency, merchant, refund), awaiting an operator's review.",
        "# TYPE simtopup_payment_events_flagged gauge",
        f"simtopup_payment_events_flagged {flagged.count()}",
    ]
    lines += _ledger_audit()
    lines += [
        "# HELP simtopup_fast_path_fallbacks_total Reseller top-ups the one-statement path"
        " handed to the general path, by reason.",
        "# TYPE simtopup_fast_path_fallbacks_total counter",
    ]
    for reason, count in FastSaleFallback.objects.order_by("reason").values_list("reason", "count"):
        lines.append(f'simtopup_fast_path_fallbacks_total{{reason="{_escape(reason)}"}} {count}')
    return "\n".join(lines) + "\n"


# Where an order ended up, for simtopup_topups_total: FAILED and REFUNDED are one outcome (a
# failed top-up's money goes back, and its status moves on to refunded when it is back).
OUTCOMES = ("fulfilled", "failed", "cancelled")
_OUTCOME_OF_STATUS: dict[str, str] = {
    OrderStatus.FAILED: "failed",
    OrderStatus.REFUNDED: "failed",
    OrderStatus.CANCELLED: "cancelled",
}


def _labels(**labels: str) -> str:
    return ",".join(f'{name}="{_escape(value)}"' for name, value in labels.items())


def _orders() -> list[str]:
    """Orders by channel and status (gauge), top-ups by channel and outcome, fulfilment
    attempts and retries by channel (counters): one query over the orders."""
    rows = (
        Order.objects.annotate(
            was_fulfilled=ExpressionWrapper(
                Q(fulfilled_at__isnull=False), output_field=BooleanField()
            )
        )
        .values("channel", "status", "was_fulfilled")
        .annotate(
            n=Count("id"),
            tries=Sum("attempts"),
            retries=Sum(F("attempts") - 1, filter=Q(attempts__gt=1)),
        )
        .order_by()
    )
    channels = [str(c) for c in Channel.values]
    by_status: dict[tuple[str, str], int] = {}
    outcomes = {(c, o): 0 for c in channels for o in OUTCOMES}
    attempts = dict.fromkeys(channels, 0)
    retries = dict.fromkeys(channels, 0)
    for row in rows:
        channel, status, n = row["channel"], row["status"], row["n"]
        by_status[channel, status] = by_status.get((channel, status), 0) + n
        outcome = "fulfilled" if row["was_fulfilled"] else _OUTCOME_OF_STATUS.get(status)
        if outcome:
            outcomes[channel, outcome] = outcomes.get((channel, outcome), 0) + n
        attempts[channel] = attempts.get(channel, 0) + (row["tries"] or 0)
        retries[channel] = retries.get(channel, 0) + (row["retries"] or 0)
    lines = [
        "# HELP simtopup_orders Orders by channel and status.",
        "# TYPE simtopup_orders gauge",
    ]
    for (channel, status), n in sorted(by_status.items()):
        lines.append(f"simtopup_orders{{{_labels(channel=channel, status=status)}}} {n}")
    lines += [
        "# HELP simtopup_topups_total Top-ups (orders of every channel) that reached an outcome:"
        " fulfilled, failed (its money returned) or cancelled (never paid).",
        "# TYPE simtopup_topups_total counter",
    ]
    for (channel, outcome), n in sorted(outcomes.items()):
        lines.append(f"simtopup_topups_total{{{_labels(channel=channel, outcome=outcome)}}} {n}")
    lines += [
        "# HELP simtopup_fulfilment_attempts_total The worker's attempts to fulfil a paid order"
        " (an order fulfilled in its sale's own transaction, by a synchronous network, makes"
        " none).",
        "# TYPE simtopup_fulfilment_attempts_total counter",
    ]
    for channel, n in sorted(attempts.items()):
        lines.append(f"simtopup_fulfilment_attempts_total{{{_labels(channel=channel)}}} {n}")
    lines += [
        "# HELP simtopup_fulfilment_retries_total Fulfilment attempts after an order's first"
        " (the one before failed, or its worker lost the lease).",
        "# TYPE simtopup_fulfilment_retries_total counter",
    ]
    for channel, n in sorted(retries.items()):
        lines.append(f"simtopup_fulfilment_retries_total{{{_labels(channel=channel)}}} {n}")
    return lines


def _payment_notifications() -> list[str]:
    """Verified provider notifications by provider and result (a duplicate of one already
    stored is not stored again, so not counted): one query."""
    lines = [
        "# HELP simtopup_payment_notifications_total Verified payment provider notifications"
        " (and mismatching status answers) stored, by provider and result.",
        "# TYPE simtopup_payment_notifications_total counter",
    ]
    rows = (
        PaymentEvent.objects.values("provider", "outcome")
        .annotate(n=Count("id"))
        .order_by("provider", "outcome")
    )
    for row in rows:
        labels = _labels(provider=row["provider"], result=row["outcome"])
        lines.append(f"simtopup_payment_notifications_total{{{labels}}} {row['n']}")
    return lines


def _webhooks() -> list[str]:
    """The outgoing webhook backlog: deliveries by status and the age of the oldest one not
    yet delivered, in one query."""
    counts = WebhookDelivery.objects.aggregate(
        **{str(status): Count("id", filter=Q(status=status)) for status in DeliveryStatus.values},
        oldest=Min("created_at", filter=Q(status=DeliveryStatus.PENDING)),
    )
    oldest = counts.pop("oldest")
    age = (timezone.now() - oldest).total_seconds() if oldest else 0.0
    lines = [
        "# HELP simtopup_webhooks_pending Outgoing webhooks not yet delivered.",
        "# TYPE simtopup_webhooks_pending gauge",
        f"simtopup_webhooks_pending {counts[DeliveryStatus.PENDING]}",
        "# HELP simtopup_webhook_deliveries Outgoing webhooks by status (failed: given up"
        " after the last retry).",
        "# TYPE simtopup_webhook_deliveries gauge",
    ]
    for status in sorted(counts):
        lines.append(f"simtopup_webhook_deliveries{{{_labels(status=status)}}} {counts[status]}")
    lines += [
        "# HELP simtopup_webhook_oldest_pending_age_seconds How long the oldest outgoing"
        " webhook not yet delivered has waited (0: none waits).",
        "# TYPE simtopup_webhook_oldest_pending_age_seconds gauge",
        f"simtopup_webhook_oldest_pending_age_seconds {max(age, 0.0):.3f}",
    ]
    return lines


def _ledger_audit() -> list[str]:
    latest = (
        LedgerAudit.objects.order_by("-id")
        .only("checked_at", "violations_count", "duration_ms")
        .first()
    )
    lines = [
        "# HELP simtopup_ledger_violations Violations found by the latest ledger audit (0: sound).",
        "# TYPE simtopup_ledger_violations gauge",
    ]
    if latest:
        lines.append(f"simtopup_ledger_violations {latest.violations_count}")
    lines += [
        "# HELP simtopup_ledger_audit_timestamp_seconds When the latest ledger audit ran (Unix time).",
        "# TYPE simtopup_ledger_audit_timestamp_seconds gauge",
    ]
    if latest:
        lines.append(f"simtopup_ledger_audit_timestamp_seconds {latest.checked_at.timestamp():.3f}")
    lines += [
        "# HELP simtopup_ledger_audit_duration_seconds How long the latest ledger audit took.",
        "# TYPE simtopup_ledger_audit_duration_seconds gauge",
    ]
    if latest:
        lines.append(f"simtopup_ledger_audit_duration_seconds {latest.duration_ms / 1000:.3f}")
    return lines


def _finance() -> list[str]:
    """What the finance desk watches: each provider's latest reconciliation (its unmatched
    lines, whether it could be made and when), refunds the providers refused for good, and
    goodwill credit waiting for a second staff member."""
    latest: dict[str, ReconciliationRun] = {}
    for run in ReconciliationRun.objects.order_by("provider", "-day", "-run_no").only(
        "provider",
        "day",
        "run_no",
        "status",
        "finished_at",
        "missing_ours",
        "missing_theirs",
        "amount_mismatch",
        "state_mismatch",
    ):
        latest.setdefault(run.provider, run)
    lines = [
        "# HELP simtopup_reconciliation_unmatched Lines of each provider's latest reconciled"
        " day that did not match (missing on either side, amount or state differing).",
        "# TYPE simtopup_reconciliation_unmatched gauge",
    ]
    for provider, run in sorted(latest.items()):
        if run.status == RunStatus.COMPLETED:
            unmatched = (
                run.missing_ours + run.missing_theirs + run.amount_mismatch + run.state_mismatch
            )
            lines.append(
                f"simtopup_reconciliation_unmatched{{{_labels(provider=provider)}}} {unmatched}"
            )
    lines += [
        "# HELP simtopup_reconciliation_ok Whether each provider's latest reconciliation run"
        " got the provider's statement (1) or failed (0).",
        "# TYPE simtopup_reconciliation_ok gauge",
    ]
    for provider, run in sorted(latest.items()):
        ok = 1 if run.status == RunStatus.COMPLETED else 0
        lines.append(f"simtopup_reconciliation_ok{{{_labels(provider=provider)}}} {ok}")
    lines += [
        "# HELP simtopup_reconciliation_timestamp_seconds When each provider's latest"
        " reconciliation run finished (Unix time).",
        "# TYPE simtopup_reconciliation_timestamp_seconds gauge",
    ]
    for provider, run in sorted(latest.items()):
        stamp = f"{run.finished_at.timestamp():.3f}"
        lines.append(
            f"simtopup_reconciliation_timestamp_seconds{{{_labels(provider=provider)}}} {stamp}"
        )
    failed = Refund.objects.filter(status=RefundStatus.FAILED).count()
    pending = GoodwillCredit.objects.filter(status=GoodwillStatus.PENDING).count()
    lines += [
        "# HELP simtopup_refunds_failed Refunds the provider refused after every retry"
        " (customer service retries them or sends them to the card's credit).",
        "# TYPE simtopup_refunds_failed gauge",
        f"simtopup_refunds_failed {failed}",
        "# HELP simtopup_goodwill_pending Goodwill credit waiting for a second staff member.",
        "# TYPE simtopup_goodwill_pending gauge",
        f"simtopup_goodwill_pending {pending}",
    ]
    return lines
