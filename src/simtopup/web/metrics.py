"""Prometheus text exposition of business gauges, read from the database (the truth).

The ledger gauges report the latest audit the worker stored (``LEDGER_AUDIT_INTERVAL_SECONDS``,
ops/janitor.py): ``simtopup_ledger_violations`` (0: sound), when it ran and how long it took.
Before the first audit they have no sample at all (only HELP/TYPE), so an alert on
``absent(simtopup_ledger_audit_timestamp_seconds)`` or on
``time() - simtopup_ledger_audit_timestamp_seconds > 900`` catches an audit that never ran
or stopped running, and no made-up value can pass for a result.
"""

from __future__ import annotations

from django.db.models import Count, Sum

from simtopup.ledger.models import LedgerAudit
from simtopup.orders.models import Order
from simtopup.payments.models import PaymentEvent
from simtopup.resellers.models import DeliveryStatus, FastSaleFallback, WebhookDelivery
from simtopup.usage.models import UsageRecord


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics() -> str:
    lines = [
        "# HELP simtopup_orders Orders by channel and status.",
        "# TYPE simtopup_orders gauge",
    ]
    for row in (
        Order.objects.values("channel", "status")
        .annotate(n=Count("id"))
        .order_by("channel", "status")
    ):
        lines.append(
            f'simtopup_orders{{channel="{_escape(row["channel"])}",status="{_escape(row["status"])}"}} {row["n"]}'
        )
    lines += [
        "# HELP simtopup_webhooks_pending Outgoing webhooks not yet delivered.",
        "# TYPE simtopup_webhooks_pending gauge",
    ]
    lines.append(
        f"simtopup_webhooks_pending {WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING).count()}"
    )
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
