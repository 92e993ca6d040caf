"""The desk's actions on a card or an order (issue 14): retry a stuck fulfilment, send a
receipt again, give goodwill credit (and approve or reject it), suspend or reinstate a card,
take a card out of its customer's account.

Each is a confirmation page (GET: what will happen, a reason to type) and its POST, which
checks the action's permission (backoffice/roles.py), calls the one domain function that
owns the rule (orders/service.py, devices/goodwill.py, devices/status.py,
devices/binding.py) and goes back to a safe ``next`` (the desk's story page links here with
``?next=``) or to the card's console page. A refusal shows on the form and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from simtopup.audit.log import from_request
from simtopup.backoffice import roles
from simtopup.core.errors import DomainError
from simtopup.core.http import safe_next
from simtopup.core.money import format_money, to_minor
from simtopup.devices import goodwill, status
from simtopup.devices.binding import unbind_card
from simtopup.devices.models import Device, DeviceStatus, GoodwillCredit, GoodwillStatus, mask
from simtopup.orders import service
from simtopup.orders.models import Order

type View = Callable[..., HttpResponse]

# The words the desk shows for a status (the code beside them, for the staff's precision).
DEVICE_STATUS_WORDS = {
    "in_stock": gettext_lazy("In stock"),
    "active": gettext_lazy("Active"),
    "suspended": gettext_lazy("Suspended"),
    "retired": gettext_lazy("Retired"),
}
ORDER_STATUS_WORDS = {
    "awaiting_payment": gettext_lazy("Awaiting payment"),
    "paid": gettext_lazy("Paid, crediting"),
    "fulfilling": gettext_lazy("Paid, crediting"),
    "fulfilled": gettext_lazy("Credited"),
    "failed": gettext_lazy("Failed, refunded"),
    "refunded": gettext_lazy("Refunded"),
    "cancelled": gettext_lazy("Cancelled"),
}

REASON_MAX_LENGTH = 500


def urls(site: Any) -> list[URLPattern]:
    """This module's console URLs (wrapped in ``site.admin_view``), in the admin namespace."""

    def wrap(view: View) -> Any:
        def bound(request: HttpRequest, **kwargs: Any) -> HttpResponse:
            request.current_app = site.name
            return view(request, site, **kwargs)

        bound.__name__ = view.__name__
        return site.admin_view(bound)

    return [
        path("desk/orders/<int:order_id>/retry/", wrap(retry_view), name="desk-retry"),
        path("desk/orders/<int:order_id>/resend/", wrap(resend_view), name="desk-resend"),
        path("desk/devices/<int:device_id>/goodwill/", wrap(goodwill_view), name="desk-goodwill"),
        path("desk/goodwill/", wrap(goodwill_list_view), name="desk-goodwill-list"),
        path(
            "desk/goodwill/<int:grant_id>/", wrap(goodwill_decide_view), name="desk-goodwill-decide"
        ),
        path("desk/devices/<int:device_id>/status/", wrap(status_view), name="desk-suspend"),
        path("desk/devices/<int:device_id>/unbind/", wrap(unbind_view), name="desk-unbind"),
    ]


# --- forms ----------------------------------------------------------------------------------


def _reason_field() -> forms.CharField:
    return forms.CharField(
        label=gettext_lazy("Reason"),
        max_length=REASON_MAX_LENGTH,
        help_text=gettext_lazy("Recorded on the audit log with the action."),
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
    )


class ReasonForm(forms.Form):
    reason = _reason_field()


class ResendForm(forms.Form):
    channel = forms.ChoiceField(
        label=gettext_lazy("Send by"),
        choices=[
            ("", gettext_lazy("as the customer's notices go (SMS to a phone, else email)")),
            ("sms", gettext_lazy("SMS")),
            ("email", gettext_lazy("email")),
        ],
        required=False,
    )
    reason = _reason_field()


class GoodwillForm(forms.Form):
    amount = forms.CharField(
        label=gettext_lazy("Amount"),
        max_length=20,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "size": 10}),
    )
    reason = _reason_field()

    def __init__(self, *args: Any, currency: str, **kwargs: Any) -> None:
        self.currency = currency
        super().__init__(*args, **kwargs)
        self.fields["amount"].help_text = _("In %(currency)s, e.g. 20.00") % {"currency": currency}

    def clean_amount(self) -> int:
        try:
            amount = to_minor(self.cleaned_data["amount"], self.currency)
        except DomainError as exc:
            raise forms.ValidationError(str(exc.message)) from None
        if amount <= 0:
            raise forms.ValidationError(_("Enter an amount above zero."))
        return amount


class SuspendForm(forms.Form):
    cause = forms.ChoiceField(
        label=gettext_lazy("Cause of the suspension"),
        choices=list(status.SUSPEND_CAUSES.items()),
    )
    reason = _reason_field()


