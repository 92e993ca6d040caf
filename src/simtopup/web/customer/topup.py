"""Top up: choose a plan → choose or type a device → confirm (masked device, plan, price) and
pay → the status page.

Typing a device ID works without logging in (paying for someone else's card); such a payer
pays by card, Alipay or WeChat Pay, never with a card's credit. A logged-in customer's
confirmation is a stored quote (``orders.customer.create_quote``) that locks the price; a
visitor's is the signed confirmation itself, and an order refuses a price other than the
one the visitor confirmed. Either way the confirmation travels signed, so nobody can swap
the device or the price in between.

Pressing "Pay" twice places one order: the confirmation carries a one-time key, claimed
by the same rule as an API ``Idempotency-Key`` (``core/idempotency.py``) before anything is
asked of the payment provider; the order is stored as the key's answer in its own
transaction, so a press that outlived its lease and was taken over places nothing.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core import signing
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from simtopup.accounts.models import Customer
from simtopup.catalog.display import format_data, format_validity, plan_label
from simtopup.catalog.models import Plan
from simtopup.catalog.pricing import get_plan
from simtopup.core import idempotency
from simtopup.core.errors import DomainError, show_error
from simtopup.core.http import client_ip
from simtopup.core.money import format_money
from simtopup.devices.binding import my_devices
from simtopup.devices.identifiers import find_device, rechargeable_device
from simtopup.devices.models import Device
from simtopup.orders import customer as orders
from simtopup.orders.customer import BALANCE
from simtopup.orders.models import Channel, Order
from simtopup.payments import checkout, wechat_oauth
from simtopup.payments.actions import PreparedPayment
from simtopup.payments.providers.base import DESKTOP, METHODS, WECHAT, WECHAT_PAY, ProviderError
from simtopup.payments.registry import provider_for
from simtopup.payments.surface import methods_for, surface_of
from simtopup.web.customer import payment_state
from simtopup.web.customer.common import device_or_404, me, status_url, visible_order
from simtopup.web.forms import DeviceChoiceForm, PayForm
from simtopup.web.session import current_customer, customer_required

CONFIRMATION_SALT = "simtopup.web.topup-confirmation"
IDEMPOTENCY_SCOPE = "web:topup"
# A "Pay" press still running (asking the provider) blocks its duplicates this long at most.
CLAIM_LEASE = timedelta(minutes=2)


def plan_facts(plan: Plan) -> dict[str, Any]:
    if plan.is_payg:
        detail = _("%(amount)s of credit, charged per MB used") % {
            "amount": format_money(plan.price, plan.currency)
        }
    else:
        detail = _("%(data)s, valid for %(validity)s") % {
            "data": format_data(plan.data_bytes),
            "validity": format_validity(plan.validity_hours),
        }
    return {
        "plan": plan,
        "kind": plan_label(plan),
        "detail": detail,
        "price": format_money(plan.price, plan.currency),
    }


def served_methods() -> list[str]:
    """The methods a provider serves now."""
    served = []
    for method in METHODS:
        try:
            provider_for(method)
        except DomainError:
            continue
        served.append(method)
    return served


def available_methods(
    customer: Customer | None,
    device: Device,
    plan: Plan,
    surface: str = DESKTOP,
    price: int | None = None,
    *,
    wechat_openid: bool = False,
) -> list[str]:
    """Methods a payer may choose, the one to preselect first, for where the payer is
    (payments/surface.py): those a provider serves now, and the card's credit for its owner
    when it covers the price (a pass only: credit does not buy credit)."""
    credit = None
    if customer is not None and device.owner_id == customer.pk and not plan.is_payg:
        credit = device.credit_account.balance
    return methods_for(
        surface,
        served_methods(),
        credit=credit,
        price=plan.price if price is None else price,
        wechat_openid=wechat_openid,
    )


def identifier_of(device: Device) -> str:
    """An identifier of the card that leads back to it (what the order functions take)."""
    for text in (device.iccid, device.eid, device.imei, device.serial):
        if text and find_device(text).pk == device.pk:
            return text
    raise Http404


# --- step 1: the plans --------------------------------------------------------------------


@require_GET
def plans(request: HttpRequest) -> HttpResponse:
    device = request.GET.get("device", "")
    rows = []
    for plan in Plan.objects.filter(active=True, currency=settings.CURRENCY):
        query = {"plan": plan.code, **({"device": device} if device.isdigit() else {})}
        rows.append(
            {**plan_facts(plan), "url": f"{reverse('web:topup-device')}?{urlencode(query)}"}
        )
    return render(request, "web/customer/topup_plans.html", {"plans": rows, "step": 1})


# --- step 2: the device -------------------------------------------------------------------


def _confirmation(customer: Customer | None, device: Device, plan: Plan) -> str:
    """Confirm device, plan and price: a stored quote for a customer, the signed
    confirmation alone for a visitor."""
    quote_id = None
    amount = plan.price
    if customer is not None:
        quote = orders.create_quote(customer, identifier_of(device), plan.code)
        quote_id, amount = quote.pk, quote.amount
    return signing.dumps(
        {
            "d": device.pk,
            "p": plan.code,
            "a": amount,
            "c": plan.currency,
            "q": quote_id,
            "u": customer.pk if customer else None,
            "k": secrets.token_hex(16),
        },
        salt=CONFIRMATION_SALT,
        compress=True,
    )


@require_http_methods(["GET", "POST"])
def choose_device(request: HttpRequest) -> HttpResponse:
    customer = current_customer(request)
    code = request.POST.get("plan") if request.method == "POST" else request.GET.get("plan")
    try:
        plan = get_plan(code or "")
    except DomainError:
        messages.error(request, _("Please choose a plan first."))
        return redirect("web:topup")
    devices = list(my_devices(customer).order_by("pk")) if customer else []
    status = 200
    if request.method == "POST":
        status = 422  # unless it redirects below
        form = DeviceChoiceForm(request.POST, devices=devices)
        if form.is_valid():
            try:
                with transaction.atomic(durable=True):
                    if form.cleaned_data.get("device"):
                        device = rechargeable_device(form.cleaned_data["device"])
                    else:
                        device = next(d for d in devices if d.pk == form.cleaned_data["mine"])
                        device = rechargeable_device(identifier_of(device), field="mine")
                    token = _confirmation(customer, device, plan)
            except DomainError as exc:
                mine = "mine" if not form.cleaned_data.get("device") else "device"
                show_error(form, exc, {"device": mine, "plan": None})
            else:
                return redirect(f"{reverse('web:topup-confirm')}?{urlencode({'c': token})}")
    else:
        initial: dict[str, Any] = {"plan": plan.code}
        wanted = request.GET.get("device", "")
        if wanted.isdigit() and any(d.pk == int(wanted) for d in devices):
            initial["mine"] = int(wanted)
        elif devices:
            initial["mine"] = devices[0].pk
        form = DeviceChoiceForm(initial=initial, devices=devices)
    return render(
        request,
        "web/customer/topup_device.html",
        {"form": form, "facts": plan_facts(plan), "devices": devices, "step": 2},
        status=status,
    )


# --- step 3: confirm and pay --------------------------------------------------------------


class Expired(Exception):
    pass


def _read(token: str, customer: Customer | None) -> dict[str, Any]:
    try:
        data: dict[str, Any] = signing.loads(
            token, salt=CONFIRMATION_SALT, max_age=settings.QUOTE_TTL_SECONDS
        )
    except signing.BadSignature as exc:
        raise Expired from exc
    if data.get("u") != (customer.pk if customer else None):
        raise Expired  # logged in or out since: confirm again
    return data


def _expired(request: HttpRequest, plan_code: str | None = None) -> HttpResponse:
    messages.error(
        request, _("This price confirmation has expired. Please confirm the order again.")
    )
    if plan_code:
        return redirect(f"{reverse('web:topup-device')}?{urlencode({'plan': plan_code})}")
    return redirect("web:topup")


def _claim(key: str) -> idempotency.Outcome:
    """Claim the confirmation's one-time key (the key is its own fingerprint: it is never
    sent with another request)."""
    return idempotency.claim(
        IDEMPOTENCY_SCOPE,
        key,
        key,
        method="POST",
        path=reverse("web:topup-confirm"),
        lease=CLAIM_LEASE,
    )


def _placed(replay: idempotency.Replay | None) -> Order | None:
    """The order an earlier press placed with this confirmation."""
    if replay is None:
        return None
    return Order.objects.filter(pk=replay.json()["order"]).first()


def _next_step(order: Order) -> HttpResponse:
    """Off to the provider's page, or to the status page (QR code, credit, or the outcome)."""
    payment = getattr(order, "payment", None)
    if payment is not None and payment.checkout_url and not payment.qr_data:
        # A hosted page, or the app's payment page on this phone (Alipay WAP, WeChat Pay H5).
        return HttpResponseRedirect(payment.checkout_url)
    return HttpResponseRedirect(status_url(order))


