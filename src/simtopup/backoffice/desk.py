"""The customer-service desk (issue 14, point 3): one search box for whatever a customer reads
out over the phone, and the card's or the customer's whole story on one page, with the
actions of the desk one click away; a support ticket's thread, a reply and its status.

The views parse, check the permission and render: the search is support/lookup.py's
``find``, the stories are support/story.py's read models (each section read only when the
staff member may see it), replies and statuses support/actions.py's. Times are shown in the
operator's zone (settings.DISPLAY_TIME_ZONE), money and data as everywhere else.

The actions (refund, retry, re-send, goodwill credit, suspend, unbind) are other modules'
pages (backoffice/desk_actions.py, desk_refunds.py); a button is shown when its URL exists
and the staff member holds its permission, and carries ``?next=`` back to this page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from simtopup.backoffice.dashboard import CHANNEL_LABELS, METHOD_LABELS, STATUS_LABELS, columns_svg
from simtopup.backoffice.roles import (
    APPROVE_GOODWILL,
    GRANT_GOODWILL,
    ISSUE_REFUND,
    REPLY_TICKET,
    RESEND_RECEIPT,
    RETRY_FULFILMENT,
    SUSPEND_DEVICE,
    UNBIND_DEVICE,
)
from simtopup.catalog.display import format_data
from simtopup.core.errors import DomainError
from simtopup.core.http import client_ip
from simtopup.core.money import format_money
from simtopup.devices import identifiers
from simtopup.devices.identifiers import find_device
from simtopup.devices.models import Device
from simtopup.orders.models import Order, OrderStatus
from simtopup.orders.receipts import customer_zone
from simtopup.support import story as stories
from simtopup.support.actions import MAX_REPLY, reply_to_ticket, set_ticket_status
from simtopup.support.lookup import MAX_QUERY, Hit, find
from simtopup.support.models import SupportTicket, TicketStatus

VIEW_DEVICE = "devices.view_device"
VIEW_CUSTOMER = "accounts.view_customer"
VIEW_ORDER = "orders.view_order"
VIEW_PAYMENT = "payments.view_payment"
VIEW_REFUND = "payments.view_refund"
VIEW_BUNDLE = "usage.view_bundle"
VIEW_USAGE = "usage.view_usagerecord"
VIEW_ALERT = "usage.view_alert"
VIEW_TICKET = "support.view_supportticket"
VIEW_RESELLER = "resellers.view_reseller"
# The desk's actions: URL name (admin namespace), the argument it takes, its permission (the
# custom permissions are backoffice/roles.py's).
ORDER_ACTIONS = (
    ("refund", "admin:desk-refund", ISSUE_REFUND, gettext_lazy("Refund")),
    ("retry", "admin:desk-retry", RETRY_FULFILMENT, gettext_lazy("Retry fulfilment")),
    ("resend", "admin:desk-resend", RESEND_RECEIPT, gettext_lazy("Re-send receipt")),
)
DEVICE_ACTIONS = (
    ("goodwill", "admin:desk-goodwill", GRANT_GOODWILL, gettext_lazy("Goodwill credit")),
    ("suspend", "admin:desk-suspend", SUSPEND_DEVICE, gettext_lazy("Suspend or reinstate")),
    ("unbind", "admin:desk-unbind", UNBIND_DEVICE, gettext_lazy("Unbind from the customer")),
)
# The orders whose buttons are worth showing (each action checks again and says no).
ACTION_STATUSES = {
    "refund": (OrderStatus.PAID, OrderStatus.FULFILLING, OrderStatus.FULFILLED, OrderStatus.FAILED),
    "retry": (OrderStatus.PAID, OrderStatus.FULFILLING, OrderStatus.FAILED),
    "resend": (OrderStatus.FULFILLED, OrderStatus.REFUNDED),
}
# What each section of a story needs (the sections support/story.py reads).
DEVICE_SECTION_PERMISSIONS = {
    "owner": VIEW_CUSTOMER,
    "bundles": VIEW_BUNDLE,
    "credit": VIEW_DEVICE,
    "orders": VIEW_ORDER,
    "payments": VIEW_PAYMENT,
    "refunds": VIEW_REFUND,
    "usage": VIEW_USAGE,
    "alerts": VIEW_ALERT,
    "tickets": VIEW_TICKET,
}
CUSTOMER_SECTION_PERMISSIONS = {
    "devices": VIEW_DEVICE,
    "orders": VIEW_ORDER,
    "payments": VIEW_PAYMENT,
    "refunds": VIEW_REFUND,
    "tickets": VIEW_TICKET,
}
SEARCH_PERMISSIONS = (VIEW_DEVICE, VIEW_CUSTOMER, VIEW_ORDER, VIEW_TICKET)
HIT_PERMISSIONS = {
    "device": VIEW_DEVICE,
    "customer": VIEW_CUSTOMER,
    "order": VIEW_DEVICE,  # an order opens its card's story
    "reseller": VIEW_RESELLER,
    "ticket": VIEW_TICKET,
}

HIT_LABELS = {
    "device": gettext_lazy("Data card"),
    "customer": gettext_lazy("Customer"),
    "order": gettext_lazy("Order"),
    "reseller": gettext_lazy("Reseller"),
    "ticket": gettext_lazy("Support ticket"),
}
MATCH_LABELS = {
    "iccid": "ICCID",
    "eid": "EID",
    "imei": "IMEI",
    "serial": gettext_lazy("Serial number"),
    "phone": gettext_lazy("Phone number"),
    "email": gettext_lazy("Email"),
    "receipt_number": gettext_lazy("Receipt number"),
    "order_id": gettext_lazy("Order number"),
    "reference": gettext_lazy("Reseller's reference"),
    "agent_code": gettext_lazy("Agent code"),
    "ticket": gettext_lazy("Support ticket"),
}
DEVICE_STATUS_LABELS = {
    "in_stock": gettext_lazy("In stock"),
    "active": gettext_lazy("Active"),
    "suspended": gettext_lazy("Suspended"),
    "retired": gettext_lazy("Retired"),
}
BUNDLE_STATE_LABELS = {
    "active": gettext_lazy("Active"),
    "upcoming": gettext_lazy("Not started yet"),
    "expired": gettext_lazy("Expired"),
    "used_up": gettext_lazy("Used up"),
}
PAYMENT_STATUS_LABELS = {
    "pending": gettext_lazy("Pending"),
    "succeeded": gettext_lazy("Succeeded"),
    "failed": gettext_lazy("Failed"),
    "cancelled": gettext_lazy("Cancelled"),
    "refund_pending": gettext_lazy("Refund pending"),
    "refunded": gettext_lazy("Refunded"),
}
REFUND_STATUS_LABELS = {
    "pending": gettext_lazy("Pending"),
    "succeeded": gettext_lazy("Refunded"),
    "failed": gettext_lazy("Failed"),
}
REFUND_DESTINATION_LABELS = {
    "provider": gettext_lazy("Back through the payment's provider"),
    "credit": gettext_lazy("To the card's credit"),
}
TICKET_STATUS_LABELS: dict[str, Any] = {
    TicketStatus.NEW.value: gettext_lazy("New"),
    TicketStatus.WAITING.value: gettext_lazy("Waiting on customer"),
    TicketStatus.SOLVED.value: gettext_lazy("Solved"),
}
DELIVERY_LABELS = {
    "pending": gettext_lazy("Sending"),
    "delivered": gettext_lazy("Delivered"),
    "sent": gettext_lazy("Delivered"),
    "failed": gettext_lazy("Failed"),
}
ALERT_LABELS = {
    "used_80": gettext_lazy("80 % of the data used"),
    "used_100": gettext_lazy("All the data used"),
    "expires_3d": gettext_lazy("Plan ends in 3 days"),
    "expires_1d": gettext_lazy("Plan ends in 1 day"),
    "expired": gettext_lazy("Plan ended"),
    "credit_low": gettext_lazy("Credit low"),
    "credit_exhausted": gettext_lazy("Credit used up"),
}


def urls(site: Any) -> list[URLPattern]:
    """This module's console URLs (wrapped in ``site.admin_view``), in the admin namespace."""
    return [
        path("desk/", site.admin_view(search), name="desk-search"),
        path("desk/devices/<int:device_id>/", site.admin_view(device_page), name="desk-device"),
        path(
            "desk/customers/<int:customer_id>/",
            site.admin_view(customer_page),
            name="desk-customer",
        ),
        path("desk/tickets/<int:ticket_id>/", site.admin_view(ticket_page), name="desk-ticket"),
    ]


