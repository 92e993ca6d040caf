"""The desk's refund of an order (issue 14, point 3): what the order was, what was refunded
of it so far and what can still be, and a form — an amount (prefilled with what is left, in
major units: ``12.34``), where the money goes (back through the payment's provider, or to
the card's credit) and a reason.

The page parses the form, checks ``payments.issue_refund`` (backoffice/roles.py: support
and finance hold it) for GET and POST alike and calls ``payments.staff_refunds``, which owns
every rule (how much, to where, the ledger, the audit row, telling the customer). A refusal
shows on the form and changes nothing; a refund goes back to a safe ``next`` (the desk's
story page links here with ``?next=``) or to the order's console page.

A refund through the provider that failed after its retries is listed with a way out, for
the same permission: ask the provider again, or send it to the card's credit instead, with a
reason (``admin:desk-refund-failed``, POST only; ``staff_refunds.retry_failed_refund`` and
``failed_refund_to_credit`` own the rules). Either way the page comes back with what
happened.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from simtopup.audit.log import from_request
from simtopup.backoffice import roles
from simtopup.core.errors import DomainError
from simtopup.core.http import safe_next
from simtopup.core.money import format_money, to_decimal_string, to_minor
from simtopup.orders.models import Order
from simtopup.payments.models import Refund, RefundDestination, RefundStatus
from simtopup.payments.staff_refunds import (
    REASON_MAX,
    Refundable,
    failed_refund_to_credit,
    refund_by_staff,
    refundable,
    retry_failed_refund,
)


def urls(site: Any) -> list[URLPattern]:
    """This module's console URLs (wrapped in ``site.admin_view``), in the admin namespace."""

    def refund(request: HttpRequest, order_id: int) -> HttpResponse:
        request.current_app = site.name
        return refund_view(request, site, order_id)

    def failed(request: HttpRequest, refund_id: int) -> HttpResponse:
        request.current_app = site.name
        return failed_refund_view(request, refund_id)

    return [
        path("desk/orders/<int:order_id>/refund/", site.admin_view(refund), name="desk-refund"),
        path(
            "desk/refunds/<int:refund_id>/failed/",
            site.admin_view(failed),
            name="desk-refund-failed",
        ),
    ]


DESTINATION_LABELS = {
    RefundDestination.PROVIDER: gettext_lazy("Back through the payment's provider"),
    RefundDestination.CREDIT: gettext_lazy("To the card's credit"),
}
STATUS_LABELS = {
    RefundStatus.PENDING: gettext_lazy("Pending"),
    RefundStatus.SUCCEEDED: gettext_lazy("Refunded"),
    RefundStatus.FAILED: gettext_lazy("Failed"),
}
PAID_BY = {
    "balance": gettext_lazy("Card credit"),
    "card": gettext_lazy("Card"),
    "alipay": gettext_lazy("Alipay"),
    "wechat_pay": gettext_lazy("WeChat Pay"),
}


