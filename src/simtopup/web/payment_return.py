"""The page a payer's browser lands on after the payment provider's page
(``/payments/return/<reference>``, the return URL every payment carries). A page for people,
so it belongs to the website: a website order goes on to its status page, an app payer is
told where the order stands (nothing personal: the masked device only)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from simtopup.core.money import format_money
from simtopup.orders.models import Channel, OrderStatus
from simtopup.payments.actions import check_on_return
from simtopup.payments.models import Payment
from simtopup.web.customer.common import status_url


@require_http_methods(["GET"])
def payment_return(request: HttpRequest, reference: str) -> HttpResponse:
    payment = (
        Payment.objects.select_related("order", "order__device", "order__plan")
        .filter(reference=reference)
        .first()
    )
    if payment is None:
        raise Http404
    if payment.order.status == OrderStatus.AWAITING_PAYMENT:
        # Back from the provider's page: ask the provider now, so that a payment it already
        # has is shown paid at once, not "awaiting payment" with an offer to pay again until
        # its notification arrives.
        check_on_return(payment.pk)
        payment.order.refresh_from_db()
    order = payment.order
    if order.channel == Channel.WEB:
        # Website payers go on to the page that follows the order until it is credited.
        return redirect(status_url(order, signed=True))
    return render(
        request,
        "web/payment_return.html",
        {
            "order": order,
            "device": order.device.masked,
            "amount": format_money(order.amount, order.currency),
            "done": order.status == OrderStatus.FULFILLED,
            "waiting": order.status
            in (OrderStatus.AWAITING_PAYMENT, OrderStatus.PAID, OrderStatus.FULFILLING),
        },
        status=200,
    )
