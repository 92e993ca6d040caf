"""Airalo's answer shapes, and every door-level error of ``/partner/v2/`` in them.

Airalo answers ``{"data": …, "meta": {"message": …}}``; a refused parameter is 422 with the
field's message in ``data`` and ``"the parameter is invalid"``; a business refusal is 422
``{"code": <number>, "reason": …}``; an unknown ICCID is 404 with ``data: []`` and the
message ``messages.resource_not_found`` (Airalo's own wording, which clients match). Their
API answers in English, and so does this one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import translation
from django.views.decorators.csrf import csrf_exempt

from simtopup.core.errors import DomainError
from simtopup.core.unavailable import RETRY_AFTER_SECONDS, database_unavailable, note_unavailable

logger = logging.getLogger(__name__)

INVALID = "the parameter is invalid"
NOT_FOUND = "messages.resource_not_found"
UNAUTHENTICATED = (
    "Authentication failed. The access token is missing, expired or revoked: request a new "
    "token with your client_id and client_secret."
)

# Airalo's business error codes (their "Error handling" page) that our refusals map to.
INSUFFICIENT_CREDIT = 11
INVALID_CHECKSUM = 14
TOPUP_DISABLED = 23
BAD_REQUEST = 43
UNEXPECTED = 53


def answer(status: int, body: Any, headers: dict[str, str] | None = None) -> HttpResponse:
    response = HttpResponse(
        json.dumps(body, ensure_ascii=False), status=status, content_type="application/json"
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def success(data: Any, status: int = 200, **extra: Any) -> HttpResponse:
    return answer(status, {**extra, "data": data, "meta": {"message": "success"}})


def message(status: int, text: str, data: Any = None, **meta: Any) -> HttpResponse:
    return answer(status, {"data": [] if data is None else data, "meta": {"message": text, **meta}})


def invalid(fields: dict[str, str]) -> HttpResponse:
    """422: Airalo's answer to a request whose parameters are refused, by field."""
    return message(422, INVALID, fields)


def business(code: int, reason: str, status: int = 422) -> HttpResponse:
    return answer(status, {"code": code, "reason": reason})


def not_found() -> HttpResponse:
    return message(404, NOT_FOUND)


def unauthenticated() -> HttpResponse:
    return message(401, UNAUTHENTICATED)


def unexpected(status: int = 500) -> HttpResponse:
    return business(
        UNEXPECTED,
        "Something unexpected happened. We're working to resolve the issue. Please try again "
        "later.",
        status,
    )


def for_exception(request: HttpRequest, exc: BaseException | None) -> HttpResponse:
    """The answer to an exception no view caught (the root URLconf's handler500 asks, for a
    crash in a middleware layer under /partner/): 503 while the database is out of reach,
    else 500, in Airalo's shape."""
    if exc is not None and database_unavailable(exc):
        response = unexpected(503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        note_unavailable(request, exc, response)
        return response
    return unexpected()


def english(exc: DomainError) -> str:
    with translation.override("en"):
        return str(exc.message)


View = Callable[..., HttpResponse]


def endpoint(*methods: str) -> Callable[[View], View]:
    """A partner API view: other methods answer 405 (with ``Allow``), a crash 500 and an
    unreachable database 503 with ``Retry-After`` — all in Airalo's shape, never the
    website's pages or the JSON API's problem documents. No CSRF: bearer tokens and client
    credentials, no cookies."""

    def decorate(view: View) -> View:
        @wraps(view)
        def run(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                allowed = ", ".join(methods)
                refused = message(
                    405,
                    f"The {request.method} method is not supported for this route. "
                    f"Supported methods: {allowed}.",
                )
                refused["Allow"] = allowed
                return refused
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > settings.MAX_REQUEST_BYTES:
                return business(
                    BAD_REQUEST,
                    "Bad request. The request body is larger than 1 MiB. Please check your "
                    "input and try again.",
                    413,
                )
            try:
                # Airalo answers in English unless asked for a language (Accept-Language);
                # without the header the site's default language would apply.
                if "HTTP_ACCEPT_LANGUAGE" in request.META:
                    return view(request, *args, **kwargs)
                with translation.override("en"):
                    return view(request, *args, **kwargs)
            except Exception as exc:
                if not database_unavailable(exc):
                    logger.exception("partner API %s %s failed", request.method, request.path)
                return for_exception(request, exc)

        return csrf_exempt(run)

    return decorate


@endpoint("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
def unknown_path(request: HttpRequest) -> HttpResponse:
    """Any other path under /partner/: the partner API's 404, not the website's page."""
    return not_found()