class DecideForm(forms.Form):
    reason = forms.CharField(
        label=gettext_lazy("Reason"),
        max_length=REASON_MAX_LENGTH,
        required=False,
        help_text=gettext_lazy("Required to reject; recorded on the audit log."),
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
    )


# --- helpers --------------------------------------------------------------------------------


def _require(request: HttpRequest, permission: str) -> None:
    if not request.user.has_perm(permission):
        raise PermissionDenied


def _device_page(device_id: int) -> str:
    return reverse("admin:devices_device_change", args=[device_id])


def _who(request: HttpRequest) -> dict[str, Any]:
    who = from_request(request)
    return {"actor": who["actor"], "ip": who["ip"]}


def _owner(device: Device) -> str:
    owner = device.owner
    if owner is None:
        return _("nobody")
    return mask(owner.phone or owner.email or str(owner.pk))


def _page(
    request: HttpRequest,
    site: Any,
    *,
    title: str,
    facts: list[tuple[str, Any]],
    explain: str,
    form: forms.Form | None,
    buttons: list[tuple[str, str, str]],
    back: str,
    refusal: str = "",
    status_code: int = 200,
    template: str = "backoffice/desk/action_confirm.html",
) -> HttpResponse:
    context = {
        **site.each_context(request),
        "title": title,
        "facts": facts,
        "explain": explain,
        "form": form,
        "buttons": buttons if not refusal else [],
        "refusal": refusal,
        "next": request.POST.get("next") or request.GET.get("next") or "",
        "back": back,
    }
    return TemplateResponse(request, template, context, status=status_code)


def _refused(form: forms.Form, exc: DomainError) -> int:
    """Put the domain's refusal on the form; the page's status."""
    form.add_error(None, str(exc.message))
    return exc.status


def _order(order_id: int) -> Order:
    return get_object_or_404(
        Order.objects.select_related("device", "plan", "customer", "device__owner"), pk=order_id
    )


def _device(device_id: int) -> Device:
    return get_object_or_404(Device.objects.select_related("owner", "credit_account"), pk=device_id)


def _order_facts(order: Order) -> list[tuple[str, Any]]:
    return [
        (_("Order"), order.pk),
        (_("Status"), f"{ORDER_STATUS_WORDS.get(order.status, order.status)} ({order.status})"),
        (_("Data card"), order.device.masked),
        (_("Plan"), order.plan.name),
        (_("Amount"), format_money(order.amount, order.currency)),
        (_("Created"), order.created_at),
        (_("Attempts"), order.attempts),
        (_("Receipt"), order.receipt_no or "—"),
    ]


def _device_facts(device: Device) -> list[tuple[str, Any]]:
    return [
        (_("Data card"), device.masked),
        (_("Status"), DEVICE_STATUS_WORDS.get(device.status, device.status)),
        (_("Customer"), _owner(device)),
        (_("Credit"), format_money(device.credit_account.balance, device.credit_account.unit)),
    ]


# --- orders ---------------------------------------------------------------------------------


def retry_view(request: HttpRequest, site: Any, order_id: int) -> HttpResponse:
    _require(request, roles.RETRY_FULFILMENT)
    order = _order(order_id)
    back = safe_next(request, _device_page(order.device_id))
    form = ReasonForm(request.POST if request.method == "POST" else None)
    code = 200
    if request.method == "POST" and form.is_valid():
        try:
            outcome = service.retry_fulfilment(
                order, reason=form.cleaned_data["reason"], **_who(request)
            )
        except DomainError as exc:
            code = _refused(form, exc)
        else:
            words = {
                "fulfilled": _("The order is fulfilled now."),
                "retry": _("The attempt failed; the order will be tried again shortly."),
                "failed": _("The network refused the order for good: it was refunded."),
            }
            messages.info(
                request,
                words.get(outcome, _("Someone else finished this order meanwhile.")),
            )
            return HttpResponseRedirect(back)
    refusal = ""
    if request.method == "GET" and not service.stuck(order):
        refusal = _("Only an order paid or fulfilling for longer than usual can be retried.")
    return _page(
        request,
        site,
        title=_("Retry the fulfilment of order %(id)s") % {"id": order.pk},
        facts=_order_facts(order),
        explain=_(
            "The order is sent to the network once more now. It can never be fulfilled twice."
        ),
        form=form,
        buttons=[("", "", _("Retry now"))],
        back=back,
        refusal=refusal,
        status_code=code,
    )


