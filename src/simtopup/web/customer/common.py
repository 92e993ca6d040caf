"""What the customer pages share: who is asking, links to an order, display helpers."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import segno
from django.core import signing
from django.http import Http404, HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _

from simtopup.accounts.models import Customer
from simtopup.core.errors import DomainError
from simtopup.devices.binding import my_device
from simtopup.devices.models import Device
from simtopup.orders.models import Order, OrderStatus
from simtopup.orders.receipts import customer_zone, zone_label
from simtopup.web.session import current_customer

# A payer who is not logged in reaches their order (status page, receipt) through a signed
# link; it lasts long enough to come back for the receipt.
ORDER_LINK_SALT = "simtopup.web.order-link"
ORDER_LINK_MAX_AGE = timedelta(days=30)


def me(request: HttpRequest) -> Customer:
    """The logged-in customer (views behind ``@customer_required``)."""
    customer = current_customer(request)
    assert customer is not None
    return customer


def zone_of(customer: Customer | None) -> ZoneInfo:
    return customer_zone(customer.time_zone if customer else None)


def zone_name(customer: Customer | None) -> str:
    """The customer's zone as a page may name it (北京时间, UTC+8), never the IANA name
    (``Asia/Shanghai``); for a page that says which zone its times are in."""
    return zone_label(zone_of(customer), timezone.now())


def device_or_404(customer: Customer, device_id: int) -> Device:
    """One of the customer's cards; anybody else's is a plain 404."""
    try:
        return my_device(customer, device_id)
    except DomainError as exc:
        raise Http404(str(exc.message)) from exc


def order_token(order_id: int) -> str:
    return signing.TimestampSigner(salt=ORDER_LINK_SALT).sign(str(order_id))


def token_allows(token: str | None, order_id: int) -> bool:
    if not token:
        return False
    try:
        value = signing.TimestampSigner(salt=ORDER_LINK_SALT).unsign(
            token, max_age=ORDER_LINK_MAX_AGE
        )
    except signing.BadSignature:
        return False
    return value == str(order_id)


def status_url(order: Order, *, signed: bool | None = None) -> str:
    """The status page; with the signed link for payers who are not logged in (or, with
    ``signed=True``, for a browser that may not carry the customer's session: the payment
    provider may hand the payer back to another browser)."""
    path = reverse("web:order-status", kwargs={"order_id": order.pk})
    if signed or (signed is None and order.customer_id is None):
        return f"{path}?t={order_token(order.pk)}"
    return path


def visible_order(request: HttpRequest, order_id: int) -> tuple[Order, str]:
    """The order, if the request may see it: its customer is logged in, or the signed link
    was given (``?t=``). Otherwise 404 — never reveal that it exists. Also returns the token
    to carry on to the page's links ("" for the logged-in customer)."""
    order = (
        Order.objects.select_related("device", "plan", "payment", "customer", "reseller")
        .filter(pk=order_id)
        .first()
    )
    if order is None or order.reseller_id is not None:
        raise Http404
    token = request.GET.get("t", "")
    customer = current_customer(request)
    if customer is not None and order.customer_id == customer.pk:
        return order, ""
    if token_allows(token, order.pk):
        return order, token
    raise Http404


def status_labels() -> dict[str, str]:
    return {
        OrderStatus.AWAITING_PAYMENT: _("Awaiting payment"),
        OrderStatus.PAID: _("Paid, crediting"),
        OrderStatus.FULFILLING: _("Paid, crediting"),
        OrderStatus.FULFILLED: _("Credited"),
        OrderStatus.FAILED: _("Failed, refunded"),
        OrderStatus.REFUNDED: _("Refunded"),
        OrderStatus.CANCELLED: _("Cancelled"),
    }


def device_kinds() -> dict[str, str]:
    return {"esim": _("eSIM"), "sim": _("SIM card"), "hotspot": _("Portable hotspot")}


def device_statuses() -> dict[str, str]:
    return {
        "in_stock": _("Not yet activated"),
        "active": _("Active"),
        "suspended": _("Suspended"),
        "retired": _("Retired"),
    }


def inline_qr(code: segno.QRCode, title: str) -> SafeString:
    """A QR code as inline SVG that scales with the page (a viewBox, no fixed size). Our own
    segno output, not user input: safe to inline."""
    svg = code.svg_inline(scale=1, border=4, omitsize=True, dark="#000", light="#fff", title=title)
    return mark_safe(svg)  # noqa: S308
