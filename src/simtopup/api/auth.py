"""Authentication of API callers."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from ninja.security import APIKeyHeader, HttpBearer

from simtopup.accounts.models import AppToken
from simtopup.accounts.tokens import authenticate_token
from simtopup.core.errors import DomainError
from simtopup.core.signing import HEADER, request_target, verify
from simtopup.resellers.actions import authenticate
from simtopup.resellers.models import Reseller


class ResellerKey(HttpBearer):
    """``Authorization: Bearer <api key>`` of an active reseller."""

    def authenticate(self, request: HttpRequest, token: str) -> Reseller | None:
        reseller = authenticate(token)
        if reseller is not None and not reseller.active:
            raise DomainError("reseller_suspended", _("This reseller account is suspended."), 403)
        return reseller


class AppBearer(HttpBearer):
    """``Authorization: Bearer <app token>`` of a customer. ``request.auth`` is the
    :class:`~simtopup.accounts.models.AppToken` (its ``customer`` loaded)."""

    def __call__(self, request: HttpRequest) -> AppToken | None:
        token = bearer_token(request)  # read as the hot path reads it (api/hot_reads.py)
        return None if token is None else self.authenticate(request, token)

    def authenticate(self, request: HttpRequest, token: str) -> AppToken | None:
        return authenticate_token(token)


class NetworkSignature(APIKeyHeader):
    """``X-Simtopup-Signature`` over the request (method, path with query, timestamp, raw body)
    with the network secret.

    An API-key header for OpenAPI's sake, but verified here whether present or not, so a
    missing header is ``unauthenticated`` and a bad one ``invalid_signature`` or
    ``signature_expired`` (all 401 problems).
    """

    param_name = HEADER
    openapi_description = (
        'HMAC-SHA256 with the network secret: "t=<unix seconds>,v2=<hex HMAC of '
        "'<t>.<METHOD>.<path with query, as sent>.<raw body>'>\"; at most 300 s of clock skew. "
        "Deprecated for one release: v1=<hex HMAC of '<t>.<raw body>'>, on POST only."
    )

    def authenticate(self, request: HttpRequest, key: str | None) -> bool:
        check_network_signature(request, key)
        return True


def check_network_signature(request: HttpRequest, header: str | None) -> None:
    """Raise a 401 DomainError unless ``header`` signs this request — method, path with query
    as sent, raw body — with the network secret (core/signing.py). The one check of the
    network API, its operations' and the hot path's (api/hot_reads.py)."""
    verify(
        settings.NETWORK_SECRET, header, request.method or "", request_target(request), request.body
    )


def bearer_token(request: HttpRequest) -> str | None:
    """The token of ``Authorization: Bearer <token>`` as django-ninja's HttpBearer reads it
    (scheme in any case, the token everything after the first space); None without one."""
    value = request.META.get("HTTP_AUTHORIZATION")
    if not value:
        return None
    scheme, _space, token = value.partition(" ")
    return token if scheme.lower() == "bearer" else None
