"""Endpoints of the payments domain: provider webhooks and the sandbox gateway's hosted
checkout page. (The page the payer returns to is the website's: web/payment_return.py.)"""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils import translation
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from simtopup.core.money import format_money
from simtopup.payments.models import (
    OPEN,
    Payment,
    PaymentStatus,
    Refund,
    RefundStatus,
    SandboxCharge,
    SandboxChargeStatus,
)
from simtopup.payments.providers import sandbox
from simtopup.payments.registry import PROVIDER_CLASSES, is_enabled
from simtopup.payments.webhooks import receive

STILL_OPEN = (*OPEN, PaymentStatus.REFUND_PENDING)


@csrf_exempt
@require_POST
def webhook(request: HttpRequest, provider: str) -> HttpResponse:
    """``POST /payments/webhooks/<provider>``: the raw body goes to the provider to verify."""
    if provider not in PROVIDER_CLASSES:
        raise Http404
    if not is_enabled(provider) and not _still_in_use(provider):
        raise Http404
    ack = receive(provider, request.headers, request.body)
    return HttpResponse(ack.body, status=ack.status, content_type=ack.content_type)


def _still_in_use(provider: str) -> bool:
    """A provider switched off since keeps receiving notifications for the payments and
    refunds it still has open (late successes, refund confirmations)."""
    return (
        Payment.objects.filter(provider=provider, status__in=STILL_OPEN).exists()
        or Refund.objects.filter(payment__provider=provider, status=RefundStatus.PENDING).exists()
    )


@require_http_methods(["GET", "POST"])
def sandbox_checkout(request: HttpRequest, payment_id: str) -> HttpResponse:
    """``/sandbox/checkout/<id>``: the sandbox gateway's hosted payment page."""
    if not is_enabled("sandbox"):
        raise Http404
    charge = SandboxCharge.objects.filter(public_id=payment_id).first()
    if charge is None:
        raise Http404
    if request.method == "POST":
        outcome = request.POST.get("outcome")
        if outcome not in ("succeed", "decline"):
            return HttpResponseBadRequest("outcome must be succeed or decline")
        sandbox.settle(charge, outcome)
        return redirect(charge.return_url or sandbox.checkout_path(charge.public_id))
    with translation.override(charge.language):
        return render(
            request,
            "payments/sandbox_checkout.html",
            {
                "charge": charge,
                "amount": format_money(charge.amount, charge.currency),
                "open": charge.status == SandboxChargeStatus.REQUIRES_ACTION,
                "declined_all": charge.status == SandboxChargeStatus.REQUIRES_ACTION
                and settings.SANDBOX_DECLINE_ALL,
                "LANGUAGE_CODE": charge.language,
            },
        )