def resend_view(request: HttpRequest, site: Any, order_id: int) -> HttpResponse:
    _require(request, roles.RESEND_RECEIPT)
    order = _order(order_id)
    back = safe_next(request, _device_page(order.device_id))
    form = ResendForm(request.POST if request.method == "POST" else None)
    code = 200
    if request.method == "POST" and form.is_valid():
        try:
            contact = service.resend_receipt(
                order,
                reason=form.cleaned_data["reason"],
                channel=form.cleaned_data["channel"] or None,
                **_who(request),
            )
        except DomainError as exc:
            code = _refused(form, exc)
        else:
            messages.success(
                request,
                _("Receipt %(receipt)s sent again to %(recipient)s.")
                % {"receipt": order.receipt_no, "recipient": mask(contact.recipient)},
            )
            return HttpResponseRedirect(back)
    refusal = ""
    facts = _order_facts(order)
    try:
        contact = service.receipt_contact(order)
        facts.append((_("Send to"), mask(contact.recipient)))
    except DomainError as exc:
        if request.method == "GET":
            refusal = str(exc.message)
    return _page(
        request,
        site,
        title=_("Send the receipt of order %(id)s again") % {"id": order.pk},
        facts=facts,
        explain=_("The customer gets the receipt number and a link to view and check the receipt."),
        form=form,
        buttons=[("", "", _("Send"))],
        back=back,
        refusal=refusal,
        status_code=code,
    )


# --- goodwill credit ------------------------------------------------------------------------


def goodwill_view(request: HttpRequest, site: Any, device_id: int) -> HttpResponse:
    _require(request, roles.GRANT_GOODWILL)
    device = _device(device_id)
    currency = device.credit_account.unit
    back = safe_next(request, _device_page(device.pk))
    form = GoodwillForm(request.POST if request.method == "POST" else None, currency=currency)
    code = 200
    if request.method == "POST" and form.is_valid():
        try:
            grant = goodwill.request_goodwill(
                device,
                form.cleaned_data["amount"],
                staff=request.user,
                ip=_who(request)["ip"],
                reason=form.cleaned_data["reason"],
            )
        except DomainError as exc:
            code = _refused(form, exc)
        else:
            amount = format_money(grant.amount, grant.currency)
            if grant.status == GoodwillStatus.POSTED:
                messages.success(
                    request, _("%(amount)s credited to the card.") % {"amount": amount}
                )
            else:
                messages.warning(
                    request,
                    _("%(amount)s waits for a second staff member's approval.")
                    % {"amount": amount},
                )
            return HttpResponseRedirect(back)
    limit = format_money(goodwill_limit(), currency)
    return _page(
        request,
        site,
        title=_("Goodwill credit for card %(card)s") % {"card": device.masked},
        facts=_device_facts(device),
        explain=_(
            "The credit goes onto the card at once, from the operator's adjustments. Above "
            "%(limit)s a second staff member must approve it first."
        )
        % {"limit": limit},
        form=form,
        buttons=[("", "", _("Give credit"))],
        back=back,
        status_code=code,
    )


def goodwill_limit() -> int:
    return int(settings.GOODWILL_APPROVAL_ABOVE)


def goodwill_list_view(request: HttpRequest, site: Any) -> HttpResponse:
    _require(request, roles.APPROVE_GOODWILL)
    grants = list(goodwill.pending()[:200])
    rows = [
        {
            "grant": grant,
            "card": grant.device.masked,
            "amount": format_money(grant.amount, grant.currency),
            "requested_by": grant.requested_by.get_username() if grant.requested_by else "—",
            "own": grant.requested_by_id == request.user.pk,
            "url": reverse("admin:desk-goodwill-decide", args=[grant.pk]),
        }
        for grant in grants
    ]
    context = {
        **site.each_context(request),
        "title": _("Goodwill credit awaiting approval"),
        "rows": rows,
    }
    return TemplateResponse(request, "backoffice/desk/goodwill_list.html", context)


