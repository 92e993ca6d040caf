"""Public verification: anyone can check that a receipt is genuine, or that an agent is one of
our authorised resellers (anti-fraud).

``/verify/receipt/<receipt_no>`` is what the QR code on every receipt opens;
``/verify/receipt?no=…`` is the form for a number typed by hand. A wrong check digit gets its
own message (a typo, most likely); anything else that is not one of our receipts says so
plainly — it may be a fake — and reveals nothing else.

``/verify/agent?code=…`` looks an agent code up: an active reseller is "authorised since
<date>", a suspended one is "not currently authorised", an unknown code may be a fake agent
(404).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone, translation
from django.views.decorators.http import require_GET

from simtopup.accounts import ratelimit
from simtopup.core.errors import DomainError
from simtopup.core.http import client_ip
from simtopup.orders.models import Order
from simtopup.orders.receipts import (
    SUPPORTED_LANGUAGES,
    customer_zone,
    find_receipt,
    normalise_language,
    receipt_facts,
)
from simtopup.resellers.lookups import AGENT_CODE_MAX, normalise_agent_code, reseller_by_agent_code

MAX_INPUT = 100


def _count_lookup(request: HttpRequest) -> None:
    """Receipt numbers and agent codes are not secrets, but walking through them (a bot
    trying every number) is refused: lookups are limited per client IP."""
    ip = client_ip(request) or "unknown"
    limits = ratelimit.limits(settings.VERIFY_IP_LIMITS)
    ratelimit.hit(f"verify-ip:{ratelimit.ip_bucket(ip)}", limits)


def _unshared(response: HttpResponse, retry_after: str | None) -> HttpResponse:
    """A check's answer is for the one who asked: not indexed, cached or sent on as a
    referrer (the number or code is in the URL); when limited, when to ask again."""
    if retry_after:
        response["Retry-After"] = retry_after
    response["X-Robots-Tag"] = "noindex"
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response


def _language(request: HttpRequest) -> str:
    """``?lang=`` if given and known, else what LocaleMiddleware chose for the request."""
    asked = request.GET.get("lang", "")
    if asked and asked.strip().lower() in SUPPORTED_LANGUAGES:
        return asked.strip().lower()
    return normalise_language(getattr(request, "LANGUAGE_CODE", None) or translation.get_language())


def _page(request: HttpRequest, number: str | None) -> HttpResponse:
    language = _language(request)
    context: dict[str, Any] = {
        "operator": settings.OPERATOR_NAME,
        "site_host": urlsplit(settings.SITE_URL).netloc or settings.SITE_URL,
        "number": (number or "")[:MAX_INPUT],
        "lang": language,
        "languages": [
            (code, name) for code, name in settings.LANGUAGES if code in SUPPORTED_LANGUAGES
        ],
        "outcome": None,
    }
    status = 200
    retry_after = None
    with translation.override(language):
        if number is not None and number.strip():
            try:
                _count_lookup(request)
                order: Order = find_receipt(number[:MAX_INPUT])
            except DomainError as exc:
                context["outcome"] = exc.code
                context["message"] = exc.message
                status = exc.status
                retry_after = exc.headers.get("Retry-After")
            else:
                zone = customer_zone(order.customer.time_zone if order.customer else None)
                context["facts"] = receipt_facts(order, zone)
                context["outcome"] = "genuine"
        response = render(request, "web/verify_receipt.html", context, status=status)
    response["Content-Language"] = language
    return _unshared(response, retry_after)


@require_GET
def receipt_form(request: HttpRequest) -> HttpResponse:
    return _page(request, request.GET.get("no"))


@require_GET
def receipt(request: HttpRequest, receipt_no: str) -> HttpResponse:
    return _page(request, receipt_no)


@require_GET
def agent(request: HttpRequest) -> HttpResponse:
    typed = request.GET.get("code", "")[:AGENT_CODE_MAX]
    code = normalise_agent_code(typed)
    context: dict[str, Any] = {"code": typed.strip(), "outcome": None}
    status = 200
    retry_after = None
    try:
        if code:
            _count_lookup(request)
    except DomainError as exc:
        context["outcome"], context["message"], status = exc.code, exc.message, exc.status
        retry_after = exc.headers.get("Retry-After")
        code = ""
    if code:
        reseller = reseller_by_agent_code(code)
        if reseller is None:
            context["outcome"] = "unknown"
            status = 404
        else:
            zone = ZoneInfo(settings.DISPLAY_TIME_ZONE)
            context["agent"] = {
                "name": reseller.name,
                "code": reseller.code,
                "since": timezone.localtime(reseller.created_at, zone).date(),
            }
            context["outcome"] = "authorised" if reseller.active else "suspended"
    response = render(request, "web/verify_agent.html", context, status=status)
    return _unshared(response, retry_after)
