"""Console pages of the daily reconciliation (finance/actions.py): the runs, one run's lines
(mismatches first, each linked to our payment or refund) and its CSV; a finance clerk can run
one now for a provider and a day (recorded in the audit log). Every view and the action need
``payments.view_reconciliation`` (finance and admin hold it; support does not)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from simtopup.audit.log import from_request
from simtopup.backoffice.roles import VIEW_RECONCILIATION
from simtopup.core.money import format_money, to_decimal_string
from simtopup.core.spreadsheet import Sheet
from simtopup.finance.actions import providers, reconcile
from simtopup.finance.models import (
    OUTCOME_ORDER,
    Outcome,
    ReconciliationLine,
    ReconciliationRun,
    RunStatus,
)
from simtopup.finance.reports import recent_runs, run_lines
from simtopup.payments.registry import provider_class

PROVIDER_LABELS: dict[str, Any] = {
    "sandbox": gettext_lazy("Sandbox gateway"),
    "stripe": "Stripe",  # a name, the same in every language
    "alipay": gettext_lazy("Alipay"),
    "wechatpay": gettext_lazy("WeChat Pay"),
}
OUTCOME_LABELS = {
    Outcome.AMOUNT_MISMATCH: gettext_lazy("Amount differs"),
    Outcome.STATE_MISMATCH: gettext_lazy("Status differs"),
    Outcome.MISSING_OURS: gettext_lazy("Only on the provider's statement"),
    Outcome.MISSING_THEIRS: gettext_lazy("Only in our records"),
    Outcome.MATCHED: gettext_lazy("Matched"),
}
STATUS_LABELS = {
    RunStatus.COMPLETED: gettext_lazy("Completed"),
    RunStatus.FAILED: gettext_lazy("Failed"),
}
KIND_LABELS = {"payment": gettext_lazy("Payment"), "refund": gettext_lazy("Refund")}
STATE_LABELS = {
    "succeeded": gettext_lazy("Succeeded"),
    "pending": gettext_lazy("Pending"),
    "failed": gettext_lazy("Failed"),
    "cancelled": gettext_lazy("Cancelled"),
    "refund_pending": gettext_lazy("Refund pending"),
    "refunded": gettext_lazy("Refunded"),
}


def _label(labels: dict[Any, Any], key: str) -> str:
    return str(labels.get(key, key or "—"))


class RunForm(forms.Form):
    provider = forms.ChoiceField(label=gettext_lazy("Provider"))
    day = forms.DateField(
        label=gettext_lazy("Day (in the provider's time zone)"),
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [(p, _label(PROVIDER_LABELS, p)) for p in providers()]
        self.fields["provider"].choices = choices  # type: ignore[attr-defined]

    def clean_day(self) -> date:
        day: date = self.cleaned_data["day"]
        if day > timezone.now().date() + timedelta(days=1):
            raise forms.ValidationError(_("The day has not come yet."))
        return day


def _check(request: HttpRequest) -> None:
    if not request.user.has_perm(VIEW_RECONCILIATION):
        raise PermissionDenied


def _money(amount: int | None, currency: str) -> str:
    if amount is None:
        return "—"
    return format_money(amount, currency or "CNY")


def _local(moment: datetime | None, run: ReconciliationRun) -> str:
    if moment is None:
        return ""
    zone = provider_class(run.provider).statement_zone
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def _run_row(run: ReconciliationRun) -> dict[str, Any]:
    return {
        "run": run,
        "provider": _label(PROVIDER_LABELS, run.provider),
        "status": _label(STATUS_LABELS, run.status),
        "failed": run.status == RunStatus.FAILED,
        "url": reverse("admin:finance-reconciliation-run", args=[run.pk]),
        # Only the kinds found, each with its count; the run's page has all five.
        "discrepancies": [
            {"label": str(OUTCOME_LABELS[o]), "count": getattr(run, o.value)}
            for o in OUTCOME_ORDER
            if o != Outcome.MATCHED and getattr(run, o.value)
        ],
    }


@require_http_methods(["GET", "POST"])
def index_view(request: HttpRequest) -> HttpResponse:
    """The runs, newest first, and the form that runs one now (POST)."""
    _check(request)
    if request.method == "POST":
        form = RunForm(request.POST)
        if form.is_valid():
            run = reconcile(
                form.cleaned_data["provider"], form.cleaned_data["day"], **from_request(request)
            )
            return HttpResponseRedirect(reverse("admin:finance-reconciliation-run", args=[run.pk]))
    else:
        yesterday = timezone.localdate() - timedelta(days=1)
        form = RunForm(initial={"provider": request.GET.get("provider") or "", "day": yesterday})
    shown = request.GET.get("provider", "")
    if shown not in providers():
        shown = ""
    context = {
        **admin.site.each_context(request),
        "title": _("Payment reconciliation"),
        "form": form,
        "runs": [_run_row(run) for run in recent_runs(shown)],
        "filters": [
            {"label": _("All providers"), "url": "?", "current": not shown},
            *(
                {
                    "label": _label(PROVIDER_LABELS, p),
                    "url": "?" + urlencode({"provider": p}),
                    "current": p == shown,
                }
                for p in providers()
            ),
        ],
    }
    return TemplateResponse(request, "backoffice/finance/reconciliation.html", context)


def _line_row(line: ReconciliationLine, run: ReconciliationRun) -> dict[str, Any]:
    if line.refund_id:
        url = reverse("admin:payments_refund_change", args=[line.refund_id])
    elif line.payment_id:
        url = reverse("admin:payments_payment_change", args=[line.payment_id])
    else:
        url = ""
    return {
        "kind": _label(KIND_LABELS, line.kind),
        "reference": line.reference or "—",
        "url": url,
        "payment_url": reverse("admin:payments_payment_change", args=[line.payment_id])
        if line.refund_id and line.payment_id
        else "",
        "provider_ref": line.provider_ref,
        "ours": _money(line.our_amount, line.currency),
        "theirs": _money(line.their_amount, line.currency),
        "our_state": _label(STATE_LABELS, line.our_state) if line.our_state else "—",
        "their_state": _label(STATE_LABELS, line.their_state) if line.their_state else "—",
        "at": _local(line.at, run),
        "amount_differs": line.outcome == Outcome.AMOUNT_MISMATCH,
        "state_differs": line.outcome == Outcome.STATE_MISMATCH,
    }


def run_view(request: HttpRequest, run_id: int) -> HttpResponse:
    """One run: its counts and its lines grouped by outcome, mismatches first."""
    _check(request)
    run = get_object_or_404(ReconciliationRun, pk=run_id)
    lines = list(run_lines(run))
    groups = []
    for outcome in OUTCOME_ORDER:
        rows = [_line_row(line, run) for line in lines if line.outcome == outcome]
        groups.append(
            {
                "outcome": outcome.value,
                "label": str(OUTCOME_LABELS[outcome]),
                "rows": rows,
                "mismatch": outcome != Outcome.MATCHED,
            }
        )
    context = {
        **admin.site.each_context(request),
        "title": _("Reconciliation of %(provider)s, %(day)s")
        % {"provider": _label(PROVIDER_LABELS, run.provider), "day": run.day.isoformat()},
        "run": run,
        "row": _run_row(run),
        "groups": groups,
        "counts": [
            {"label": str(OUTCOME_LABELS[o]), "count": getattr(run, o.value), "outcome": o.value}
            for o in OUTCOME_ORDER
        ],
        "index_url": reverse("admin:finance-reconciliation"),
        "csv_url": reverse("admin:finance-reconciliation-csv", args=[run.pk]),
        "finished": run.finished_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }
    return TemplateResponse(request, "backoffice/finance/reconciliation_run.html", context)


def csv_view(request: HttpRequest, run_id: int) -> HttpResponse:
    """One run's lines as a CSV download, in the order of the page."""
    _check(request)
    run = get_object_or_404(ReconciliationRun, pk=run_id)
    sheet = Sheet(
        [
            _("Outcome"),
            _("Type"),
            _("Our reference"),
            _("Provider's reference"),
            _("Currency"),
            _("Our amount"),
            _("Provider's amount"),
            _("Our status"),
            _("Provider's status"),
            _("Time (%(zone)s)") % {"zone": run.zone},
        ]
    )
    for line in run_lines(run):
        sheet.row(
            [
                _label(OUTCOME_LABELS, line.outcome),
                _label(KIND_LABELS, line.kind),
                line.reference,
                line.provider_ref,
                line.currency,
                to_decimal_string(line.our_amount, line.currency or "CNY")
                if line.our_amount is not None
                else "",
                to_decimal_string(line.their_amount, line.currency or "CNY")
                if line.their_amount is not None
                else "",
                _label(STATE_LABELS, line.our_state) if line.our_state else "",
                _label(STATE_LABELS, line.their_state) if line.their_state else "",
                _local(line.at, run),
            ]
        )
    return sheet.response(f"reconciliation-{run.provider}-{run.day.isoformat()}-{run.run_no}.csv")


def urls(site: Any) -> list[URLPattern]:
    """This module's console URLs (wrapped in ``site.admin_view``), in the admin namespace."""
    return [
        path(
            "finance/reconciliation/",
            site.admin_view(index_view),
            name="finance-reconciliation",
        ),
        path(
            "finance/reconciliation/<int:run_id>/",
            site.admin_view(run_view),
            name="finance-reconciliation-run",
        ),
        path(
            "finance/reconciliation/<int:run_id>/csv/",
            site.admin_view(csv_view),
            name="finance-reconciliation-csv",
        ),
    ]