def goodwill_decide_view(request: HttpRequest, site: Any, grant_id: int) -> HttpResponse:
    _require(request, roles.APPROVE_GOODWILL)
    grant = get_object_or_404(
        GoodwillCredit.objects.select_related(
            "device", "device__owner", "device__credit_account", "requested_by", "decided_by"
        ),
        pk=grant_id,
    )
    back = safe_next(request, reverse("admin:desk-goodwill-list"))
    form = DecideForm(request.POST if request.method == "POST" else None)
    code = 200
    if request.method == "POST" and form.is_valid():
        decision = request.POST.get("decision")
        reason = form.cleaned_data["reason"]
        try:
            if decision == "approve":
                goodwill.approve_goodwill(
                    grant, staff=request.user, ip=_who(request)["ip"], reason=reason
                )
                done = _("Goodwill credit approved and credited to the card.")
            elif decision == "reject":
                goodwill.reject_goodwill(
                    grant, staff=request.user, ip=_who(request)["ip"], reason=reason
                )
                done = _("Goodwill credit rejected.")
            else:
                raise DomainError("invalid_decision", _("Approve or reject."), 422)
        except DomainError as exc:
            code = _refused(form, exc)
        else:
            messages.success(request, done)
            return HttpResponseRedirect(back)
    refusal = ""
    if request.method == "GET" and grant.status != GoodwillStatus.PENDING:
        refusal = _("This goodwill credit was already decided.")
    elif request.method == "GET" and grant.requested_by_id == request.user.pk:
        refusal = _("A second staff member must approve it: you cannot approve your own request.")
    facts = [
        (_("Data card"), grant.device.masked),
        (_("Customer"), _owner(grant.device)),
        (_("Amount"), format_money(grant.amount, grant.currency)),
        (_("Status"), grant.get_status_display()),
        (_("Requested by"), grant.requested_by.get_username() if grant.requested_by else "—"),
        (_("Requested at"), grant.requested_at),
        (_("Their reason"), grant.reason),
    ]
    buttons = [("decision", "approve", _("Approve")), ("decision", "reject", _("Reject"))]
    if grant.requested_by_id == request.user.pk and grant.status == GoodwillStatus.PENDING:
        # Withdrawing one's own request is allowed; approving it is not.
        refusal, buttons = "", [("decision", "reject", _("Withdraw my request"))]
    return _page(
        request,
        site,
        title=_("Goodwill credit %(id)s") % {"id": grant.pk},
        facts=facts,
        explain=_("Approving credits the card at once. Rejecting needs a reason."),
        form=form,
        buttons=buttons,
        back=back,
        refusal=refusal,
        status_code=code,
    )


# --- the card -------------------------------------------------------------------------------


def status_view(request: HttpRequest, site: Any, device_id: int) -> HttpResponse:
    _require(request, roles.SUSPEND_DEVICE)
    device = _device(device_id)
    back = safe_next(request, _device_page(device.pk))
    suspended = device.status == DeviceStatus.SUSPENDED
    # The action is the one the page offered: a replayed "suspend" never reinstates.
    wanted = request.POST.get("action") if request.method == "POST" else None
    reinstating = wanted == "reinstate" if wanted else suspended
    data = request.POST if request.method == "POST" else None
    form: forms.Form = ReasonForm(data) if reinstating else SuspendForm(data)
    code = 200
    if request.method == "POST" and form.is_valid():
        who = _who(request)
        try:
            if reinstating:
                status.reinstate_card(device, reason=form.cleaned_data["reason"], **who)
                done = _("The card is reinstated.")
            else:
                status.suspend_card(
                    device,
                    reason=form.cleaned_data["reason"],
                    cause=form.cleaned_data["cause"],
                    **who,
                )
                done = _("The card is suspended: it cannot be topped up until reinstated.")
        except DomainError as exc:
            code = _refused(form, exc)
        else:
            messages.success(request, done)
            return HttpResponseRedirect(back)
    refusal = ""
    if request.method == "GET" and not suspended and device.status not in status.SUSPENDABLE:
        refusal = _("Only a card in stock or active can be suspended.")
    if reinstating:
        title = _("Reinstate card %(card)s") % {"card": device.masked}
        explain = _("The card can be topped up again.")
        buttons = [("action", "reinstate", _("Reinstate"))]
    else:
        title = _("Suspend card %(card)s") % {"card": device.masked}
        explain = _(
            "A suspended card cannot be topped up until it is reinstated (a lost or stolen "
            "card). Its credit and data stay on it."
        )
        buttons = [("action", "suspend", _("Suspend"))]
    return _page(
        request,
        site,
        title=title,
        facts=_device_facts(device),
        explain=explain,
        form=form,
        buttons=buttons,
        back=back,
        refusal=refusal,
        status_code=code,
    )


def unbind_view(request: HttpRequest, site: Any, device_id: int) -> HttpResponse:
    _require(request, roles.UNBIND_DEVICE)
    device = _device(device_id)
    back = safe_next(request, _device_page(device.pk))
    form = ReasonForm(request.POST if request.method == "POST" else None)
    code = 200
    if request.method == "POST" and form.is_valid():
        try:
            unbind_card(device, reason=form.cleaned_data["reason"], **_who(request))
        except DomainError as exc:
            code = _refused(form, exc)
        else:
            messages.success(request, _("The card is no longer in the customer's account."))
            return HttpResponseRedirect(back)
    refusal = ""
    if request.method == "GET" and device.owner_id is None:
        refusal = _("This card is not in anyone's account.")
    return _page(
        request,
        site,
        title=_("Remove card %(card)s from its customer's account") % {"card": device.masked},
        facts=_device_facts(device),
        explain=_(
            "The customer no longer sees the card in the app or on the website; its credit "
            "and data stay on the card. Whoever proves holding it can add it again."
        ),
        form=form,
        buttons=[("", "", _("Remove from the account"))],
        back=back,
        refusal=refusal,
        status_code=code,
    )
