"""What the order status page says about the money, honestly, and what it offers.

- ``waiting``: the provider does not have the payment yet — the page offers to pay (the QR
  code or the provider's page).
- ``crediting`` / ``done``: the provider has the payment (the order is paid, crediting or
  credited): never an offer to pay again.
- ``declined``: the provider refused or the payer gave up; nothing was charged. The other
  ways to pay, one tap each (a new confirmation of the same card and plan, that method
  preselected).
- ``cancelled``: nobody paid in time, or the customer cancelled; nothing was charged.
- ``refunded``: paid, then the top-up failed: where the money goes back and when.
"""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _

from simtopup.orders.customer import BALANCE
from simtopup.orders.models import Order, OrderStatus
from simtopup.payments.models import PaymentStatus
from simtopup.payments.providers.base import ALIPAY, CARD, WECHAT_PAY
from simtopup.web.forms import payment_labels

# Payment states in which nothing was taken from the payer.
_NOT_CHARGED = (PaymentStatus.FAILED, PaymentStatus.CANCELLED, PaymentStatus.PENDING)


def state_of(order: Order) -> str:
    """waiting, crediting, done, declined, cancelled or refunded."""
    status = order.status
    if status == OrderStatus.FULFILLED:
        return "done"
    if status == OrderStatus.AWAITING_PAYMENT:
        return "waiting"
    if status in (OrderStatus.PAID, OrderStatus.FULFILLING):
        return "crediting"
    if order.payment_method != BALANCE:
        payment = getattr(order, "payment", None)
        if payment is None or payment.status in _NOT_CHARGED:
            return "cancelled" if status == OrderStatus.CANCELLED else "declined"
    elif status == OrderStatus.CANCELLED:
        return "cancelled"
    return "refunded"


def label_of(order: Order) -> str:
    """The order's status in a few words, as this page and its poll show it."""
    state = state_of(order)
    if state == "declined":
        return _("Not paid")
    if state == "cancelled":
        return _("Cancelled")
    if state == "refunded":
        return _("Refunded") if order.status == OrderStatus.REFUNDED else _("Being refunded")
    return {
        "waiting": _("Awaiting payment"),
        "crediting": _("Paid, crediting"),
        "done": _("Credited"),
    }[state]


def refund_words(method: str) -> tuple[str, str]:
    """Where a refund of a payment by ``method`` goes, and when it usually arrives."""
    where = {
        BALANCE: _("the card's credit"),
        ALIPAY: _("your Alipay account, or the bank card you paid with in Alipay"),
        WECHAT_PAY: _("your WeChat Pay balance, or the bank card you paid with in WeChat"),
        CARD: _("the bank card you paid with"),
    }
    when = {
        BALANCE: _("It is there now."),
        ALIPAY: _("It usually arrives within minutes; to a bank card, within 3 working days."),
        WECHAT_PAY: _(
            "It usually arrives within minutes; to a bank card, within 1 to 3 working days."
        ),
        CARD: _("It arrives within 5 to 10 working days, depending on your bank."),
    }
    return where.get(method, where[CARD]), when.get(method, when[CARD])


def retry_links(order: Order, methods: list[str], token: str) -> list[dict[str, Any]]:
    """One button per way to pay, the declined one last: each a new confirmation of the
    same card and plan with that method preselected."""
    labels = payment_labels()
    ordered = [m for m in methods if m != order.payment_method]
    if order.payment_method in methods:
        ordered.append(order.payment_method)
    links = []
    for method in ordered:
        query: dict[str, str] = {"m": method}
        if token:
            query["t"] = token
        url = reverse("web:topup-retry", kwargs={"order_id": order.pk})
        if method == order.payment_method:
            text = _("Try %(method)s again") % {"method": labels.get(method, method)}
        else:
            text = _("Pay with %(method)s") % {"method": labels.get(method, method)}
        links.append({"method": method, "url": f"{url}?{urlencode(query)}", "text": text})
    return links


def page_context(order: Order, methods: list[str], token: str) -> dict[str, Any]:
    """The status page's words for the money (``methods``: the ways to pay offered now,
    for where the payer is)."""
    state = state_of(order)
    context: dict[str, Any] = {"state": state, "status_label": label_of(order)}
    if state == "declined":
        context["retry"] = retry_links(order, methods, token)
    if state == "refunded":
        where, when = refund_words(order.payment_method)
        context["refund_where"], context["refund_when"] = where, when
    return context