# --- helpers -----------------------------------------------------------------------------


def action_url(name: str, next_url: str, **kwargs: int) -> str | None:
    """``name``'s URL with ``?next=``, or None while no module provides it (the desk's
    actions come from other modules: the button is hidden until they exist)."""
    try:
        url = reverse(name, kwargs=kwargs)
    except NoReverseMatch:
        try:
            url = reverse(name, args=list(kwargs.values()))
        except NoReverseMatch:
            return None
    return f"{url}?{urlencode({'next': next_url})}"


def _actions(
    request: HttpRequest, table: tuple[tuple[str, str, str, Any], ...], next_url: str, **kw: int
) -> list[dict[str, str]]:
    shown = []
    for key, name, permission, label in table:
        if not request.user.has_perm(permission):
            continue
        url = action_url(name, next_url, **kw)
        if url is not None:
            shown.append({"key": key, "url": url, "label": str(label)})
    return shown


def _when(value: datetime | None) -> str:
    """A moment in the operator's zone: ``2026-03-10 12:00``."""
    if value is None:
        return "—"
    return value.astimezone(customer_zone(None)).strftime("%Y-%m-%d %H:%M")


def _changelist(model: str, **params: Any) -> str:
    return f"{reverse(f'admin:{model}_changelist')}?{urlencode(params)}"


