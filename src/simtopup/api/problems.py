"""RFC 9457 problem details for every API error."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from ninja.errors import AuthenticationError, HttpError, ValidationError

from simtopup.core.errors import DomainError

logger = logging.getLogger(__name__)
PROBLEM_TYPE = "https://simtopup.dev/problems/"
CONTENT_TYPE = "application/problem+json"


def titles() -> dict[str, str]:
    return {
        "validation_error": _("The request is not valid"),
        "malformed_json": _("The body is not valid JSON"),
        "unauthenticated": _("Authentication required"),
        "not_found": _("Not found"),
        "payload_too_large": _("The request body is too large"),
        "insufficient_float": _("Insufficient float"),
        "insufficient_balance": _("Insufficient credit"),
        "reseller_suspended": _("Reseller suspended"),
        "idempotency_key_reused": _("Idempotency key reused"),
        "request_in_progress": _("Request in progress"),
        "server_error": _("Something went wrong on our side"),
        "insufficient_funds": _("Insufficient funds"),
        "invalid_idempotency_key": _("Invalid Idempotency-Key"),
        "http_error": _("The request was refused"),
        "invalid_identifier": _("Not a device ID"),
        "check_digit_mismatch": _("Check digit mismatch"),
        "unknown_device": _("Unknown device"),
        "device_not_rechargeable": _("Card cannot be topped up"),
        "unknown_plan": _("Unknown plan"),
        "duplicate_reference": _("Duplicate reference"),
        "invalid_cursor": _("Invalid cursor"),
        "too_many_records": _("Too many records"),
        "invalid_signature": _("Invalid signature"),
        "signature_expired": _("Signature expired"),
        "unknown_currency": _("Unknown currency"),
        "invalid_amount": _("Invalid amount"),
        "too_many_decimals": _("Too many decimals"),
        "amount_not_positive": _("Amount must be positive"),
        "invalid_name": _("Invalid name"),
        "invalid_discount": _("Invalid discount"),
        "reason_required": _("Reason required"),
        "unknown_quote": _("Unknown quote"),
        "quote_expired": _("Price confirmation expired"),
        "quote_mismatch": _("Quote for another order"),
        "not_device_owner": _("Not the card's owner"),
        "payment_method_unavailable": _("Payment method not available"),
        "payment_method_not_allowed": _("Payment method not allowed"),
        "order_not_cancellable": _("Order cannot be cancelled"),
        "provider_unavailable": _("Payment service unavailable"),
        "payment_refused": _("Payment refused"),
        "invalid_phone": _("Invalid phone number"),
        "invalid_email": _("Invalid email address"),
        "invalid_code": _("Invalid one-time code"),
        "too_many_requests": _("Too many requests"),
        "device_bound_elsewhere": _("Card is in another account"),
        "not_an_esim": _("Not an eSIM"),
        "no_activation_code": _("No activation code"),
        "receipt_not_available": _("No receipt yet"),
        "receipt_unavailable": _("Receipts are unavailable"),
    }


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> HttpResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + code,
        "title": titles().get(code) or _("The request was refused"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    if errors:
        body["errors"] = errors
    response = HttpResponse(
        json.dumps(body, ensure_ascii=False), status=status, content_type=CONTENT_TYPE
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def from_domain_error(exc: DomainError) -> HttpResponse:
    return problem(
        exc.status,
        exc.code,
        str(exc.message),
        errors=[{"field": e.field, "code": e.code, "message": str(e.message)} for e in exc.errors]
        or None,
        headers=exc.headers,
    )


_PYDANTIC_CODES = {
    "missing": "required",
    "null_character": "invalid_characters",
    "extra_forbidden": "unknown_field",
    "string_type": "wrong_type",
    "int_type": "wrong_type",
    "int_parsing": "wrong_type",
    "bool_type": "wrong_type",
    "bool_parsing": "wrong_type",
    "list_type": "wrong_type",
    "dict_type": "wrong_type",
    "model_type": "wrong_type",
    "model_attributes_type": "wrong_type",
    "string_too_short": "too_short",
    "string_too_long": "too_long",
    "too_short": "too_short",
    "too_long": "too_long",
    "greater_than_equal": "too_small",
    "greater_than": "too_small",
    "less_than_equal": "too_large",
    "datetime_parsing": "invalid_datetime",
    "datetime_from_date_parsing": "invalid_datetime",
    "datetime_type": "invalid_datetime",
    "string_pattern_mismatch": "invalid_format",
    "int_from_float": "wrong_type",
}


def _field_name(loc: list[Any] | tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    # ninja prefixes locations with ("body", "payload") or ("query", …)
    if parts and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:]
        if parts and parts[0] in {"payload", "data"}:
            parts = parts[1:]
    return ".".join(parts) or "body"


def validation_problem(exc: ValidationError) -> HttpResponse:
    errors = []
    for err in exc.errors:
        code = _PYDANTIC_CODES.get(str(err.get("type")), "invalid")
        errors.append(
            {
                "field": _field_name(err.get("loc", ())),
                "code": code,
                "message": str(err.get("msg", "")),
            }
        )
    if errors and all(e["field"] == "body" and e["code"] == "required" for e in errors):
        return problem(400, "malformed_json", _("The request needs a JSON body."))
    return problem(
        422, "validation_error", _("Some fields are missing or not valid."), errors=errors
    )


def install(api: Any) -> None:
    """Route every exception the API can raise to a problem document."""

    @api.exception_handler(DomainError)
    def _domain(request: HttpRequest, exc: DomainError) -> HttpResponse:
        return from_domain_error(exc)

    @api.exception_handler(ValidationError)
    def _validation(request: HttpRequest, exc: ValidationError) -> HttpResponse:
        return validation_problem(exc)

    @api.exception_handler(AuthenticationError)
    def _auth(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        return problem(
            401,
            "unauthenticated",
            _("A valid API key or token is required."),
            headers={"WWW-Authenticate": "Bearer"},
        )

    @api.exception_handler(HttpError)
    def _http(request: HttpRequest, exc: HttpError) -> HttpResponse:
        if exc.status_code == 400:
            return problem(400, "malformed_json", _("The body is not valid JSON."))
        if exc.status_code == 404:
            return problem(404, "not_found", _("There is nothing here."))
        return problem(exc.status_code, "http_error", str(exc))

    @api.exception_handler(Exception)
    def _crash(request: HttpRequest, exc: Exception) -> HttpResponse:
        from django.http import Http404

        if isinstance(exc, Http404):
            return problem(404, "not_found", _("There is nothing here."))
        logger.exception("unhandled API error on %s %s", request.method, request.path)
        return problem(
            500, "server_error", _("Something went wrong on our side. Please try again.")
        )