def _place(
    request: HttpRequest,
    customer: Customer | None,
    data: dict[str, Any],
    method: str,
    claim: idempotency.Claimed,
) -> Order:
    """Place the order and store it as the key's answer in one transaction; LeaseLost (and
    no order) if another press took the key over meanwhile."""
    device = Device.objects.filter(pk=data["d"]).first()
    if device is None:
        raise Http404
    text = identifier_of(device)
    payer_ip = client_ip(request)
    # A visitor's confirmation is the signed price itself: the order refuses another one.
    confirmed = (data["a"], data["c"]) if customer is None else None
    prepared: PreparedPayment | None = checkout.prepare_order(
        customer,
        text,
        data["p"],
        method,
        quote_id=data["q"],
        confirmed=confirmed,
        client_ip=payer_ip,
        surface=surface_of(request.headers.get("User-Agent")),
        payer_openid=_payer_openid(request),
    )
    with transaction.atomic(durable=True):
        order = checkout.place_order(
            customer,
            text,
            data["p"],
            method,
            quote_id=data["q"],
            confirmed=confirmed,
            channel=Channel.WEB,
            client_ip=payer_ip,
            prepared=prepared,
            surface=surface_of(request.headers.get("User-Agent")),
            payer_openid=_payer_openid(request),
        )
        idempotency.store(claim.record, 201, {"order": order.pk})
    return order