def _sections(request: HttpRequest, table: dict[str, str]) -> set[str]:
    return {name for name, permission in table.items() if request.user.has_perm(permission)}


def _context(request: HttpRequest, title: str, **values: Any) -> dict[str, Any]:
    from django.contrib import admin

    return {
        **admin.site.each_context(request),
        "title": title,
        "query": request.GET.get("q", "")[:MAX_QUERY],
        "max_query": MAX_QUERY,
        **values,
    }


def hit_url(hit: Hit) -> str:
    if hit.kind == "device":
        return reverse("admin:desk-device", args=[hit.pk])
    if hit.kind == "customer":
        return reverse("admin:desk-customer", args=[hit.pk])
    if hit.kind == "order":
        return reverse("admin:desk-device", args=[hit.device_id]) + f"#order-{hit.pk}"
    if hit.kind == "reseller":
        return reverse("admin:resellers_reseller_change", args=[hit.pk])
    return reverse("admin:desk-ticket", args=[hit.pk])


# --- search ------------------------------------------------------------------------------


def search(request: HttpRequest) -> HttpResponse:
    """``?q=``: one hit opens its page, several are listed, none says so."""
    if not any(request.user.has_perm(p) for p in SEARCH_PERMISSIONS):
        raise PermissionDenied
    query = request.GET.get("q", "").strip()[:MAX_QUERY]
    hits = [h for h in find(query) if request.user.has_perm(HIT_PERMISSIONS[h.kind])]
    if len(hits) == 1:
        return HttpResponseRedirect(hit_url(hits[0]))
    rows = [
        {
            "kind": str(HIT_LABELS[h.kind]),
            "matched": str(MATCH_LABELS.get(h.matched, h.matched)),
            "label": h.label,
            "url": hit_url(h),
        }
        for h in hits
    ]
    context = _context(request, _("Customer service desk"), hits=rows, searched=bool(query))
    return TemplateResponse(request, "backoffice/desk_search.html", context)


