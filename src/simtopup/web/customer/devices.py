"""My devices: the list and the bind form, one device's balance, rename, unbind, eSIM
activation; the card's credit and its automatic top-up."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.contrib import messages
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from simtopup.accounts.models import Customer
from simtopup.catalog.display import format_data
from simtopup.catalog.models import Plan
from simtopup.core.errors import DomainError, show_error
from simtopup.core.http import client_ip
from simtopup.core.money import format_money
from simtopup.devices import identifiers
from simtopup.devices.binding import bind_device, my_devices, rename_device, unbind_device
from simtopup.devices.credit import credit_transfers, movements
from simtopup.devices.esim import activate, qr_code
from simtopup.devices.models import Device
from simtopup.orders.customer import customer_orders
from simtopup.usage import autotopup
from simtopup.usage.models import AutoTopupRule
from simtopup.usage.reads import active_by_device, device_balance
from simtopup.web.customer.common import (
    device_kinds,
    device_or_404,
    device_statuses,
    inline_qr,
    me,
    zone_name,
    zone_of,
)
from simtopup.web.customer.topup import buy_again_url
from simtopup.web.forms import GB, MB, AutoTopupForm, BindForm, RenameForm
from simtopup.web.session import customer_required

CREDIT_PAGE_SIZE = 100


def data_text(size: int) -> str:
    """``1.5 GB``, ``200 MB``; nothing left reads ``0 MB`` (not ``0 B``)."""
    return format_data(size) if size > 0 else "0 MB"


def days_left(ends: datetime | None, zone: ZoneInfo, now: datetime | None = None) -> str | None:
    """``5 days left``: calendar days in the customer's zone until the data's end (an end at
    midnight belongs to the day before); ``Last day today`` on its last day."""
    if ends is None:
        return None
    today = (now or timezone.now()).astimezone(zone).date()
    days = ((ends - timedelta(microseconds=1)).astimezone(zone).date() - today).days
    if days <= 0:
        return _("Last day today")
    return ngettext("%(count)d day left", "%(count)d days left", days) % {"count": days}


def _card(device: Device, active: tuple[int, datetime | None] | None = None) -> dict[str, Any]:
    """A card as the pages show it; ``active``: its data valid now and the soonest end of
    that data, when the caller read them already (the list reads all its cards' in one
    statement, a card's page with its balance)."""
    credit = device.credit_account
    if active is None:
        active = active_by_device([device.pk])[device.pk]
    remaining, ends = active
    return {
        "device": device,
        "ends": ends,
        "has_data": remaining > 0,
        "kind": device_kinds().get(device.kind, device.kind),
        "status": device_statuses().get(device.status, device.status),
        "remaining": data_text(remaining),
        "credit": format_money(credit.balance, credit.unit),
        "identifiers": identifiers.labelled(device),
    }


@customer_required
@require_http_methods(["GET", "POST"])
def device_list(request: HttpRequest) -> HttpResponse:
    customer = me(request)
    status = 200
    retry_after = None
    if request.method == "POST":
        form = BindForm(request.POST)
        if form.is_valid():
            try:
                # bind_device opens its own transactions (a wrong proof stays counted).
                device, created = bind_device(
                    customer,
                    form.cleaned_data["device"],
                    proof=form.cleaned_data["proof"],
                    nickname=form.cleaned_data["nickname"],
                    ip=client_ip(request),
                )
            except DomainError as exc:
                show_error(form, exc, default="device")
                status = 429 if exc.code == "too_many_requests" else 422
                retry_after = exc.headers.get("Retry-After")
            else:
                if created:
                    messages.success(request, _("The card is now in your account."))
                else:
                    messages.success(request, _("This card was already in your account."))
                return redirect("web:device", device_id=device.pk)
        else:
            status = 422
    else:
        form = BindForm()
    devices = list(my_devices(customer).select_related("credit_account").order_by("pk"))
    active = active_by_device([d.pk for d in devices])
    zone = zone_of(customer)
    cards = []
    for device in devices:
        card = _card(device, active[device.pk])
        cards.append({**card, "days_left": days_left(card["ends"], zone)})
    with timezone.override(zone):
        response = render(
            request,
            "web/customer/devices.html",
            {"cards": cards, "form": form},
            status=status,
        )
    if retry_after:
        response["Retry-After"] = retry_after
    return response


def _balance_page(customer: Customer, device: Device) -> dict[str, Any]:
    """A card with its balance: the app's read model (usage.reads.device_balance) — the
    data valid now, and its bundles active, upcoming, used up or expired in the last 30 days,
    soonest expiring first — with the plans' names in the page's language."""
    read = device_balance(customer.pk, device.pk)
    if read is None:  # unbound between the two reads
        raise Http404
    plans = {p.code: p for p in Plan.objects.filter(code__in={b.plan for b in read.bundles})}
    rows = []
    for bundle in read.bundles:
        rows.append(
            {
                "bundle": {
                    "plan": plans[bundle.plan],
                    "granted_bytes": bundle.granted_bytes,
                    "expires_at": bundle.expires_at,
                },
                "state": bundle.status,
                "state_label": {
                    "active": _("Active"),
                    "upcoming": _("Not started yet"),
                    "expired": _("Expired"),
                    "used_up": _("Used up"),
                }[bundle.status],
                "left": bundle.remaining_bytes,
                "low": bundle.granted_bytes // 5,  # the meter turns amber below a fifth
                "left_text": data_text(bundle.remaining_bytes),
                "granted_text": format_data(bundle.granted_bytes),
            }
        )
    ends = min((b.expires_at for b in read.bundles if b.status == "active"), default=None)
    zone = zone_of(customer)
    card = _card(device, (read.remaining_bytes, ends))
    return {
        **card,
        "glance": {**card, "days_left": days_left(ends, zone)},
        "bundles": rows,
        "again": _again(customer, device, read.bundles),
        "topup_url": f"{reverse('web:topup')}?{urlencode({'device': device.pk})}",
        "zone": zone_name(customer),
    }


def _again(customer: Customer, device: Device, bundles: list[Any]) -> dict[str, Any] | None:
    """ "Buy again" on the card page: the plan of the card's newest bundle, or else of my
    newest order for it, when that plan is still on sale."""
    code = max(bundles, key=lambda b: b.starts_at).plan if bundles else None
    if code is None:
        code = (
            customer_orders(customer)
            .filter(device=device)
            .order_by("-pk")
            .values_list("plan__code", flat=True)
            .first()
        )
    plan = Plan.objects.filter(code=code, active=True).first() if code else None
    if plan is None:
        return None
    return {"plan": plan, "url": buy_again_url(device.pk, plan.code)}


@customer_required
@require_GET
def device_detail(request: HttpRequest, device_id: int) -> HttpResponse:
    customer = me(request)
    device = device_or_404(customer, device_id)
    with timezone.override(zone_of(customer)):
        return render(
            request,
            "web/customer/device.html",
            {
                **_balance_page(customer, device),
                "rename": RenameForm(initial={"nickname": device.nickname}),
            },
        )


@customer_required
@require_POST
def device_rename(request: HttpRequest, device_id: int) -> HttpResponse:
    customer = me(request)
    device = device_or_404(customer, device_id)
    form = RenameForm(request.POST)
    if form.is_valid():
        rename_device(customer, device.pk, form.cleaned_data["nickname"])
        messages.success(request, _("Nickname saved."))
        return redirect("web:device", device_id=device.pk)
    with timezone.override(zone_of(customer)):
        return render(
            request,
            "web/customer/device.html",
            {
                **_balance_page(customer, device),
                "rename": form,
            },
            status=422,
        )


@customer_required
@require_http_methods(["GET", "POST"])
def device_unbind(request: HttpRequest, device_id: int) -> HttpResponse:
    """GET asks "are you sure?"; POST removes the card from the account."""
    customer = me(request)
    device = device_or_404(customer, device_id)
    if request.method == "POST":
        unbind_device(customer, device.pk)
        messages.success(
            request,
            _("%(device)s was removed from your account. Its data and credit stay on the card.")
            % {"device": device.masked},
        )
        return redirect("web:devices")
    return render(request, "web/customer/device_unbind.html", _card(device))


@customer_required
@require_GET
def esim(request: HttpRequest, device_id: int) -> HttpResponse:
    customer = me(request)
    device = device_or_404(customer, device_id)
    try:
        activation = activate(device)
    except DomainError as exc:
        return render(
            request,
            "web/customer/esim.html",
            {**_card(device), "problem": str(exc.message)},
            status=409,
        )
    response = render(
        request,
        "web/customer/esim.html",
        {
            **_card(device),
            "code": activation.activation_code,
            # The eSIM's QR code (devices/esim.py), drawn to scale with the page.
            "qr_svg": inline_qr(qr_code(activation.activation_code), _("eSIM activation code")),
        },
    )
    response["Cache-Control"] = "private, no-store"
    return response


# --- credit -------------------------------------------------------------------------------


def _movements(device: Device) -> list[dict[str, Any]]:
    """The same movements as ``GET /api/v1/devices/{id}/credit`` (devices/credit.py),
    newest first."""
    account_id = device.credit_account_id
    newest = list(credit_transfers(account_id).order_by("-pk")[:CREDIT_PAGE_SIZE])
    return [
        {
            "created_at": m.created_at,
            "memo": m.memo,
            "incoming": m.incoming,
            "amount": ("+" if m.incoming else "−") + format_money(m.amount, m.unit),
            "order_id": m.order_id,
        }
        for m in movements(newest, account_id)
    ]


def _threshold_text(value: float) -> str:
    """``500`` rather than ``500.0``; one decimal at most."""
    return f"{value:.1f}".removesuffix(".0")


def _rule_form(device: Device, data: Any = None) -> AutoTopupForm:
    plans = Plan.objects.filter(active=True, currency=device.credit_account.unit).exclude(
        kind="payg"
    )
    rule = AutoTopupRule.objects.select_related("plan").filter(device=device).first()
    initial: dict[str, Any] = {"enabled": False, "threshold": 500, "unit": "MB"}
    if rule is not None:
        gb = rule.threshold_bytes >= GB and (rule.threshold_bytes * 10) % GB == 0
        initial = {
            "enabled": rule.enabled,
            "threshold": _threshold_text(rule.threshold_bytes / (GB if gb else MB)),
            "unit": "GB" if gb else "MB",
            "plan": rule.plan.code,
        }
    return AutoTopupForm(data, initial=initial, plans=plans)


def _credit_page(
    request: HttpRequest, device: Device, form: AutoTopupForm, status: int = 200
) -> HttpResponse:
    customer = me(request)
    payg = Plan.objects.filter(active=True, kind="payg", currency=device.credit_account.unit)
    add_links = [
        {
            "plan": plan,
            "price": format_money(plan.price, plan.currency),
            "url": buy_again_url(device.pk, plan.code),
        }
        for plan in payg
    ]
    rule = AutoTopupRule.objects.filter(device=device).first()
    with timezone.override(zone_of(customer)):
        return render(
            request,
            "web/customer/credit.html",
            {
                **_card(device),
                "movements": _movements(device),
                "add_links": add_links,
                "form": form,
                "rule": rule,
                "zone": zone_name(customer),
            },
            status=status,
        )


@customer_required
@require_GET
def credit(request: HttpRequest, device_id: int) -> HttpResponse:
    device = device_or_404(me(request), device_id)
    return _credit_page(request, device, _rule_form(device))


@customer_required
@require_POST
def auto_topup(request: HttpRequest, device_id: int) -> HttpResponse:
    customer = me(request)
    device = device_or_404(customer, device_id)
    form = _rule_form(device, request.POST)
    if form.is_valid():
        try:
            with transaction.atomic(durable=True):
                autotopup.set_rule(
                    customer,
                    device,
                    enabled=form.cleaned_data["enabled"],
                    threshold_bytes=form.threshold_bytes(),
                    plan_code=form.cleaned_data["plan"],
                )
        except DomainError as exc:
            show_error(form, exc, {"threshold_bytes": "threshold"})
        else:
            messages.success(request, _("Automatic top-up settings saved."))
            return redirect("web:credit", device_id=device.pk)
    return _credit_page(request, device, form, status=422)


def credit_plans(device: Device) -> Any:
    """The amounts credit can be added in: the pay-per-use plans on sale in the card's
    currency (a payg plan's price is the credit it adds)."""
    return Plan.objects.filter(
        active=True, kind="payg", currency=device.credit_account.unit
    ).order_by("price", "pk")


@customer_required
@require_GET
def add_credit(request: HttpRequest, device_id: int) -> HttpResponse:
    """Add credit: the amounts as buttons; one tap opens the confirmation of that amount for
    this card (the buy-again link), then pay — not the plan wizard."""
    device = device_or_404(me(request), device_id)
    amounts = [
        {"plan": plan, "price": format_money(plan.price, plan.currency)}
        for plan in credit_plans(device)
    ]
    return render(
        request,
        "web/customer/credit_add.html",
        {**_card(device), "amounts": amounts},
    )
