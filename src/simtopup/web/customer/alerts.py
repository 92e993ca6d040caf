"""A card's alerts on the website: the channels (SMS, email, push to the installed app) and
the credit below which a pay-per-use card warns (usage/alerts.py; the app API has the same
choices at /api/v1/devices/{id}/alerts)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from simtopup.core.errors import DomainError, show_error
from simtopup.core.money import format_money, to_decimal_string, to_minor
from simtopup.devices.models import Device
from simtopup.usage.alerts import alert_settings_of, effective_credit_threshold, set_alert_settings
from simtopup.web.customer.common import device_or_404, me
from simtopup.web.session import customer_required


class AlertsForm(forms.Form):
    sms = forms.BooleanField(label=gettext_lazy("By SMS"), required=False)
    email = forms.BooleanField(label=gettext_lazy("By email"), required=False)
    push = forms.BooleanField(label=gettext_lazy("By notification in the app"), required=False)
    credit_threshold = forms.CharField(
        label=gettext_lazy("Warn when the credit drops below"),
        required=False,
        max_length=20,
        help_text=gettext_lazy("Empty: enough for 100 MB."),
    )


def _page(
    request: HttpRequest, device: Device, form: AlertsForm, status: int = 200
) -> HttpResponse:
    chosen = alert_settings_of(device)
    currency = device.credit_account.unit
    context = {
        "device": device,
        "form": form,
        "threshold": format_money(effective_credit_threshold(chosen), currency),
        "customer": me(request),
        # Here, not in the template: a literal % in {% translate %} is looked up as %%.
        "explanation": _(
            "We tell you when a plan is 80% and 100% used, 3 days and 1 day before it expires "
            "and when it has expired, and when pay-per-use credit runs low or out. Each "
            "message has a link to top up in one tap."
        ),
    }
    return render(request, "web/customer/alerts.html", context, status=status)


@customer_required
@require_http_methods(["GET", "POST"])
def alert_settings(request: HttpRequest, device_id: int) -> HttpResponse:
    device = device_or_404(me(request), device_id)
    currency = device.credit_account.unit
    if request.method != "POST":
        chosen = alert_settings_of(device)
        initial = {
            "sms": chosen.sms,
            "email": chosen.email,
            "push": chosen.push,
            "credit_threshold": (
                ""
                if chosen.credit_threshold is None
                else to_decimal_string(chosen.credit_threshold, currency)
            ),
        }
        return _page(request, device, AlertsForm(initial=initial))
    form = AlertsForm(request.POST)
    if form.is_valid():
        text = form.cleaned_data["credit_threshold"].strip()
        try:
            threshold = (
                None
                if not text
                else to_minor(text, currency, field="credit_threshold", allow_zero=True)
            )
            set_alert_settings(
                device,
                sms=form.cleaned_data["sms"],
                email=form.cleaned_data["email"],
                push=form.cleaned_data["push"],
                credit_threshold=threshold,
            )
        except DomainError as exc:
            show_error(form, exc, default="credit_threshold")
        else:
            messages.success(request, _("Alert settings saved."))
            return redirect("web:alerts", device_id=device.pk)
    return _page(request, device, form, status=422)