@require_http_methods(["GET", "POST"])
def confirm(request: HttpRequest) -> HttpResponse:
    if request.method == "GET" and "c" not in request.GET and "device" in request.GET:
        return buy_again(request)
    customer = current_customer(request)
    token = request.POST.get("confirmation") if request.method == "POST" else request.GET.get("c")
    try:
        data = _read(token or "", customer)
    except Expired:
        return _expired(request)
    device = Device.objects.filter(pk=data["d"]).first()
    plan = Plan.objects.filter(code=data["p"], active=True).first()
    if device is None or plan is None:
        return _expired(request)
    surface = surface_of(request.headers.get("User-Agent"))
    if request.method == "GET" and _needs_openid(request, surface):
        return _ask_wechat_for_openid(request)
    methods = available_methods(
        customer, device, plan, surface, data["a"], wechat_openid=bool(_payer_openid(request))
    )
    status = 200
    if request.method == "POST":
        form = PayForm(request.POST, methods=methods)
        if form.is_valid():
            claim = _claim(data["k"])
            earlier = _placed(claim) if isinstance(claim, idempotency.Replay) else None
            if earlier is not None:
                return _next_step(earlier)
            if not isinstance(claim, idempotency.Claimed):
                form.add_error(None, _("This order is already being placed. Please wait a moment."))
                status = 409
            else:
                try:
                    order = _place(
                        request, customer, data, form.cleaned_data["payment_method"], claim
                    )
                except idempotency.LeaseLost:
                    # This press outlived its lease and another took over: that one's order
                    # stands, ours was rolled back.
                    earlier = _placed(idempotency.answer(IDEMPOTENCY_SCOPE, data["k"]))
                    if earlier is not None:
                        return _next_step(earlier)
                    form.add_error(
                        None, _("This order is already being placed. Please wait a moment.")
                    )
                    status = 409
                except DomainError as exc:
                    idempotency.release(claim.record)
                    if exc.code in ("quote_expired", "unknown_quote", "quote_mismatch"):
                        messages.error(request, str(exc.message))
                        query = urlencode({"plan": plan.code})
                        return redirect(f"{reverse('web:topup-device')}?{query}")
                    show_error(
                        form,
                        exc,
                        {"device": None, "plan": None, "quote": None},
                        default="payment_method",
                    )
                    status = 402 if exc.code == "insufficient_balance" else 422
                except BaseException:
                    idempotency.release(claim.record)
                    raise
                else:
                    return _next_step(order)
        else:
            status = 422
    else:
        # Preselected: the one asked for (another way to pay after a decline), else the
        # first for where the payer is.
        wanted = request.GET.get("m")
        chosen = wanted if wanted in methods else (methods[0] if methods else None)
        form = PayForm(initial={"confirmation": token, "payment_method": chosen}, methods=methods)
    credit = None
    if BALANCE in methods:
        credit = format_money(device.credit_account.balance, device.credit_account.unit)
    return render(
        request,
        "web/customer/topup_confirm.html",
        {
            "form": form,
            "facts": plan_facts(plan),
            "device": device,
            "price": format_money(data["a"], data["c"]),
            "credit": credit,
            "step": 3,
        },
        status=status,
    )


