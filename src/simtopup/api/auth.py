"""Authentication of API callers."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from ninja.security import HttpBearer

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


class NetworkSignature:
    """``X-Simtopup-Signature`` over the raw body with the network secret."""

    openapi_type = "apiKey"
    openapi_in = "header"
    openapi_name = HEADER

    def __call__(self, request: HttpRequest) -> bool:
        verify(settings.NETWORK_SECRET, request.headers.get(HEADER), request.body)
        return True