# --- a card's story ----------------------------------------------------------------------


def _order_rows(
    request: HttpRequest, orders: list[Order], sections: set[str], next_url: str
) -> list[dict[str, Any]]:
    rows = []
    for order in orders:
        payments = [
            {
                "id": p.pk,
                "provider": p.provider,
                "method": str(METHOD_LABELS.get(p.method, p.method)),
                "status": str(PAYMENT_STATUS_LABELS.get(p.status, p.status)),
                "amount": format_money(p.amount, p.currency),
                "reference": p.reference,
                "failure": p.failure_code,
                "at": _when(p.created_at),
            }
            for p in (order.payments.all() if "payments" in sections else [])
        ]
        refunds = [
            {
                "id": r.pk,
                "amount": format_money(r.amount, r.currency),
                "reason": r.reason,
                "by": r.requested_by,
                "destination": str(REFUND_DESTINATION_LABELS.get(r.destination, r.destination)),
                "status": str(REFUND_STATUS_LABELS.get(r.status, r.status)),
                "at": _when(r.created_at),
                "settled": _when(r.settled_at) if r.settled_at else "",
            }
            for r in (order.refunds.all() if "refunds" in sections else [])
        ]
        rows.append(
            {
                "id": order.pk,
                "at": _when(order.created_at),
                "device": order.device.display_identifier,
                "device_url": reverse("admin:desk-device", args=[order.device_id]),
                "plan": order.plan.code,
                "channel": str(CHANNEL_LABELS.get(order.channel, order.channel)),
                "reseller": order.reseller.code if order.reseller else "",
                "reference": order.reference or "",
                "status": str(STATUS_LABELS.get(order.status, order.status)),
                "status_key": order.status,
                "amount": format_money(order.amount, order.currency),
                "method": str(METHOD_LABELS.get(order.payment_method, order.payment_method)),
                "receipt": order.receipt_no or "",
                "attempts": order.attempts,
                "next_attempt": _when(order.next_attempt_at) if order.next_attempt_at else "",
                "failure": " ".join(x for x in (order.failure_code, order.failure_detail) if x),
                "fulfilled": _when(order.fulfilled_at) if order.fulfilled_at else "",
                "payments": payments,
                "refunds": refunds,
                "actions": [
                    a
                    for a in _actions(request, ORDER_ACTIONS, next_url, order_id=order.pk)
                    if order.status in ACTION_STATUSES[a["key"]]
                    and (a["key"] != "resend" or order.receipt_no)
                ],
            }
        )
    return rows


def _ticket_rows(tickets: list[SupportTicket]) -> list[dict[str, Any]]:
    return [
        {
            "id": t.pk,
            "url": reverse("admin:desk-ticket", args=[t.pk]),
            "at": _when(t.created_at),
            "status": str(TICKET_STATUS_LABELS.get(t.status, t.status)),
            "reply_to": t.reply_to,
            "message": t.message[:120],
        }
        for t in tickets
    ]


