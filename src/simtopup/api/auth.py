"""Authentication of API callers."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from ninja.security import APIKeyHeader, HttpBearer

from simtopup.accounts.models import AppToken
from simtopup.accounts.tokens import authenticate_token
from simtopup.core.errors import DomainError
from simtopup.core.signing import HEADER, verify
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

    def authenticate(self, request: HttpRequest, token: str) -> AppToken | None:
        return authenticate_token(token)


class NetworkSignature(APIKeyHeader):
    """``X-Simtopup-Signature`` over the raw body with the network secret.

    An API-key header for OpenAPI's sake, but verified here whether present or not, so a
    missing header is ``unauthenticated`` and a bad one ``invalid_signature`` or
    ``signature_expired`` (all 401 problems).
    """

    param_name = HEADER
    openapi_description = (
        "HMAC-SHA256: \"t=<unix seconds>,v1=<hex HMAC of '<t>.<raw body>' with the network "
        'secret>"; at most 300 s of clock skew.'
    )

    def authenticate(self, request: HttpRequest, key: str | None) -> bool:
        verify(settings.NETWORK_SECRET, key, request.body)
        return True
