"""What every door (API, website) reads of an HTTP request the same way."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.http import HttpRequest
from django.utils import translation
from django.utils.http import url_has_allowed_host_and_scheme


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


def safe_next(request: HttpRequest, fallback: str) -> str:
    """The ``next`` parameter (POST, then GET) if it stays on this site, else ``fallback``:
    the one rule every page that goes back somewhere after a form follows (no open redirect)."""
    return safe_url(request, request.POST.get("next") or request.GET.get("next") or "", fallback)


def safe_url(request: HttpRequest, target: str, fallback: str) -> str:
    """``target`` if it stays on this site (host and scheme), else ``fallback``."""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return fallback
