"""An order's status page (updates by itself until credited), its receipt, and my top-up
history with its CSV export."""

from __future__ import annotations

import logging
from typing import Any

import segno
from django.core.exceptions import ImproperlyConfigured
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from simtopup.core.money import format_money, to_decimal_string
from simtopup.core.spreadsheet import Sheet
from simtopup.orders import customer as orders
from simtopup.orders.models import FINAL
from simtopup.orders.receipts import format_time, normalise_language, render_receipt_pdf
from simtopup.payments.customer_refunds import refund_lines
from simtopup.payments.models import Payment
from simtopup.payments.providers.base import ALIPAY, WECHAT_PAY
from simtopup.payments.registry import get_provider
from simtopup.payments.surface import surface_of
from simtopup.web.customer import payment_state
from simtopup.web.customer.common import inline_qr, me, visible_order, zone_name, zone_of
from simtopup.web.customer.topup import available_methods, buy_again_url
from simtopup.web.forms import payment_labels
from simtopup.web.session import current_customer, customer_required

logger = logging.getLogger(__name__)
HISTORY_PAGE_SIZE = 50


def _with_token(url: str, token: str) -> str:
    return f"{url}?t={token}" if token else url


def _payment_qr(data: str, method: str) -> str:
    """The QR code a payer scans with a phone to pay (Alipay precreate, WeChat Pay Native)."""
    title = (
        _("QR code to pay with Alipay") if method == ALIPAY else _("QR code to pay with WeChat Pay")
    )
    return inline_qr(segno.make(data, error="m", micro=False), title)


def _jsapi(payment: Payment) -> dict[str, str] | None:
    """WeChat Pay JSAPI (inside WeChat): the signed parameters of its payment sheet for the
    payment's prepay id, made now (they carry the time)."""
    if payment.method != WECHAT_PAY or payment.checkout_url or payment.qr_data:
        return None
    if not payment.provider_ref:
        return None
    try:
        provider = get_provider(payment.provider)
        parameters = getattr(provider, "jsapi_parameters", None)
        return parameters(payment.provider_ref) if parameters is not None else None
    except Exception:  # a provider switched off or misconfigured since: the page still shows
        logger.exception("payment %s: no JSAPI parameters", payment.reference)
        return None


@require_GET
def status(request: HttpRequest, order_id: int) -> HttpResponse:
    order, token = visible_order(request, order_id)
    customer = current_customer(request)
    payment = getattr(order, "payment", None)
    methods = []
    if order.status in FINAL:  # the ways to pay again after a decline, for where I am
        surface = surface_of(request.headers.get("User-Agent"))
        methods = available_methods(customer, order.device, order.plan, surface)
    money = payment_state.page_context(order, methods, token)
    state = money["state"]
    qr_svg = checkout_url = jsapi = None
    if state == "waiting" and payment is not None:
        checkout_url = payment.checkout_url or None
        if payment.qr_data:
            qr_svg = _payment_qr(payment.qr_data, payment.method)
        jsapi = _jsapi(payment)
    context: dict[str, Any] = {
        **money,
        "order": order,
        "amount": format_money(order.amount, order.currency),
        "method": payment_labels().get(order.payment_method, order.payment_method),
        "checkout_url": checkout_url,
        "qr_svg": qr_svg,
        "jsapi": jsapi,
        "qr_method": payment.method if payment is not None else "",
        "poll_url": _with_token(
            reverse("web:order-status-json", kwargs={"order_id": order.pk}), token
        ),
        "receipt_url": _with_token(reverse("web:receipt", kwargs={"order_id": order.pk}), token),
        "created": format_time(order.created_at, zone_of(customer or order.customer)),
        "mine": customer is not None and order.device.owner_id == customer.pk,
        "refunds": refund_lines(order, zone_of(customer or order.customer)),
    }
    response = render(request, "web/customer/order_status.html", context)
    response["Cache-Control"] = "no-store"
    # The signed link stays on this site; same-origin, not no-referrer, so that the retry
    # buttons' POST carries our Origin (no-referrer sends "null", which CSRF refuses).
    response["Referrer-Policy"] = "same-origin"
    response["X-Robots-Tag"] = "noindex"
    return response