class RefundForm(forms.Form):
    amount = forms.CharField(
        label=gettext_lazy("Amount"),
        max_length=20,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "size": 10}),
    )
    destination = forms.ChoiceField(
        label=gettext_lazy("Refund to"), widget=forms.RadioSelect, choices=()
    )
    reason = forms.CharField(
        label=gettext_lazy("Reason"),
        max_length=REASON_MAX,
        help_text=gettext_lazy("Recorded on the audit log with the refund."),
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
    )

    def __init__(self, *args: Any, state: Refundable, **kwargs: Any) -> None:
        self.currency = state.order.currency
        super().__init__(*args, **kwargs)
        field = self.fields["destination"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [(d, DESTINATION_LABELS[RefundDestination(d)]) for d in state.destinations]
        self.fields["amount"].help_text = _("In %(currency)s, e.g. 12.34") % {
            "currency": self.currency
        }

    def clean_amount(self) -> int:
        try:
            return to_minor(self.cleaned_data["amount"], self.currency)
        except DomainError as exc:
            raise forms.ValidationError(str(exc.message)) from None


def refund_view(request: HttpRequest, site: Any, order_id: int) -> HttpResponse:
    if not request.user.has_perm(roles.ISSUE_REFUND):
        raise PermissionDenied
    order = get_object_or_404(
        Order.objects.select_related("device", "plan", "customer"), pk=order_id
    )
    back = safe_next(request, reverse("admin:orders_order_change", args=[order.pk]))
    state = refundable(order)
    status_code = 200
    if request.method == "POST" and state.refusal is None:
        form = RefundForm(request.POST, state=state)
        if form.is_valid():
            who = from_request(request)
            try:
                refund = refund_by_staff(
                    order,
                    form.cleaned_data["amount"],
                    form.cleaned_data["destination"],
                    form.cleaned_data["reason"],
                    who["actor"],
                    who["ip"],
                )
            except DomainError as exc:
                form.add_error(None, str(exc.message))
                status_code = exc.status
                state = refundable(order)
            else:
                amount = format_money(refund.amount, refund.currency)
                if refund.destination == RefundDestination.CREDIT:
                    done = _("%(amount)s went back to the card's credit.") % {"amount": amount}
                else:
                    done = _(
                        "A refund of %(amount)s was asked of the payment's provider; "
                        "the customer is told when it is made."
                    ) % {"amount": amount}
                messages.success(request, done)
                return HttpResponseRedirect(back)
        else:
            status_code = 400
    else:
        form = RefundForm(
            state=state,
            initial={
                "amount": to_decimal_string(state.remaining, order.currency),
                "destination": state.destinations[0],
            },
        )
    context = {
        **site.each_context(request),
        "title": _("Refund order %(order)s") % {"order": order.pk},
        "order": order,
        "facts": _facts(state),
        "refunds": _refunds(state),
        "remaining": format_money(state.remaining, order.currency),
        "refusal": str(state.refusal.message) if state.refusal is not None else "",
        "form": form,
        "next": request.POST.get("next") or request.GET.get("next") or "",
        "back": back,
        "reason_max": REASON_MAX,
    }
    return TemplateResponse(request, "backoffice/desk/refund.html", context, status=status_code)


def _facts(state: Refundable) -> list[tuple[str, Any]]:
    order = state.order
    paid_by = str(PAID_BY.get(order.payment_method, order.payment_method or "—"))
    if state.payment is not None:
        paid_by = f"{paid_by} ({state.payment.provider}, {state.payment.reference})"
    return [
        (_("Order"), order.pk),
        (_("Status"), order.get_status_display()),
        (_("Plan"), order.plan.name),
        (_("Data card"), order.device.masked),
        (_("Amount paid"), format_money(state.paid, order.currency)),
        (_("Paid by"), paid_by),
        (_("Refunded so far"), format_money(state.refunded, order.currency)),
        (_("Can still be refunded"), format_money(state.remaining, order.currency)),
    ]


def _refunds(state: Refundable) -> list[dict[str, Any]]:
    return [
        {
            "reference": r.reference,
            "at": r.created_at,
            "amount": format_money(r.amount, r.currency),
            "destination": str(
                DESTINATION_LABELS.get(RefundDestination(r.destination), r.destination)
            ),
            "status": str(STATUS_LABELS.get(RefundStatus(r.status), r.status)),
            "by": r.requested_by or _("automatic"),
            "reason": r.reason,
            "last_error": r.last_error if r.status == RefundStatus.FAILED else "",
            "failed_url": reverse("admin:desk-refund-failed", args=[r.pk])
            if r.status == RefundStatus.FAILED and r.destination == RefundDestination.PROVIDER
            else "",
            # The provider took it (it has the provider's id): only retrying is offered.
            "may_credit": not r.provider_refund_ref,
        }
        for r in state.refunds
    ]


FAILED_ACTIONS = {"retry": retry_failed_refund, "credit": failed_refund_to_credit}


def failed_refund_view(request: HttpRequest, refund_id: int) -> HttpResponse:
    """POST ``action`` (``retry`` or ``credit``) and ``reason`` for a failed provider
    refund; back to the order's refund page with what happened (or why nothing did)."""
    if not request.user.has_perm(roles.ISSUE_REFUND):
        raise PermissionDenied
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    refund = get_object_or_404(Refund, pk=refund_id)
    page = reverse("admin:desk-refund", args=[refund.order_id])
    action = FAILED_ACTIONS.get(request.POST.get("action", ""))
    if action is None:
        messages.error(
            request, _("Choose to retry through the provider or to send to the card's credit.")
        )
        return HttpResponseRedirect(page)
    who = from_request(request)
    try:
        done = action(refund, request.POST.get("reason", ""), who["actor"], who["ip"])
    except DomainError as exc:
        messages.error(request, str(exc.message))
        return HttpResponseRedirect(page)
    amount = format_money(done.amount, done.currency)
    if done.destination == RefundDestination.CREDIT:
        text = _("%(amount)s went back to the card's credit instead.") % {"amount": amount}
    else:
        text = _(
            "The refund of %(amount)s was asked of the payment's provider again; "
            "the customer is told when it is made."
        ) % {"amount": amount}
    messages.success(request, text)
    return HttpResponseRedirect(page)
