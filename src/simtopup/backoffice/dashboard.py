"""The console's dashboard (/admin/dashboard/): today, 7 days or 30 days in the operator's
calendar. Revenue is net of the refunds decided in the window — what the operator kept —
beside what was sold and what was refunded, and the ledger's revenue account for the same
window (into, out of, net) is shown above it: the number the ledger itself recorded.

It only composes the domain's report queries (orders/reports.py, payments/reports.py,
ledger/reports.py, resellers/reports.py, usage/reports.py) and draws bars as SVG written
here (no script, no external reference: the CSP holds). It needs ``ledger.view_account``
(finance and admin hold it; support does not: money and floats are finance's business).
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from simtopup.core.money import to_decimal_string
from simtopup.ledger import reports as ledger_reports
from simtopup.orders import reports as orders_reports
from simtopup.orders.models import OrderStatus
from simtopup.orders.receipts import customer_zone
from simtopup.payments import reports as payments_reports
from simtopup.resellers import reports as resellers_reports
from simtopup.usage import reports as usage_reports

PERMISSION = "ledger.view_account"

WINDOW_LABELS = {
    "today": gettext_lazy("Today"),
    "7d": gettext_lazy("7 days"),
    "30d": gettext_lazy("30 days"),
}
CHANNEL_LABELS = {
    "app": gettext_lazy("App"),
    "web": gettext_lazy("Website"),
    "reseller": gettext_lazy("Reseller"),
    "auto": gettext_lazy("Automatic"),
}
METHOD_LABELS = {
    "card": gettext_lazy("Card"),
    "alipay": gettext_lazy("Alipay"),
    "wechat_pay": gettext_lazy("WeChat Pay"),
    "balance": gettext_lazy("Card credit"),
    "": gettext_lazy("Reseller float"),  # a reseller's sale: paid from its float
}
STATUS_LABELS = {
    "awaiting_payment": gettext_lazy("Awaiting payment"),
    "paid": gettext_lazy("Paid"),
    "fulfilling": gettext_lazy("Fulfilling"),
    "fulfilled": gettext_lazy("Fulfilled"),
    "failed": gettext_lazy("Failed"),
    "refunded": gettext_lazy("Refunded"),
    "cancelled": gettext_lazy("Cancelled"),
}

BAR_HEIGHT = 22
LABEL_WIDTH = 160
BAR_WIDTH = 360


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    text: str


def bars_svg(bars: list[Bar], title: str) -> SafeString:
    """Horizontal bars as inline SVG: text and rects only, every string escaped."""
    top = max((b.value for b in bars), default=0) or 1
    height = BAR_HEIGHT * max(len(bars), 1) + 4
    width = LABEL_WIDTH + BAR_WIDTH + 120
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="dashboard-chart" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}"><title>{escape(title)}</title>'
    ]
    for i, bar in enumerate(bars):
        y = i * BAR_HEIGHT + 2
        length = round(BAR_WIDTH * bar.value / top) if bar.value > 0 else 0
        parts.append(
            f'<text x="{LABEL_WIDTH - 6}" y="{y + 15}" text-anchor="end" font-size="12" '
            f'fill="#333">{escape(bar.label)}</text>'
            f'<rect x="{LABEL_WIDTH}" y="{y + 3}" width="{length}" height="{BAR_HEIGHT - 6}" '
            f'fill="#417690"/>'
            f'<text x="{LABEL_WIDTH + length + 6}" y="{y + 15}" font-size="12" '
            f'fill="#333">{escape(bar.text)}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308  (every interpolated string is escaped)


def columns_svg(values: list[int], title: str, labels: list[str]) -> SafeString:
    """Vertical columns (one per hour) as inline SVG, with a label under every 6th column."""
    top = max(values, default=0) or 1
    chart_h, width = 120, 720
    step = width / max(len(values), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="dashboard-chart" role="img" width="{width}" '
        f'height="{chart_h + 20}" viewBox="0 0 {width} {chart_h + 20}">'
        f"<title>{escape(title)}</title>"
    ]
    every = max(len(values) // 8, 1)
    for i, value in enumerate(values):
        h = round(chart_h * value / top)
        parts.append(
            f'<rect x="{i * step:.1f}" y="{chart_h - h}" width="{max(step - 1, 0.5):.1f}" '
            f'height="{h}" fill="#417690"/>'
        )
        if i % every == 0:
            parts.append(
                f'<text x="{i * step:.1f}" y="{chart_h + 14}" font-size="10" '
                f'fill="#666">{escape(labels[i])}</text>'
            )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308  (every interpolated string is escaped)


def _money(amount: int, currency: str) -> str:
    return f"{to_decimal_string(amount, currency)} {currency}"


def _changelist(model: str, **params: str) -> str:
    return f"{reverse(f'admin:{model}_changelist')}?{urlencode(params)}"


def dashboard_view(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    context = {
        **admin.site.each_context(request),
        "title": _("Dashboard"),
        **dashboard_context(request),
    }
    return TemplateResponse(request, "backoffice/dashboard.html", context)


def dashboard_context(request: HttpRequest) -> dict[str, Any]:
    """The dashboard's numbers for ``?window=`` (today, 7d, 30d), for the template
    backoffice/dashboard_body.html (the caller checks PERMISSION)."""
    name = request.GET.get("window", "today")
    if name not in orders_reports.WINDOW_DAYS:
        name = "today"
    now = timezone.now()
    window = orders_reports.window(name, now=now)
    zone = customer_zone(None)

    sales = {}
    for field, labels in (("channel", CHANNEL_LABELS), ("payment_method", METHOD_LABELS)):
        # Revenue net of the period's refunds (payments/reports.py revenue_by).
        rows = payments_reports.revenue_by(field, window.start, window.end)
        sales[field] = {
            "rows": [
                {
                    "label": str(labels.get(r.key, r.key or "—")),
                    "count": r.count,
                    "sold": _money(r.sold, r.currency),
                    "refunded": _money(r.refunded, r.currency) if r.refunds else "—",
                    "revenue": _money(r.revenue, r.currency),
                }
                for r in rows
            ],
            "chart": bars_svg(
                [
                    Bar(
                        f"{labels.get(r.key, r.key or '—')} ({r.currency})",
                        r.revenue,
                        _money(r.revenue, r.currency),
                    )
                    for r in rows
                ],
                _("Revenue"),
            )
            if rows
            else None,
        }
    ledger_revenue = [
        {
            "currency": m.currency,
            "into": _money(m.into, m.currency),
            "out": _money(m.out, m.currency),
            "net": _money(m.net, m.currency),
        }
        for m in ledger_reports.revenue_movements(window.start, window.end)
    ]

    by_status = orders_reports.orders_by_status(window.start, window.end)
    since = window.start.isoformat()
    until = window.end.isoformat()
    statuses = [
        {
            "label": str(STATUS_LABELS.get(status, status)),
            "count": count,
            "url": _changelist(
                "orders_order",
                status__exact=status,
                created_at__gte=since,
                created_at__lt=until,
            ),
            "alarm": status == OrderStatus.FAILED and count > 0,
        }
        for status, count in by_status.items()
    ]
    stuck = orders_reports.stuck_count(now=now)
    stuck_url = _changelist(
        "orders_order",
        status__in="paid,fulfilling",
        created_at__lt=orders_reports.stuck_before(now).isoformat(),
    )

    rates = [
        {
            "provider": r.provider,
            "attempts": r.attempts,
            "succeeded": r.succeeded,
            "pending": r.pending,
            "rate": f"{r.rate * 100:.1f} %" if r.rate is not None else "—",
        }
        for r in payments_reports.success_by_provider(window.start, window.end)
    ]
    refunds = payments_reports.refunds_open()
    floats = resellers_reports.floats()
    hours = usage_reports.ingested_per_hour(window.start, window.end)
    hour_format = "%H:%M" if name == "today" else "%m-%d %H:%M"
    usage_chart = columns_svg(
        [h.records for h in hours],
        _("Usage records ingested per hour"),
        [h.start.strftime(hour_format) for h in hours],
    )

    return {
        "windows": [
            {"name": key, "label": label, "current": key == name}
            for key, label in WINDOW_LABELS.items()
        ],
        "window": window,
        # Formatted here: the template's date filter would show them in TIME_ZONE (UTC).
        "start_local": window.start.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
        "end_local": window.end.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
        "zone": zone.key,
        "sales_channel": sales["channel"],
        "sales_method": sales["payment_method"],
        "ledger_revenue": ledger_revenue,
        "statuses": statuses,
        "stuck": stuck,
        "stuck_url": stuck_url,
        "failed_url": _changelist("orders_order", status__exact=OrderStatus.FAILED),
        "rates": rates,
        "refunds": refunds,
        "refund_amounts": [_money(a, c) for c, a in refunds.pending_amounts.items()],
        "refunds_url": _changelist("payments_refund", status__exact="pending"),
        "failed_refunds_url": _changelist("payments_refund", status__exact="failed"),
        "flagged_url": _changelist("payments_paymentevent", review="needed"),
        "floats": [
            {
                "code": f.reseller.code,
                "name": f.reseller.name,
                "balance": _money(f.balance, f.reseller.currency),
                "low": f.low,
                "url": reverse("admin:resellers_reseller_change", args=[f.reseller.pk]),
            }
            for f in floats
        ],
        "low_floats": sum(1 for f in floats if f.low),
        "low_float": _money(resellers_reports.low_float(), settings.CURRENCY),
        "usage_chart": usage_chart,
        "usage_records": sum(h.records for h in hours),
        "usage_bytes": sum(h.bytes for h in hours),
    }


def home_context(request: HttpRequest) -> dict[str, Any]:
    """What the console's index (backoffice/index.html) adds: the dashboard, for staff who
    may see it; nothing for the others."""
    if not request.user.has_perm(PERMISSION):
        return {}
    return {"dashboard": True, "dashboard_title": _("Dashboard"), **dashboard_context(request)}