def device_page(request: HttpRequest, device_id: int) -> HttpResponse:
    if not request.user.has_perm(VIEW_DEVICE):
        raise PermissionDenied
    sections = _sections(request, DEVICE_SECTION_PERMISSIONS)
    now = timezone.now()
    story = stories.device_story(device_id, sections, now=now)
    if story is None:
        raise Http404
    device = story.device
    here = request.path
    usage_chart = None
    if "usage" in sections:
        usage_chart = columns_svg(
            [d.bytes for d in story.usage],
            _("Data used per day, last %(count)d days") % {"count": len(story.usage)},
            [d.day.strftime("%m-%d") for d in story.usage],
        )
    owner = device.owner if "owner" in sections else None
    context = _context(
        request,
        _("Card %(device)s") % {"device": device.display_identifier},
        device=device,
        status=str(DEVICE_STATUS_LABELS.get(device.status, device.status)),
        identifiers=identifiers.labelled(device),
        kind=device.get_kind_display(),
        created=_when(device.created_at),
        activated=_when(device.activated_at) if device.activated_at else "",
        owner=owner,
        owner_url=reverse("admin:desk-customer", args=[owner.pk]) if owner else "",
        bound=_when(device.bound_at) if device.bound_at else "",
        sections=sections,
        credit=format_money(story.credit, story.currency),
        remaining=format_data(story.remaining_bytes),
        bundles=[
            {
                "plan": b.plan,
                "granted": format_data(b.granted_bytes),
                "remaining": format_data(b.remaining_bytes),
                "starts": _when(b.starts_at),
                "expires": _when(b.expires_at),
                "state": str(BUNDLE_STATE_LABELS.get(b.state, b.state)),
                "state_key": b.state,
            }
            for b in story.bundles.rows
        ],
        bundles_more=_changelist("usage_bundle", device__id__exact=device.pk)
        if story.bundles.more
        else "",
        movements=[
            {
                "at": _when(m.created_at),
                "memo": m.memo,
                "amount": ("+" if m.incoming else "-") + format_money(m.amount, m.unit),
                "incoming": m.incoming,
                "order_id": m.order_id,
            }
            for m in story.movements.rows
        ],
        movements_more=story.movements.more,
        orders=_order_rows(request, story.orders.rows, sections, here),
        orders_more=_changelist("orders_order", device__id__exact=device.pk)
        if story.orders.more
        else "",
        usage_chart=usage_chart,
        usage_total=format_data(sum(d.bytes for d in story.usage)),
        usage_used=any(d.bytes for d in story.usage),
        alerts=[
            {
                "at": _when(a.created_at),
                "kind": str(ALERT_LABELS.get(a.kind, a.kind)),
                "deliveries": [
                    {
                        "channel": d.channel,
                        "status": str(DELIVERY_LABELS.get(d.status, d.status)),
                        "at": _when(d.sent_at) if d.sent_at else "",
                    }
                    for d in a.deliveries.all()
                ],
            }
            for a in story.alerts.rows
        ],
        alerts_more=story.alerts.more,
        tickets=_ticket_rows(story.tickets.rows),
        tickets_more=_changelist("support_supportticket", q=device.display_identifier)
        if story.tickets.more
        else "",
        actions=_actions(request, DEVICE_ACTIONS, here, device_id=device.pk),
        goodwill_list=(
            action_url("admin:desk-goodwill-list", here)
            if request.user.has_perm(APPROVE_GOODWILL)
            else None
        ),
    )
    return TemplateResponse(request, "backoffice/desk_device.html", context)


# --- a customer's story ------------------------------------------------------------------


def customer_page(request: HttpRequest, customer_id: int) -> HttpResponse:
    if not request.user.has_perm(VIEW_CUSTOMER):
        raise PermissionDenied
    sections = _sections(request, CUSTOMER_SECTION_PERMISSIONS)
    story = stories.customer_story(customer_id, sections)
    if story is None:
        raise Http404
    customer = story.customer
    here = request.path
    context = _context(
        request,
        _("Customer %(customer)s") % {"customer": str(customer)},
        customer=customer,
        created=_when(customer.created_at),
        last_login=_when(customer.last_login_at) if customer.last_login_at else "",
        sections=sections,
        devices=[
            {
                "url": reverse("admin:desk-device", args=[d.pk]),
                "identifier": d.display_identifier,
                "nickname": d.nickname,
                "status": str(DEVICE_STATUS_LABELS.get(d.status, d.status)),
                "remaining": format_data(left),
                "bound": _when(d.bound_at) if d.bound_at else "",
            }
            for d, left in story.devices
        ],
        orders=_order_rows(request, story.orders.rows, sections, here),
        orders_more=_changelist("orders_order", customer__id__exact=customer.pk)
        if story.orders.more
        else "",
        tickets=_ticket_rows(story.tickets.rows),
        tickets_more=_changelist("support_supportticket", q=str(customer))
        if story.tickets.more
        else "",
    )
    return TemplateResponse(request, "backoffice/desk_customer.html", context)


