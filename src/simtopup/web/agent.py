"""The reseller portal (``/agent/``): staff of an authorised reseller sell top-ups to walk-in
customers from the float, look at their transactions and statement, and (owners) manage API
keys and the webhook.

Staff log in with a Django user linked to the reseller by a :class:`ResellerMember`. Views are
thin: they validate forms and call :mod:`simtopup.resellers.actions` — the same functions the
reseller API calls — and show a :class:`DomainError` next to the field it concerns.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Callable
from datetime import datetime, time, timedelta
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate, update_session_auth_hash
from django.contrib.auth import login as auth_login
from django.contrib.auth import logout as auth_logout
from django.contrib.auth.forms import PasswordChangeForm, SetPasswordForm
from django.core import signing
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone, translation
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from simtopup.accounts.ratelimit import (
    Keys,
    RateLimited,
    hit_all,
    ip_bucket,
    limits,
    release,
    reset,
)
from simtopup.catalog.display import plan_detail
from simtopup.catalog.models import Plan
from simtopup.catalog.pricing import get_plan
from simtopup.core.errors import DomainError, show_error
from simtopup.core.http import client_ip, safe_next
from simtopup.core.money import format_money, to_decimal_string
from simtopup.core.spreadsheet import Sheet
from simtopup.core.transactions import durable
from simtopup.devices.identifiers import rechargeable_device
from simtopup.devices.models import Device
from simtopup.ledger.actions import balance
from simtopup.orders.models import Order, OrderStatus
from simtopup.orders.receipts import (
    customer_zone,
    format_time,
    receipt_facts,
    status_label,
)
from simtopup.resellers import statements as monthly
from simtopup.resellers.actions import (
    create_api_key,
    password_changed,
    price_list,
    revoke_api_key,
    rotate_webhook_secret,
    sell_topup,
    set_webhook,
    statement,
    wholesale_price,
)
from simtopup.resellers.models import (
    DeliveryStatus,
    Reseller,
    ResellerMember,
    WebhookDelivery,
)
from simtopup.resellers.reports import (
    movement_money,
    recent_devices,
    sale_money,
    sales_today,
    top_plans,
)
from simtopup.web.session import keeping_the_customer

PAGE_SIZE = 25
TEMPLATE = "web/agent/{}.html"

View = Callable[..., HttpResponse]


# --- who may use the portal ---------------------------------------------------------------


def _member(request: HttpRequest) -> ResellerMember | None:
    user = request.user
    if not user.is_authenticated or not user.is_active:
        return None
    return (
        ResellerMember.objects.select_related("reseller", "reseller__float_account", "user")
        .filter(user_id=user.pk)
        .first()
    )


def portal(*, owner: bool = False, password_page: bool = False) -> Callable[[View], View]:
    """A portal page: logged-in staff of a reseller only (owners only with ``owner``). The
    view is called as ``view(request, member, …)``; nothing the portal shows is cached."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                query = urlencode({"next": request.get_full_path()})
                response: HttpResponse = HttpResponseRedirect(
                    f"{reverse('web:agent-login')}?{query}"
                )
            else:
                member = _member(request)
                if member is None:
                    response = render(request, TEMPLATE.format("no_access"), status=403)
                elif member.must_change_password and not password_page:
                    response = redirect("web:agent-password")
                elif owner and not member.is_owner:
                    response = render(
                        request,
                        TEMPLATE.format("no_access"),
                        _context(member, owner_only=True),
                        status=403,
                    )
                else:
                    response = view(request, member, *args, **kwargs)
            add_never_cache_headers(response)
            return response

        return wrapped

    return decorate


def _context(member: ResellerMember, **extra: Any) -> dict[str, Any]:
    reseller = member.reseller
    return {
        "member": member,
        "reseller": reseller,
        "suspended": not reseller.active,
        "float_balance": format_money(balance(reseller.float_account), reseller.currency),
        **extra,
    }


