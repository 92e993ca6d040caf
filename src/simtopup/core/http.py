"""What every door (API, website) reads of an HTTP request the same way."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.http import HttpRequest
from django.utils import translation


def client_ip(request: HttpRequest) -> str | None:
    """REMOTE_ADDR, or the last hop of ``CLIENT_IP_HEADER`` set by a trusted proxy."""
    if settings.CLIENT_IP_HEADER:
        forwarded = request.META.get(settings.CLIENT_IP_HEADER, "")
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        if hops:
            return hops[-1][:45]
    return request.META.get("REMOTE_ADDR") or None


@contextmanager
def in_request_language(request: HttpRequest) -> Iterator[None]:
    """The request's language, also for an answer made before ``LocaleMiddleware`` ran (an
    outer middleware, the top-up hot path) or after (it leaves its language active)."""
    language = getattr(request, "LANGUAGE_CODE", None) or translation.get_language_from_request(
        request
    )
    with translation.override(language):
        yield