# --- one tap: buy again -------------------------------------------------------------------


def buy_again_url(device_id: int, plan_code: str) -> str:
    """The one-tap link (card page, history rows, alerts, the credit form): the confirmation
    of ``plan_code`` for card ``device_id``, pre-filled."""
    query = urlencode({"device": str(device_id), "plan": plan_code})
    return f"{reverse('web:topup-confirm')}?{query}"


@customer_required
def buy_again(request: HttpRequest) -> HttpResponse:
    """``/topup/confirm?device=…&plan=…``: one of my cards and a plan straight to the
    confirmation (the same stored quote as the device step makes), then pay. Anybody else's
    card is a plain 404; a plan no longer on sale goes back to the plans for the card, a
    card that cannot be topped up to the device step with the error."""
    wanted = request.GET.get("device", "")
    if not (wanted.isdigit() and len(wanted) <= 18):
        raise Http404
    customer = me(request)
    device = device_or_404(customer, int(wanted))
    try:
        plan = get_plan(request.GET.get("plan", ""), settings.CURRENCY)
    except DomainError as exc:
        messages.error(request, str(exc.message))
        return redirect(f"{reverse('web:topup')}?{urlencode({'device': device.pk})}")
    try:
        with transaction.atomic(durable=True):
            device = rechargeable_device(identifier_of(device), field="mine")
            token = _confirmation(customer, device, plan)
    except DomainError as exc:
        messages.error(request, str(exc.message))
        query = urlencode({"plan": plan.code, "device": str(device.pk)})
        return redirect(f"{reverse('web:topup-device')}?{query}")
    return redirect(f"{reverse('web:topup-confirm')}?{urlencode({'c': token})}")


# --- another way to pay, after a decline -------------------------------------------------


@require_http_methods(["GET", "POST"])
def retry(request: HttpRequest, order_id: int) -> HttpResponse:
    """``/topup/retry/<order>?m=<method>``: a payment that was declined is tried again
    another way. POST (the declined page's buttons) with Alipay, WeChat Pay or card: the
    same order, a new payment attempt, off to its payment page. The card's credit, or a GET
    (an old link): a new confirmation of the same card and plan at today's price, with that
    method preselected. An order that was paid goes back to its status page: nothing is
    offered twice."""
    order, _token = visible_order(request, order_id)
    method = request.GET.get("m", "")
    if request.method == "POST" and method in METHODS:
        return _retry_same_order(request, order, method)
    if payment_state.state_of(order) not in ("declined", "cancelled"):
        return HttpResponseRedirect(status_url(order))
    customer = current_customer(request)
    plan = Plan.objects.filter(pk=order.plan_id, active=True).first()
    if plan is None:
        messages.error(request, _("This plan is no longer on sale. Please choose another."))
        return redirect(f"{reverse('web:topup')}?{urlencode({'device': order.device_id})}")
    try:
        with transaction.atomic(durable=True):
            device = rechargeable_device(identifier_of(order.device))
            confirmation = _confirmation(customer, device, plan)
    except DomainError as exc:
        messages.error(request, str(exc.message))
        return redirect(f"{reverse('web:topup-device')}?{urlencode({'plan': plan.code})}")
    query = {"c": confirmation}
    if method in (*METHODS, BALANCE):
        query["m"] = method
    return redirect(f"{reverse('web:topup-confirm')}?{urlencode(query)}")