def _zone() -> Any:
    return customer_zone(None)


def _when(moment: datetime | None) -> str:
    return format_time(moment, _zone()) if moment else ""


# --- log in / out ---------------------------------------------------------------------------


class LoginForm(forms.Form):
    username = forms.CharField(
        label=gettext_lazy("Email"),
        max_length=150,
        widget=forms.TextInput(
            attrs={"autocomplete": "username", "autocapitalize": "none", "spellcheck": "false"}
        ),
    )
    password = forms.CharField(
        label=gettext_lazy("Password"),
        max_length=200,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )


def _login_keys(request: HttpRequest, username: str) -> tuple[Keys, str]:
    """The limits a portal login attempt counts against, and the key of its (user name,
    address) pair. Per pair (with longer steps: a stranger's failures stop the stranger, not
    the clerk elsewhere), per user name from every address (a far larger cap against guessing
    from many addresses) and per address across user names (spraying)."""
    name = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    ip = client_ip(request)
    bucket = ip_bucket(ip) if ip else "-"
    pair = f"agent-login:user-ip:{name}:{bucket}"
    keys = [
        (pair, limits(settings.AGENT_LOGIN_USER_IP_LIMITS)),
        (f"agent-login:user:{name}", limits(settings.AGENT_LOGIN_USER_LIMITS)),
    ]
    if ip:
        keys.append((f"agent-login:ip:{bucket}", limits(settings.AGENT_LOGIN_IP_LIMITS)))
    return keys, pair


def _reserve_attempt(keys: Keys, now: datetime) -> int:
    """Count this attempt as a failure *before* its password is checked (one transaction:
    counted and checked per window in one statement), so parallel attempts can never be
    checked beyond the limits. The seconds to wait when a limit is full (nothing counted),
    else 0."""

    try:
        durable(lambda: hit_all(keys, now))  # a full limit rolls every count back
    except RateLimited as exc:
        return exc.retry_after
    return 0


def _not_a_failure(keys: Keys, pair: str, now: datetime) -> None:
    """The password was right: give the reserved attempt back, and forget the failures of
    this user name from this address."""

    def give_back() -> None:
        for key, key_limits in keys:
            release(key, key_limits, now)
        reset(pair)

    durable(give_back)


def _too_many(seconds: int) -> str:
    return _("Too many failed attempts. Please wait %(minutes)s minutes and try again.") % {
        "minutes": max(1, math.ceil(seconds / 60))
    }


@require_http_methods(["GET", "POST"])
def login(request: HttpRequest) -> HttpResponse:
    dashboard = reverse("web:agent-dashboard")
    if request.method == "GET" and _member(request) is not None:
        return redirect(safe_next(request, dashboard))
    form = LoginForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        username = form.cleaned_data["username"].strip()
        keys, pair = _login_keys(request, username)
        now = timezone.now()
        wait = _reserve_attempt(keys, now)
        if wait:
            form.add_error(None, _too_many(wait))
            status = 429
        else:
            user = authenticate(
                request, username=username.lower(), password=form.cleaned_data["password"]
            )
            if user is not None:
                _not_a_failure(keys, pair, now)
            member = (
                ResellerMember.objects.filter(user_id=user.pk).first() if user is not None else None
            )
            if user is None:  # the reserved attempt stays counted as a failure
                form.add_error(None, _("The email or password is not right."))
                status = 400
            elif member is None:
                form.add_error(None, _("This account has no access to the reseller portal."))
                status = 403
            else:
                auth_login(request, user)  # rotates the session key (no session fixation)
                return redirect(safe_next(request, dashboard))
    elif request.method == "POST":
        status = 400
    response = render(
        request,
        TEMPLATE.format("login"),
        {"form": form, "next": safe_next(request, "")},
        status=status,
    )
    add_never_cache_headers(response)
    return response


@require_POST
@keeping_the_customer
def logout(request: HttpRequest) -> HttpResponse:
    auth_logout(request)  # a new session, where keeping_the_customer puts a customer back
    return redirect("web:agent-login")


