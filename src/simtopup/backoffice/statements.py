"""Console pages of finance: resellers' bank deposits (record one, list them), resellers'
monthly float statements (HTML, CSV, PDF) and the ledger by day (revenue, money taken for
orders not yet fulfilled, gateway clearing).

The views parse, check the permission and call the domain: deposits are recorded by
:func:`simtopup.resellers.actions.record_deposit` (which writes the audit row), statements
come from :mod:`simtopup.resellers.statements`, the days from :mod:`simtopup.ledger.reports`.
Recording a deposit needs ``resellers.credit_reseller``; the reports need
``ledger.view_finance_reports`` (finance and admin; support holds neither).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from functools import wraps
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods

from simtopup.audit.log import from_request
from simtopup.backoffice import roles
from simtopup.core.errors import DomainError, show_error
from simtopup.core.money import format_money, to_minor
from simtopup.ledger.actions import system_account
from simtopup.ledger.models import Account, AccountKind
from simtopup.ledger.reports import balances_by_day
from simtopup.orders.receipts import customer_zone, zone_label
from simtopup.resellers.actions import record_deposit
from simtopup.resellers.models import Reseller
from simtopup.resellers.statements import (
    as_csv,
    as_pdf,
    filename,
    recent_deposits,
    statement,
    statement_context,
    this_month,
)

View = Callable[..., HttpResponse]

# The ledger by day: the accounts shown (code stem, column title) and the windows offered.
LEDGER_COLUMNS = (
    ("revenue", gettext_lazy("Revenue")),
    ("order_clearing", gettext_lazy("Deferred (orders not yet fulfilled)")),
    ("gateway_clearing", gettext_lazy("Gateway clearing")),
)
LEDGER_WINDOWS = {30: gettext_lazy("30 days"), 90: gettext_lazy("90 days")}


def needs(permission: str) -> Callable[[View], View]:
    """The view refuses (403) a staff member without ``permission``."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.has_perm(permission):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapped

    return decorate


def _page(
    site: Any, request: HttpRequest, template: str, title: str, status: int = 200, **extra: Any
) -> TemplateResponse:
    context = {**site.each_context(request), "title": title, **extra}
    return TemplateResponse(request, f"backoffice/{template}.html", context, status=status)


def _resellers() -> Any:
    return Reseller.objects.order_by("code")


class ResellerChoice(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.code} · {obj.name} ({obj.currency})"


# --- deposits -------------------------------------------------------------------------------