# --- a ticket ----------------------------------------------------------------------------


class ReplyForm(forms.Form):
    body = forms.CharField(
        label=gettext_lazy("Reply"),
        max_length=MAX_REPLY,
        widget=forms.Textarea(attrs={"rows": 6, "cols": 70}),
    )
    status_after = forms.ChoiceField(
        label=gettext_lazy("Then the ticket is"),
        choices=[(k, v) for k, v in TICKET_STATUS_LABELS.items()],
        initial=TicketStatus.WAITING,
    )


class StatusForm(forms.Form):
    status = forms.ChoiceField(
        label=gettext_lazy("Status"), choices=[(k, v) for k, v in TICKET_STATUS_LABELS.items()]
    )


def ticket_page(request: HttpRequest, ticket_id: int) -> HttpResponse:
    """GET: the ticket's thread; POST (``support.reply_supportticket``): a reply to the
    customer (``do=reply``) or a new status (``do=status``)."""
    if not request.user.has_perm(VIEW_TICKET):
        raise PermissionDenied
    may_reply = request.user.has_perm(REPLY_TICKET)
    reply_form = ReplyForm()
    status_form = StatusForm()
    if request.method == "POST":
        if not may_reply:
            raise PermissionDenied
        if not SupportTicket.objects.filter(pk=ticket_id).exists():
            raise Http404
        here = reverse("admin:desk-ticket", args=[ticket_id])
        try:
            if request.POST.get("do") == "status":
                status_form = StatusForm(request.POST)
                if status_form.is_valid():
                    set_ticket_status(
                        ticket_id,
                        status_form.cleaned_data["status"],
                        staff=request.user,
                        ip=client_ip(request),
                    )
                    messages.success(request, _("The ticket's status is saved."))
                    return HttpResponseRedirect(here)
            else:
                reply_form = ReplyForm(request.POST)
                if reply_form.is_valid():
                    reply_to_ticket(
                        ticket_id,
                        reply_form.cleaned_data["body"],
                        staff=request.user,
                        ip=client_ip(request),
                        status_after=reply_form.cleaned_data["status_after"],
                    )
                    messages.success(request, _("The reply is on its way to the customer."))
                    return HttpResponseRedirect(here)
        except DomainError as exc:
            messages.error(request, str(exc.message))
    found = stories.ticket_thread(ticket_id)
    if found is None:
        raise Http404
    ticket, thread = found
    if request.method != "POST":
        status_form = StatusForm(initial={"status": ticket.status})
    device = _ticket_device(ticket) if request.user.has_perm(VIEW_DEVICE) else None
    context = _context(
        request,
        _("Support ticket #%(number)s") % {"number": ticket.pk},
        ticket=ticket,
        # The language the customer wrote in, by its own name (简体中文, English …).
        language=dict(settings.LANGUAGES).get(ticket.language, ticket.language),
        status=str(TICKET_STATUS_LABELS.get(ticket.status, ticket.status)),
        created=_when(ticket.created_at),
        customer_url=reverse("admin:desk-customer", args=[ticket.customer_id])
        if ticket.customer_id and request.user.has_perm(VIEW_CUSTOMER)
        else "",
        device_url=reverse("admin:desk-device", args=[device.pk]) if device else "",
        thread=[
            {
                "at": _when(m.at),
                "author": m.author or _("Customer"),
                "from_customer": m.from_customer,
                "body": m.body,
                "channel": m.channel,
                "delivery": str(DELIVERY_LABELS.get(m.delivery, m.delivery)),
                "delivery_key": m.delivery,
            }
            for m in thread
        ],
        may_reply=may_reply,
        reply_form=reply_form,
        status_form=status_form,
    )
    return TemplateResponse(request, "backoffice/desk_ticket.html", context)


def _ticket_device(ticket: SupportTicket) -> Device | None:
    """The card the customer named on the form, if it is one of ours."""
    if not ticket.device:
        return None
    try:
        return find_device(ticket.device)
    except DomainError:
        return None