@portal(password_page=True)
@require_http_methods(["GET", "POST"])
def password(request: HttpRequest, member: ResellerMember) -> HttpResponse:
    user = member.user
    form_class = SetPasswordForm if member.must_change_password else PasswordChangeForm
    form = form_class(user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        form.save()
        update_session_auth_hash(request, user)  # stay logged in here, out elsewhere
        password_changed(member)
        messages.success(request, _("Your password was changed."))
        return redirect("web:agent-dashboard")
    return render(
        request,
        TEMPLATE.format("password"),
        _context(member, form=form),
        status=400 if request.method == "POST" else 200,
    )


# --- dashboard ------------------------------------------------------------------------------


def _verify_agent_url(code: str) -> str:
    try:
        path = reverse("web:verify-agent")
    except NoReverseMatch:
        path = "/verify/agent"
    return f"{path}?{urlencode({'code': code})}"


def _orders(member: ResellerMember) -> QuerySet[Order]:
    return Order.objects.filter(reseller_id=member.reseller_id).select_related("device", "plan")


def _row(order: Order) -> dict[str, Any]:
    sold = sale_money(order)
    return {
        "order": order,
        "time": _when(order.created_at),
        "device": order.device.masked,
        "plan": order.plan.name,
        "charged": format_money(order.amount, order.currency),
        "retail": format_money(order.retail_amount, order.currency),
        # A failed top-up is no sale: its price went back to the float.
        "margin": format_money(sold.margin, order.currency) if sold else "",
        "status": order.status,
        "status_label": status_label(order.status),
    }


@portal()
@require_GET
def dashboard(request: HttpRequest, member: ResellerMember) -> HttpResponse:
    recent = [_row(o) for o in _orders(member).order_by("-pk")[:10]]
    today = sales_today(member.reseller)
    return render(
        request,
        TEMPLATE.format("dashboard"),
        _context(
            member,
            section="dashboard",
            recent=recent,
            today={
                "count": today.count,
                "retail": format_money(today.retail, today.currency),
                "cost": format_money(today.cost, today.currency),
                "margin": format_money(today.margin, today.currency),
            },
            verify_url=_verify_agent_url(member.reseller.code),
        ),
    )


# --- selling --------------------------------------------------------------------------------


def _plan_choices(member: ResellerMember) -> list[tuple[str, str]]:
    reseller = member.reseller
    explicit = price_list(reseller)
    choices = [("", _("Choose a plan"))]
    for plan in Plan.objects.filter(active=True, currency=reseller.currency):
        choices.append(
            (
                plan.code,
                _("%(plan)s — %(retail)s (you pay %(wholesale)s)")
                % {
                    "plan": plan.name,
                    "retail": format_money(plan.price, plan.currency),
                    "wholesale": format_money(
                        wholesale_price(reseller, plan, explicit), plan.currency
                    ),
                },
            )
        )
    return choices


class SellForm(forms.Form):
    device = forms.CharField(
        label=gettext_lazy("Device ID / serial number"),
        max_length=100,
        help_text=gettext_lazy(
            "Printed on the back of the card or the device: IMEI, ICCID, EID or serial number. "
            "Type it or scan its barcode, then press Enter."
        ),
        widget=forms.TextInput(
            attrs={
                "autocomplete": "off",
                "spellcheck": "false",
                "autocapitalize": "characters",
                "autofocus": True,
                "enterkeyhint": "next",
            }
        ),
    )
    # A recent device picked by its button: the field shows it masked, this says which it is.
    recent = forms.CharField(required=False, max_length=200, widget=forms.HiddenInput)
    plan = forms.ChoiceField(label=gettext_lazy("Plan"))

    def __init__(self, member: ResellerMember, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["plan"].choices = _plan_choices(member)  # type: ignore[attr-defined]


class ConfirmForm(forms.Form):
    device = forms.CharField(max_length=100, widget=forms.HiddenInput)
    recent = forms.CharField(required=False, max_length=200, widget=forms.HiddenInput)
    plan = forms.CharField(max_length=40, widget=forms.HiddenInput)
    # One sale per reference: a double submit of this confirmation sells once.
    reference = forms.RegexField(regex=r"^P[0-9A-Z]{16}$", widget=forms.HiddenInput)


# A recent device's button carries a token naming the device for this reseller only, so the
# page never holds a full device ID the clerk did not type.
RECENT_TOKEN_MAX_AGE = 7 * 24 * 3600


def _recent_salt(member: ResellerMember) -> str:
    return f"simtopup.web.agent.recent:{member.reseller_id}"


def _recent_token(member: ResellerMember, device: Device) -> str:
    return signing.dumps(device.pk, salt=_recent_salt(member), compress=False)


def _recent_device(member: ResellerMember, token: str) -> Device | None:
    if not token:
        return None
    try:
        pk = signing.loads(token, salt=_recent_salt(member), max_age=RECENT_TOKEN_MAX_AGE)
    except signing.BadSignature:
        return None
    return Device.objects.filter(pk=pk).first() if isinstance(pk, int) else None


def _device_text(member: ResellerMember, shown: str, token: str) -> str:
    """What the sale looks the device up by: a recent device's own identifier while the field
    still shows it, else what the clerk typed or scanned (the identifier rules normalise it)."""
    device = _recent_device(member, token)
    if device is not None and shown == device.masked:
        return device.display_identifier
    return shown


def _quick_picks(member: ResellerMember) -> dict[str, Any]:
    """The counter's buttons: the devices sold to last, the plans sold most."""
    reseller = member.reseller
    return {
        "recent_devices": [
            {"masked": d.masked, "token": _recent_token(member, d)}
            for d in recent_devices(reseller)
        ],
        "top_plans": [
            {"code": p.code, "name": p.name, "retail": format_money(p.price, p.currency)}
            for p in top_plans(reseller)
        ],
    }


def _new_reference() -> str:
    return "P" + secrets.token_hex(8).upper()


def _confirmation(member: ResellerMember, device_text: str, plan_code: str) -> dict[str, Any]:
    """What the clerk confirms before money moves. Raises DomainError (device or plan)."""
    reseller = member.reseller
    device = rechargeable_device(device_text)
    plan = get_plan(plan_code, reseller.currency)
    charged = wholesale_price(reseller, plan)
    detail = plan_detail(plan)
    return {
        "device_masked": device.masked,
        "plan_name": plan.name,
        "plan_detail": detail,
        "retail": format_money(plan.price, plan.currency),
        "charged": format_money(charged, plan.currency),
        "after": format_money(balance(reseller.float_account) - charged, reseller.currency),
        "enough": balance(reseller.float_account) >= charged,
    }


def _sell_page(
    request: HttpRequest,
    member: ResellerMember,
    form: SellForm,
    status: int,
    picks: dict[str, Any] | None = None,
) -> HttpResponse:
    return render(
        request,
        TEMPLATE.format("sell"),
        _context(member, section="sell", form=form, **(picks or _quick_picks(member))),
        status=status,
    )


@portal()
@require_http_methods(["GET", "POST"])
def sell(request: HttpRequest, member: ResellerMember) -> HttpResponse:
    """Step 1: device and plan. A valid form shows the confirmation (step 2). ``?plan=`` picks
    a plan and ``?recent=`` a recent device (the quick-pick buttons work without script)."""
    initial: dict[str, Any] = {}
    picks = None
    if request.method == "GET":
        picks = _quick_picks(member)
        picked = _recent_device(member, request.GET.get("recent", ""))
        if picked is not None:
            initial = {"device": picked.masked, "recent": request.GET["recent"]}
        top = picks["top_plans"]
        initial["plan"] = request.GET.get("plan") or (top[0]["code"] if top else "")
    form = SellForm(member, request.POST or None, initial=initial)
    if member.reseller.active and request.method == "POST" and form.is_valid():
        shown = form.cleaned_data["device"].strip()
        token = form.cleaned_data["recent"]
        try:
            facts = _confirmation(
                member, _device_text(member, shown, token), form.cleaned_data["plan"]
            )
        except DomainError as exc:
            show_error(form, exc)
        else:
            confirm = ConfirmForm(
                initial={
                    "device": shown,
                    "recent": token,
                    "plan": form.cleaned_data["plan"],
                    "reference": _new_reference(),
                }
            )
            return render(
                request,
                TEMPLATE.format("confirm"),
                _context(member, section="sell", confirm=confirm, facts=facts),
            )
    return _sell_page(request, member, form, 400 if request.method == "POST" else 200, picks)


@portal()
@require_POST
def sell_confirm(request: HttpRequest, member: ResellerMember) -> HttpResponse:
    """Step 3: sell. The reference in the form makes a repeated submit land on the same
    top-up instead of selling twice."""
    reseller = member.reseller
    confirm = ConfirmForm(request.POST)
    if not confirm.is_valid():
        return redirect("web:agent-sell")
    data = confirm.cleaned_data
    device_text = _device_text(member, data["device"], data["recent"])
    try:
        order = durable(lambda: sell_topup(reseller, device_text, data["plan"], data["reference"]))
    except DomainError as exc:
        if exc.code == "duplicate_reference":
            # Sold by the first submit of this very form: show that sale.
            order = _orders(member).filter(reference=data["reference"]).first()  # type: ignore[assignment]
            if order is not None and order.plan.code == data["plan"]:
                return redirect("web:agent-topup", topup_id=order.pk)
        if exc.code in {"insufficient_float", "reseller_suspended"} or exc.code.startswith(
            "duplicate"
        ):
            try:
                facts = _confirmation(member, device_text, data["plan"])
            except DomainError:
                facts = None
            if facts is not None:
                confirm.add_error(None, str(exc.message))
                member.reseller.refresh_from_db()
                return render(
                    request,
                    TEMPLATE.format("confirm"),
                    _context(member, section="sell", confirm=confirm, facts=facts),
                    status=exc.status,
                )
        # The device or plan is no longer good (suspended card, withdrawn plan): start again.
        form = SellForm(
            member, {"device": data["device"], "recent": data["recent"], "plan": data["plan"]}
        )
        form.is_valid()
        show_error(form, exc)
        return _sell_page(request, member, form, exc.status)
    return redirect("web:agent-topup", topup_id=order.pk)


def _one(member: ResellerMember, topup_id: int) -> Order:
    order = _orders(member).filter(pk=topup_id).first()
    if order is None:
        raise Http404
    return order


def _topup_context(member: ResellerMember, order: Order) -> dict[str, Any]:
    facts = None
    if order.receipt_no and order.fulfilled_at is not None:
        facts = receipt_facts(order, _zone())
    return _context(
        member,
        section="transactions",
        order=order,
        row=_row(order),
        facts=facts,
        processing=order.status in (OrderStatus.PAID, OrderStatus.FULFILLING),
    )


@portal()
@require_GET
def topup(request: HttpRequest, member: ResellerMember, topup_id: int) -> HttpResponse:
    order = _one(member, topup_id)
    return render(request, TEMPLATE.format("topup"), _topup_context(member, order))


@portal()
@require_GET
def topup_print(request: HttpRequest, member: ResellerMember, topup_id: int) -> HttpResponse:
    order = _one(member, topup_id)
    if not order.receipt_no:
        raise Http404
    return render(request, TEMPLATE.format("print"), _topup_context(member, order))


# --- transactions and statement ---------------------------------------------------------------


class FilterForm(forms.Form):
    since = forms.DateField(
        label=gettext_lazy("From"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        label=gettext_lazy("To"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    status = forms.ChoiceField(label=gettext_lazy("Status"), required=False)
    device = forms.CharField(label=gettext_lazy("Device"), required=False, max_length=100)
    reference = forms.CharField(label=gettext_lazy("Reference"), required=False, max_length=100)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["status"].choices = [  # type: ignore[attr-defined]
            ("", _("Any")),
            ("fulfilled", status_label(OrderStatus.FULFILLED)),
            ("processing", status_label(OrderStatus.PAID)),
            ("failed", status_label(OrderStatus.FAILED)),
            ("refunded", status_label(OrderStatus.REFUNDED)),
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and until < since:
            self.add_error("until", _("The end date is before the start date."))
        return data

    def window(self) -> tuple[datetime | None, datetime | None]:
        """The chosen days in the operator's time zone, as [since, until) instants."""
        zone = _zone()
        since, until = self.cleaned_data.get("since"), self.cleaned_data.get("until")
        start = datetime.combine(since, time.min, tzinfo=zone) if since else None
        end = datetime.combine(until + timedelta(days=1), time.min, tzinfo=zone) if until else None
        return start, end


_STATUS_FILTER = {
    "fulfilled": [OrderStatus.FULFILLED],
    "processing": [OrderStatus.PAID, OrderStatus.FULFILLING],
    "failed": [OrderStatus.FAILED],
    "refunded": [OrderStatus.REFUNDED],
}


def _filtered(member: ResellerMember, form: FilterForm) -> QuerySet[Order]:
    qs = _orders(member)
    if not form.is_valid():
        return qs.none()
    since, until = form.window()
    if since:
        qs = qs.filter(created_at__gte=since)
    if until:
        qs = qs.filter(created_at__lt=until)
    status = form.cleaned_data.get("status")
    if status:
        qs = qs.filter(status__in=_STATUS_FILTER[status])
    device = "".join(ch for ch in form.cleaned_data.get("device", "") if ch not in " -")
    if device:
        qs = qs.filter(
            Q(device__iccid__icontains=device)
            | Q(device__imei__icontains=device)
            | Q(device__eid__icontains=device)
            | Q(device__serial__icontains=device)
        )
    reference = form.cleaned_data.get("reference", "").strip()
    if reference:
        qs = qs.filter(reference__icontains=reference)
    return qs.order_by("-pk")


@portal()
@require_GET
def transactions(request: HttpRequest, member: ResellerMember) -> HttpResponse:
    form = FilterForm(request.GET or None)
    qs = _filtered(member, form) if request.GET else _orders(member).order_by("-pk")
    page = Paginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    csv_query = urlencode({k: request.GET[k] for k in ("since", "until") if request.GET.get(k)})
    return render(
        request,
        TEMPLATE.format("transactions"),
        _context(
            member,
            section="transactions",
            form=form,
            page=page,
            rows=[_row(o) for o in page.object_list],
            query=query.urlencode(),
            csv_query=csv_query,
        ),
        status=400 if form.is_bound and not form.is_valid() else 200,
    )


KIND_LABELS = {
    "float_credit": gettext_lazy("Float credited"),
    "order_payment": gettext_lazy("Top-up"),
    "order_refund": gettext_lazy("Refund of a failed top-up"),
}


@portal()
@require_GET
def statement_csv(request: HttpRequest, member: ResellerMember) -> HttpResponse:
    """The float statement: every movement in the chosen days with the balance after it, and
    the top-up it belongs to with its retail price and margin (signed like the movement: the
    refund of a failed top-up takes its sale back, so each column adds up to the net figure).
    UTF-8 with a BOM, so spreadsheet programs read Chinese right."""
    form = FilterForm(request.GET)
    if not form.is_valid():
        raise Http404
    since, until = form.window()
    reseller = member.reseller
    opening, rows, closing = statement(reseller, since, until)
    orders = {
        o.pk: o for o in _orders(member).filter(pk__in={r.order_id for r in rows if r.order_id})
    }
    zone = _zone()
    sheet = Sheet(
        [
            _("Time"),
            _("Type"),
            _("Amount"),
            _("Float balance"),
            _("Currency"),
            _("Reference"),
            _("Device"),
            _("Plan"),
            _("Retail price"),
            _("Margin"),
            _("Status"),
            _("Receipt number"),
        ]
    )

    def amount(minor: int) -> str:
        # Plain numbers (no currency symbol) so spreadsheets can add them up.
        return to_decimal_string(minor, reseller.currency)

    cur = reseller.currency
    sheet.row([_when(since) if since else "", _("Opening balance"), "", amount(opening), cur])
    for r in rows:
        order = orders.get(r.order_id) if r.order_id else None
        sold = movement_money(r.kind, order) if order else None
        sheet.row(
            [
                f"{r.at.astimezone(zone):%Y-%m-%d %H:%M:%S}",
                str(KIND_LABELS.get(r.kind, r.kind)),
                amount(r.amount),
                amount(r.balance),
                cur,
                (order.reference or "") if order else r.memo,
                order.device.masked if order else "",
                order.plan.name if order else "",
                amount(sold.retail) if sold else "",
                amount(sold.margin) if sold else "",
                status_label(order.status) if order else "",
                (order.receipt_no or "") if order else "",
            ]
        )
    sheet.row(["", _("Closing balance"), "", amount(closing), cur])
    stamp = timezone.now().astimezone(zone).strftime("%Y%m%d")
    return sheet.response(f"statement-{reseller.code}-{stamp}.csv")


# --- monthly statements -----------------------------------------------------------------------


@portal()
@require_GET
def statements(request: HttpRequest, member: ResellerMember) -> HttpResponse:
    """The months that are over since the reseller began, each statement as PDF and CSV."""
    reseller = member.reseller
    months = [
        {
            "label": f"{year}-{month:02d}",
            **{
                fmt: reverse(
                    "web:agent-monthly-statement",
                    kwargs={"code": reseller.code, "year": year, "month": month, "fmt": fmt},
                )
                for fmt in ("pdf", "csv")
            },
        }
        for year, month in monthly.past_months(reseller)
    ]
    return render(
        request,
        TEMPLATE.format("statements"),
        _context(member, section="statements", months=months),
    )


@portal()
@require_GET
def monthly_statement(
    request: HttpRequest, member: ResellerMember, code: str, year: int, month: int, fmt: str
) -> HttpResponse:
    """One month's float statement of the member's own reseller, once the month is over
    (another reseller's, a month to come or the current one: not found)."""
    reseller = member.reseller
    if (
        code != reseller.code
        or fmt not in {"pdf", "csv"}
        or (year, month) not in monthly.past_months(reseller)
    ):
        raise Http404
    st = monthly.statement(reseller, year, month)
    language = translation.get_language() or settings.LANGUAGE_CODE
    if fmt == "csv":
        return monthly.as_csv(st, language).response(monthly.filename(st, "csv"))
    response = HttpResponse(monthly.as_pdf(st, language), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{monthly.filename(st, "pdf")}"'
    return response


# --- API keys and webhook (owners) ------------------------------------------------------------


class KeyForm(forms.Form):
    name = forms.CharField(
        label=gettext_lazy("Name"),
        max_length=100,
        help_text=gettext_lazy("Where the key is used, e.g. “shop till 2”."),
    )


@portal(owner=True)
@require_http_methods(["GET", "POST"])
def keys(request: HttpRequest, member: ResellerMember) -> HttpResponse:
    reseller = member.reseller
    form = KeyForm(request.POST or None)
    new_key = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            _api_key, new_key = create_api_key(reseller, form.cleaned_data["name"].strip())
            form = KeyForm()
            status = 201
        else:
            status = 400
    rows = reseller.api_keys.order_by("revoked_at", "-pk")
    return render(
        request,
        TEMPLATE.format("keys"),
        _context(
            member,
            section="keys",
            form=form,
            new_key=new_key,
            keys=[
                {"key": k, "created": _when(k.created_at), "revoked": _when(k.revoked_at)}
                for k in rows
            ],
        ),
        status=status,
    )


@portal(owner=True)
@require_POST
def key_revoke(request: HttpRequest, member: ResellerMember, key_id: int) -> HttpResponse:
    if not member.reseller.api_keys.filter(pk=key_id).exists():
        raise Http404
    if revoke_api_key(key_id, member.reseller):
        messages.success(request, _("The key was revoked: it no longer works."))
    return redirect("web:agent-keys")


class WebhookForm(forms.Form):
    webhook_url = forms.CharField(
        label=gettext_lazy("Webhook URL"),
        required=False,
        max_length=300,
        help_text=gettext_lazy(
            "We send signed top-up events here: an https:// address on the public internet "
            "(not a private or local network). Leave empty to stop sending."
        ),
        widget=forms.URLInput(attrs={"placeholder": "https://example.com/simtopup"}),
    )


# The webhook page's delivery log: this many of the reseller's latest deliveries.
DELIVERY_LOG_SIZE = 20


def _delivery_log(reseller: Reseller) -> list[dict[str, Any]]:
    """The reseller's own latest webhook deliveries, newest first, for the webhook page."""
    rows = []
    for delivery in WebhookDelivery.objects.filter(reseller=reseller).order_by(
        "-created_at", "-pk"
    )[:DELIVERY_LOG_SIZE]:
        data = delivery.payload.get("data") if isinstance(delivery.payload, dict) else None
        data = data if isinstance(data, dict) else {}
        order_id = data.get("id")
        if delivery.status == DeliveryStatus.DELIVERED:
            status, label = "fulfilled", _("Delivered")
        elif delivery.status == DeliveryStatus.FAILED:
            status, label = "failed", _("Failed")
        elif not delivery.attempts:
            status, label = "pending", _("Queued")
        elif not delivery.last_error:
            status, label = "pending", _("Sending")  # its first attempt is under way
        else:
            status, label = "pending", _("Retrying")
        error = delivery.last_error
        rows.append(
            {
                "delivery": delivery,
                "order_id": order_id if isinstance(order_id, int) else None,
                "reference": str(data.get("reference") or ""),
                "status": status,
                "status_label": label,
                "last_attempt": _when(delivery.last_attempt_at),
                "next_attempt": _when(delivery.next_attempt_at)
                if delivery.status == DeliveryStatus.PENDING
                else "",
                "error": error if len(error) <= 100 else error[:99] + "…",
            }
        )
    return rows


@portal(owner=True)
@require_http_methods(["GET", "POST"])
def webhook(request: HttpRequest, member: ResellerMember) -> HttpResponse:
    reseller = member.reseller
    form = WebhookForm(request.POST or None, initial={"webhook_url": reseller.webhook_url})
    new_secret = None
    status = 200
    if request.method == "POST":
        if request.POST.get("action") == "rotate":
            if reseller.webhook_url:
                new_secret = rotate_webhook_secret(reseller)
            form = WebhookForm(initial={"webhook_url": reseller.webhook_url})
        elif form.is_valid():
            try:
                new_secret = set_webhook(reseller, form.cleaned_data["webhook_url"])
            except DomainError as exc:
                show_error(form, exc)
                status = exc.status
            else:
                messages.success(request, _("The webhook settings were saved."))
                if new_secret is None:
                    return redirect("web:agent-webhook")
                form = WebhookForm(initial={"webhook_url": reseller.webhook_url})
        else:
            status = 400
    secret = reseller.webhook_secret
    return render(
        request,
        TEMPLATE.format("webhook"),
        _context(
            member,
            section="webhook",
            form=form,
            new_secret=new_secret,
            masked_secret=(secret[:10] + "…" + secret[-4:]) if secret else "",
            deliveries=_delivery_log(reseller),
        ),
        status=status,
    )