def _retry_same_order(request: HttpRequest, order: Order, method: str) -> HttpResponse:
    """Pay the declined ``order`` again with ``method``: the provider creates the attempt
    first (no lock waits on it), then the order takes it (payments.checkout.retry_order);
    refused with its reason on the status page when the order is no longer retryable."""
    surface = surface_of(request.headers.get("User-Agent"))
    payer_ip = client_ip(request)
    openid = _payer_openid(request)
    try:
        prepared = checkout.prepare_retry(
            order, method, client_ip=payer_ip, surface=surface, payer_openid=openid
        )
        with transaction.atomic(durable=True):
            checkout.retry_order(
                order,
                method,
                prepared=prepared,
                client_ip=payer_ip,
                surface=surface,
                payer_openid=openid,
            )
    except DomainError as exc:
        messages.error(request, str(exc.message))
        return HttpResponseRedirect(status_url(order))
    return _next_step(Order.objects.select_related("payment").get(pk=order.pk))


# --- WeChat Pay inside WeChat: the payer's openid -----------------------------------------

SESSION_OPENID = "wechat_openid"
SESSION_OAUTH = "wechat_oauth"


def _payer_openid(request: HttpRequest) -> str | None:
    """The openid WeChat gave for this browser (JSAPI only runs inside WeChat)."""
    if surface_of(request.headers.get("User-Agent")) != WECHAT:
        return None
    value = request.session.get(SESSION_OPENID)
    return value if isinstance(value, str) and value else None


def _needs_openid(request: HttpRequest, surface: str) -> bool:
    """Inside WeChat, with JSAPI set up and WeChat Pay served, before WeChat was asked (once
    per session: a refusal is not asked again, the card stays)."""
    return (
        surface == WECHAT
        and wechat_oauth.enabled()
        and _payer_openid(request) is None
        and not request.session.get(SESSION_OAUTH)
        and WECHAT_PAY in served_methods()
    )


def _ask_wechat_for_openid(request: HttpRequest) -> HttpResponse:
    state = secrets.token_urlsafe(16)
    request.session[SESSION_OAUTH] = {"state": state, "next": request.get_full_path()}
    back = settings.SITE_URL.rstrip("/") + reverse("web:topup-wechat-openid")
    return HttpResponseRedirect(wechat_oauth.authorize_url(back, state))


@require_GET
def wechat_openid(request: HttpRequest) -> HttpResponse:
    """``/topup/wechat-openid?code=…&state=…``: WeChat hands the browser back; the code
    becomes the payer's openid (kept in the session), then on to the confirmation."""
    pending = request.session.get(SESSION_OAUTH)
    if not isinstance(pending, dict) or not pending.get("state"):
        return redirect("web:topup")
    request.session[SESSION_OAUTH] = {"state": "", "next": ""}  # asked: never loop
    target = str(pending.get("next") or "")
    if not target.startswith("/") or target.startswith("//"):
        target = reverse("web:topup")
    if not secrets.compare_digest(str(pending["state"]), request.GET.get("state", "")):
        return HttpResponseRedirect(target)
    try:
        request.session[SESSION_OPENID] = wechat_oauth.openid_for(request.GET.get("code", ""))
    except ProviderError:
        messages.error(request, _("WeChat Pay cannot be used on this page."))
    return HttpResponseRedirect(target)
