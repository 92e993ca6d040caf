"""App API — /api/v1: login by one-time code, app tokens.

``POST /auth/code`` always answers 202 for a valid phone number or email, whether an account
exists or not. The code is sent after the commit; if the sender fails, the failure is logged
as an error and the row marked ``send_failed``, and the answer is still 202 (the person asks
again once the per-number limit allows). Every failure to exchange a code is 422
``invalid_code``: wrong, expired, used, burned after too many wrong tries, or never requested.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import translation
from django.utils.translation import gettext as _
from ninja import Query, Router, Schema, Status
from pydantic import Field

from simtopup.accounts.login import exchange_code, parse_identity, request_code
from simtopup.accounts.models import AppToken, Customer
from simtopup.accounts.tokens import revoke_customer_token, revoke_token
from simtopup.api.auth import AppBearer
from simtopup.api.pagination import page
from simtopup.api.schemas import Problem, Strict, Text
from simtopup.api.serializers import rfc3339
from simtopup.core.errors import DomainError
from simtopup.core.http import client_ip

router = Router(auth=AppBearer(), tags=["app: auth"])
ERRORS = {400: Problem, 401: Problem, 404: Problem, 409: Problem, 413: Problem, 422: Problem}
LANGUAGE_CODES = {code for code, _name in settings.LANGUAGES}


class CodeIn(Strict):
    phone: str | None = Field(
        None, min_length=1, max_length=40, description="mobile number; E.164 or national (CN)"
    )
    email: str | None = Field(None, min_length=1, max_length=254)


class CodeOut(Schema):
    status: str = Field(description='always "sent"')
    expires_in: int = Field(description="seconds the code stays valid")


class TokenIn(Strict):
    phone: str | None = Field(None, min_length=1, max_length=40)
    email: str | None = Field(None, min_length=1, max_length=254)
    code: str = Field(min_length=1, max_length=20, description="the 6-digit one-time code")
    device_name: str = Field("", max_length=100, description="shown in the list of tokens")


class CustomerOut(Schema):
    id: int
    phone: str | None
    email: str | None
    language: str


class TokenOut(Schema):
    token: str = Field(description="the bearer token; shown only once")
    customer: CustomerOut


class AppTokenOut(Schema):
    id: int
    name: str
    prefix: str
    created_at: str
    last_used_at: str | None
    current: bool


class AppTokenList(Schema):
    items: list[AppTokenOut]
    next_cursor: str | None


# --- helpers shared by the app routers -----------------------------------------------------


def me(request: HttpRequest) -> Customer:
    token: AppToken = request.auth  # type: ignore[attr-defined]
    return token.customer


def request_language(request: HttpRequest) -> str:
    """The language of a new account: from Accept-Language, else Simplified Chinese."""
    if not request.META.get("HTTP_ACCEPT_LANGUAGE"):
        return "zh-hans"
    lang = translation.get_language_from_request(request)
    return lang if lang in LANGUAGE_CODES else "zh-hans"


def customer_body(customer: Customer) -> dict[str, Any]:
    return {
        "id": customer.pk,
        "phone": customer.phone,
        "email": customer.email,
        "language": customer.language,
    }


# --- endpoints -----------------------------------------------------------------------------


@router.post(
    "/auth/code",
    auth=None,
    response={202: CodeOut, 429: Problem, **ERRORS},
    summary="Send a one-time code by SMS or email",
    description=(
        "Exactly one of `phone` and `email`. Always 202 for a valid address (whether or not an "
        "account exists). Rate limited per address and per client IP: 429 `too_many_requests` "
        "with `Retry-After`."
    ),
)
def send_code(request: HttpRequest, payload: CodeIn) -> Status[dict[str, Any]]:
    identity = parse_identity(payload.phone, payload.email)
    request_code(identity, client_ip(request), request_language(request))
    return Status(202, {"status": "sent", "expires_in": settings.LOGIN_CODE_TTL_SECONDS})


@router.post(
    "/auth/token",
    auth=None,
    response={201: TokenOut, **ERRORS},
    summary="Exchange a one-time code for an app token",
    description=(
        "The first login creates the account. Any failure (wrong, expired, used or burned "
        f"code; {settings.LOGIN_CODE_MAX_ATTEMPTS} wrong tries burn a code) is 422 "
        "`invalid_code`."
    ),
)
def create_token(request: HttpRequest, payload: TokenIn) -> Status[dict[str, Any]]:
    identity = parse_identity(payload.phone, payload.email)
    raw, token = exchange_code(
        identity,
        payload.code,
        device_name=payload.device_name,
        language=request_language(request),
    )
    return Status(201, {"token": raw, "customer": customer_body(token.customer)})


@router.delete(
    "/auth/token",
    response={204: None, **ERRORS},
    summary="Log out: revoke the token of this request",
)
def delete_token(request: HttpRequest) -> HttpResponse:
    revoke_token(request.auth)  # type: ignore[attr-defined]
    return HttpResponse(status=204)


@router.get("/auth/me", response={200: CustomerOut, **ERRORS}, summary="The logged-in customer")
def get_me(request: HttpRequest) -> dict[str, Any]:
    return customer_body(me(request))


@router.get(
    "/auth/tokens",
    response={200: AppTokenList, **ERRORS},
    summary="My live app tokens (logged-in devices), newest first",
)
def list_tokens(
    request: HttpRequest,
    cursor: Text | None = Query(None, max_length=40),
    limit: int = Query(50, ge=1, le=200),
) -> dict[str, Any]:
    current: AppToken = request.auth  # type: ignore[attr-defined]
    rows, next_cursor = page(
        AppToken.objects.filter(customer=current.customer, revoked_at__isnull=True),
        cursor,
        limit,
    )
    return {
        "items": [
            {
                "id": t.pk,
                "name": t.name,
                "prefix": t.prefix,
                "created_at": rfc3339(t.created_at),
                "last_used_at": rfc3339(t.last_used_at),
                "current": t.pk == current.pk,
            }
            for t in rows
        ],
        "next_cursor": next_cursor,
    }


@router.delete(
    "/auth/tokens/{int:token_id}",
    response={204: None, **ERRORS},
    summary="Revoke one of my tokens (log a device out)",
)
def delete_customer_token(request: HttpRequest, token_id: int) -> HttpResponse:
    if not revoke_customer_token(me(request), token_id):
        raise DomainError("not_found", _("There is no such token."), 404)
    return HttpResponse(status=204)
