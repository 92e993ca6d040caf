"""The request id: one short string that names one HTTP request everywhere it left a trace.

:class:`RequestIdMiddleware` (the outermost layer, settings.MIDDLEWARE) takes a sane incoming
``X-Request-Id`` — 1 to 64 characters of ``A-Z a-z 0-9 . _ : -``, e.g. the one a proxy or
the caller made — or makes one (a uuid4 in hex), and

- keeps it in a context variable for the request's duration (:func:`current`): the JSON log
  lines (core/logformat.py), problem documents (api/problems.py) and reseller webhooks queued
  by the request (resellers/webhooks.py) read it there;
- sets it as ``request.request_id`` and writes it back into ``META["HTTP_X_REQUEST_ID"]``, so
  code reading the header sees the checked value, never a refused one;
- sends it back as the response's ``X-Request-Id``.

An id that is refused (too long, other characters: a header injected into logs, a 10 kB
value) is replaced, not answered with an error: the id is for tracing, never a reason to fail.
The cost is a regular-expression match or a uuid4 per request, so it sits in front of the
reseller top-up hot path too.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.http import HttpRequest, HttpResponse
from django.utils.log import log_response

HEADER = "X-Request-Id"
META_KEY = "HTTP_X_REQUEST_ID"
MAX_LENGTH = 64
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,64}")

_current: ContextVar[str] = ContextVar("simtopup_request_id", default="")


def current() -> str:
    """The id of the request being served ("" outside one: the worker, a command)."""
    return _current.get()


def sane(value: str | None) -> str | None:
    """``value`` if it is usable as a request id, else None."""
    if value is not None and _SANE.fullmatch(value):
        return value
    return None


def new() -> str:
    return uuid.uuid4().hex


@contextmanager
def bound(request_id: str) -> Iterator[str]:
    """Run a block as part of request ``request_id`` (a task carrying on a request's work)."""
    token = _current.set(sane(request_id) or "")
    try:
        yield _current.get()
    finally:
        _current.reset(token)


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = sane(request.META.get(META_KEY)) or new()
        request.META[META_KEY] = request_id
        request.request_id = request_id  # type: ignore[attr-defined]
        token = _current.set(request_id)
        try:
            response = self.get_response(request)
            if response.status_code >= 400:
                # Django logs an error answer ("Not Found: /path") once the middleware has
                # returned, outside the request's id; logged here, the line carries it.
                log_response(
                    "%s: %s",
                    response.reason_phrase,
                    request.path,
                    response=response,
                    request=request,
                )
        finally:
            _current.reset(token)
        response[HEADER] = request_id
        return response