@require_GET
def status_json(request: HttpRequest, order_id: int) -> HttpResponse:
    """What the status page polls: the order's status and whether it can still change."""
    order, _token = visible_order(request, order_id)
    response = JsonResponse(
        {
            "status": order.status,
            "final": order.status in FINAL,
            "label": payment_state.label_of(order),
        }
    )
    response["Cache-Control"] = "no-store"
    return response


@require_GET
def receipt(request: HttpRequest, order_id: int) -> HttpResponse:
    """The receipt PDF of a credited order, in the page's language and the customer's (or
    the operator's) time zone."""
    order, _token = visible_order(request, order_id)
    if not order.receipt_no or order.fulfilled_at is None:
        return render(
            request,
            "web/customer/message.html",
            {
                "title": _("No receipt yet"),
                "text": _(
                    "This order has no receipt yet: receipts are issued once a top-up is credited."
                ),
            },
            status=409,
        )
    language = normalise_language(translation.get_language())
    zone = zone_of(order.customer).key
    try:
        pdf = render_receipt_pdf(order, language, zone)
    except ImproperlyConfigured:
        logger.exception("cannot render the receipt of order %s", order.pk)
        return render(
            request,
            "web/customer/message.html",
            {
                "title": _("Receipts are unavailable"),
                "text": _("Receipts cannot be produced right now. Please try again later."),
            },
            status=503,
        )
    response = HttpResponse(pdf, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="receipt-{order.receipt_no}.pdf"'
    response["Cache-Control"] = "private, no-store"
    return response


# --- history ------------------------------------------------------------------------------


def _rows(orders_: Any, customer: Any = None) -> list[dict[str, Any]]:
    """History rows; with ``customer``, each row of a card still theirs and a plan still on
    sale carries its "buy again" link (the confirmation of that plan for that card)."""
    methods = payment_labels()
    zone = zone_of(customer)
    return [
        {
            "order": o,
            "status_label": payment_state.label_of(o),  # declined: not paid, not refunded
            "amount": format_money(o.amount, o.currency),
            "method": methods.get(o.payment_method, o.payment_method),
            "receipt_url": reverse("web:receipt", kwargs={"order_id": o.pk})
            if o.receipt_no
            else None,
            "status_url": reverse("web:order-status", kwargs={"order_id": o.pk}),
            "refunds": refund_lines(o, zone),
            "again_url": buy_again_url(o.device_id, o.plan.code)
            if customer is not None and o.device.owner_id == customer.pk and o.plan.active
            else None,
        }
        for o in orders_
    ]


@customer_required
@require_GET
def history(request: HttpRequest) -> HttpResponse:
    customer = me(request)
    paginator = Paginator(orders.customer_orders(customer).order_by("-pk"), HISTORY_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    with timezone.override(zone_of(customer)):
        return render(
            request,
            "web/customer/history.html",
            {
                "rows": _rows(page.object_list, customer),
                "page": page,
                "zone": zone_name(customer),
            },
        )


@customer_required
@require_GET
def history_csv(request: HttpRequest) -> HttpResponse:
    """All my orders as CSV: UTF-8 with a byte-order mark (so Excel shows Chinese), headers in
    the page's language, times in my time zone."""
    customer = me(request)
    zone = zone_of(customer)
    sheet = Sheet(
        [
            _("Order number"),
            _("Time (%(zone)s)") % {"zone": zone_name(customer)},
            _("Status"),
            _("Plan"),
            _("Device"),
            _("Amount"),
            _("Currency"),
            _("Payment method"),
            _("Receipt"),
            _("Refunds"),
        ]
    )
    methods = payment_labels()
    for o in orders.customer_orders(customer).order_by("-pk").iterator(chunk_size=500):
        sheet.row(
            [
                o.pk,
                f"{o.created_at.astimezone(zone):%Y-%m-%d %H:%M:%S}",
                payment_state.label_of(o),
                o.plan.name,
                o.device.masked,
                to_decimal_string(o.amount, o.currency),
                o.currency,
                methods.get(o.payment_method, o.payment_method),
                o.receipt_no or "",
                "; ".join(refund_lines(o, zone)),
            ]
        )
    stamp = timezone.now().astimezone(zone).strftime("%Y%m%d")
    response = sheet.response(f"topup-history-{stamp}.csv")
    response["Cache-Control"] = "private, no-store"
    return response
