"""Hooks the one-statement reseller sale (:mod:`simtopup.resellers.fast_sale`) into
``POST /reseller/v1/topups`` on PostgreSQL.

A middleware, so that a sale it takes skips what a bearer-key API call has no use for
(session, locale, CSRF, user, messages, ninja's parsing). It only turns HTTP into a
:class:`~simtopup.resellers.fast_sale.Sale` and the answer back into HTTP; a request of any
other shape, or one the sale hands back, goes on untouched to the general path
(:mod:`simtopup.api.reseller`), which gives every error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse

from simtopup.core.idempotency import fingerprint
from simtopup.resellers import fast_sale
from simtopup.resellers.fast_sale import enabled

__all__ = ["FastTopupMiddleware", "enabled", "try_topup"]

PATH = "/reseller/v1/topups"
# TopupIn's limits (api/schemas.py); anything else goes to the general path to be refused.
FIELDS = {"device": 128, "plan": 40, "reference": 100}


def _fields(body: bytes) -> tuple[dict[str, Any], dict[str, str]] | None:
    """The parsed body and its three fields, stripped as TopupIn strips them, if the body is
    a plainly valid TopupIn; else None."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.keys() != FIELDS.keys():
        return None
    fields: dict[str, str] = {}
    for name, limit in FIELDS.items():
        value = data[name]
        if not isinstance(value, str):
            return None
        value = value.strip()
        if not 1 <= len(value) <= limit or "\x00" in value:
            return None
        fields[name] = value
    return data, fields


def _sale(request: HttpRequest) -> fast_sale.Sale | None:
    """The sale this request asks for, if it is plainly well formed; else None."""
    if request.content_type != "application/json":
        return None
    # ninja's HttpBearer: the scheme, one space, the rest is the token.
    scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    key = request.META.get("HTTP_IDEMPOTENCY_KEY")
    if key is not None and not 1 <= len(key) <= 255:
        return None
    parsed = _fields(request.body)
    if parsed is None:
        return None
    data, fields = parsed
    return fast_sale.Sale(
        api_key=token,
        device=fields["device"],
        plan=fields["plan"],
        reference=fields["reference"],
        idempotency_key=key,
        fingerprint=(
            fingerprint(request.method or "", request.path, request.body, data)
            if key is not None
            else ""
        ),
        path=request.path,
    )


def try_topup(request: HttpRequest) -> HttpResponse | None:
    """The sale's 201, or None: nothing happened (the hand-over is logged and counted) and
    the general path must answer."""
    sale = _sale(request)
    if sale is None:
        fast_sale.fallback("request_shape")
        return None
    body = fast_sale.sell(sale)
    if body is None:
        return None
    return HttpResponse(body, status=201, content_type="application/json")


class FastTopupMiddleware:
    """Placed after the middleware that set response headers (security, frame options, CSP)
    and before those a bearer-key API call has no use for (session, locale, CSRF, user,
    messages); a request the hot path does not take goes on through them untouched."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        if request.method == "POST" and request.path_info == PATH and enabled():
            response = try_topup(request)
            if response is not None:
                return response
        return self.get_response(request)