class DepositForm(forms.Form):
    reseller = ResellerChoice(queryset=Reseller.objects.none(), label=gettext_lazy("Reseller"))
    amount = forms.CharField(
        label=gettext_lazy("Amount"),
        max_length=20,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "placeholder": "1000.00"}),
    )
    bank_reference = forms.CharField(label=gettext_lazy("Bank reference"), max_length=100)
    received_on = forms.DateField(
        label=gettext_lazy("Received on"), widget=forms.DateInput(attrs={"type": "date"})
    )
    reason = forms.CharField(
        label=gettext_lazy("Reason"),
        max_length=300,
        help_text=gettext_lazy("Recorded on the audit log with the deposit."),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["reseller"].queryset = _resellers()  # type: ignore[attr-defined]


def deposits_view(site: Any) -> View:
    @needs(roles.CREDIT_RESELLER)
    @require_http_methods(["GET", "POST"])
    def view(request: HttpRequest) -> HttpResponse:
        form = DepositForm(request.POST if request.method == "POST" else None)
        status = 200
        if request.method == "POST":
            status = 400
            if form.is_valid():
                reseller: Reseller = form.cleaned_data["reseller"]
                try:
                    amount = to_minor(form.cleaned_data["amount"], reseller.currency)
                    deposit = record_deposit(
                        reseller,
                        amount,
                        form.cleaned_data["bank_reference"],
                        form.cleaned_data["received_on"],
                        reason=form.cleaned_data["reason"],
                        **from_request(request),
                    )
                except DomainError as exc:
                    if exc.code == "duplicate_bank_reference":
                        status = 409
                    if not exc.errors and exc.code in {
                        "invalid_amount",
                        "too_many_decimals",
                        "amount_not_positive",
                        "amount_too_large",
                    }:
                        form.add_error("amount", str(exc.message))
                    else:
                        show_error(form, exc)
                else:
                    messages.success(
                        request,
                        _("Deposit %(reference)s of %(amount)s recorded for %(reseller)s.")
                        % {
                            "reference": deposit.bank_reference,
                            "amount": format_money(deposit.amount, deposit.currency),
                            "reseller": reseller.code,
                        },
                    )
                    return redirect("admin:finance-deposits")
        rows = [
            {
                "deposit": d,
                "amount": format_money(d.amount, d.currency),
            }
            for d in recent_deposits()
        ]
        return _page(
            site,
            request,
            "finance_deposits",
            _("Reseller deposits"),
            status=status,
            form=form,
            rows=rows,
        )

    return view


# --- statements -----------------------------------------------------------------------------


class StatementForm(forms.Form):
    reseller = ResellerChoice(queryset=Reseller.objects.none(), label=gettext_lazy("Reseller"))
    month = forms.CharField(
        label=gettext_lazy("Month"),
        max_length=7,
        widget=forms.DateInput(attrs={"type": "month", "placeholder": "2026-11"}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["reseller"].queryset = _resellers()  # type: ignore[attr-defined]

    def clean_month(self) -> tuple[int, int]:
        text = self.cleaned_data["month"].strip()
        try:
            year, month = (int(part) for part in text.split("-"))
            date(year, month, 1)
        except ValueError:
            raise forms.ValidationError(_("Enter a month such as 2026-11.")) from None
        if (year, month) > this_month():
            raise forms.ValidationError(_("There is no statement for a month to come."))
        return year, month


def statements_view(site: Any) -> View:
    @needs(roles.VIEW_FINANCE_REPORTS)
    @require_GET
    def view(request: HttpRequest) -> HttpResponse:
        form = StatementForm(request.GET or None)
        if form.is_bound and form.is_valid():
            year, month = form.cleaned_data["month"]
            return redirect(
                "admin:finance-statement",
                reseller_id=form.cleaned_data["reseller"].pk,
                year=year,
                month=month,
                fmt="html",
            )
        status = 400 if form.is_bound else 200
        return _page(
            site, request, "finance_statements", _("Reseller statements"), status=status, form=form
        )

    return view


def statement_view(site: Any) -> View:
    @needs(roles.VIEW_FINANCE_REPORTS)
    @require_GET
    def view(
        request: HttpRequest, reseller_id: int, year: int, month: int, fmt: str
    ) -> HttpResponse:
        if fmt not in {"html", "csv", "pdf"}:
            raise Http404
        reseller = get_object_or_404(
            Reseller.objects.select_related("float_account"), pk=reseller_id
        )
        try:
            st = statement(reseller, year, month)
        except DomainError:
            raise Http404 from None
        language = translation.get_language() or settings.LANGUAGE_CODE
        if fmt == "csv":
            return as_csv(st, language).response(filename(st, "csv"))
        if fmt == "pdf":
            response = HttpResponse(as_pdf(st, language), content_type="application/pdf")
            response["Content-Disposition"] = f'attachment; filename="{filename(st, "pdf")}"'
            return response
        links = {
            kind: reverse(
                "admin:finance-statement",
                kwargs={"reseller_id": reseller.pk, "year": year, "month": month, "fmt": kind},
            )
            for kind in ("csv", "pdf")
        }
        return _page(
            site,
            request,
            "finance_statement",
            _("Statement of %(reseller)s for %(month)s")
            % {"reseller": reseller.code, "month": st.label},
            links=links,
            **statement_context(st),
        )

    return view


# --- the ledger by day ----------------------------------------------------------------------


def ledger_days_view(site: Any) -> View:
    @needs(roles.VIEW_FINANCE_REPORTS)
    @require_GET
    def view(request: HttpRequest) -> HttpResponse:
        try:
            days = int(request.GET.get("days", 30))
        except ValueError:
            days = 0
        if days not in LEDGER_WINDOWS:
            days = 30
        currencies = sorted(
            set(
                Account.objects.filter(
                    kind=AccountKind.SYSTEM, code__startswith="system:revenue:"
                ).values_list("unit", flat=True)
            )
            | {settings.CURRENCY}
        )
        currency = request.GET.get("currency", settings.CURRENCY)
        if currency not in currencies:
            currency = settings.CURRENCY
        zone = customer_zone(None)
        now = timezone.now()
        last = now.astimezone(zone).date()
        first = last - timedelta(days=days - 1)
        accounts = [system_account(stem, currency) for stem, _title in LEDGER_COLUMNS]
        rows = [
            {
                "day": d.day,
                "cells": [
                    {
                        "balance": format_money(b, currency),
                        "change": format_money(c, currency),
                    }
                    for b, c in zip(d.balances, d.changes, strict=True)
                ],
            }
            for d in reversed(balances_by_day(accounts, first, last, zone))
        ]
        return _page(
            site,
            request,
            "finance_ledger_days",
            _("Ledger by day"),
            columns=[str(title) for _stem, title in LEDGER_COLUMNS],
            rows=rows,
            days=days,
            windows=[{"days": n, "label": label} for n, label in LEDGER_WINDOWS.items()],
            currency=currency,
            currencies=currencies,
            zone=zone_label(zone, now),
        )

    return view


def urls(site: Any) -> list[URLPattern]:
    """This module's console URLs (wrapped in ``site.admin_view``), in the admin namespace."""
    return [
        path(
            "finance/deposits/",
            site.admin_view(deposits_view(site)),
            name="finance-deposits",
        ),
        path(
            "finance/statements/",
            site.admin_view(statements_view(site)),
            name="finance-statements",
        ),
        path(
            "finance/statements/<int:reseller_id>/<int:year>/<int:month>/<str:fmt>/",
            site.admin_view(statement_view(site)),
            name="finance-statement",
        ),
        path(
            "finance/ledger/",
            site.admin_view(ledger_days_view(site)),
            name="finance-ledger-days",
        ),
    ]
