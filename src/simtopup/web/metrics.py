"""Prometheus text exposition of business gauges, read from the database (the truth)."""

from __future__ import annotations

from django.db.models import Count, Sum

from simtopup.orders.models import Order
from simtopup.resellers.models import DeliveryStatus, WebhookDelivery
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
    return "\n".join(lines) + "\n"
