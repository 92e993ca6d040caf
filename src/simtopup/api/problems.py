"""RFC 9457 problem details for every API error."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.utils.translation import gettext as _
from ninja.errors import AuthenticationError, HttpError, ValidationError

from simtopup.api.schemas import Problem
from simtopup.core import requestid
from simtopup.core.errors import DomainError
from simtopup.core.http import in_request_language
from simtopup.core.unavailable import RETRY_AFTER_SECONDS, database_unavailable, note_unavailable

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
        "method_not_allowed": _("Method not allowed"),
        "database_unavailable": _("Service briefly unavailable"),
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
    # The id of the request (core/requestid.py), also in the X-Request-Id header: what a
    # caller quotes to support, and what finds the request's log lines.
    if request_id := requestid.current():
        body["request_id"] = request_id
    response = HttpResponse(
        json.dumps(body, ensure_ascii=False), status=status, content_type=CONTENT_TYPE
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def is_problem(response: HttpResponseBase) -> bool:
    return str(response.get("Content-Type", "")).startswith(CONTENT_TYPE)


def not_found() -> HttpResponse:
    return problem(404, "not_found", _("There is nothing here."))


def method_not_allowed(allow: str) -> HttpResponse:
    return problem(
        405,
        "method_not_allowed",
        _("This address does not take this method; the Allow header lists the ones it takes."),
        headers={"Allow": allow},
    )


def server_error() -> HttpResponse:
    return problem(500, "server_error", _("Something went wrong on our side. Please try again."))


def unavailable() -> HttpResponse:
    """503 ``database_unavailable``: the database is briefly out of reach (a restart, a
    failover); the same request can be sent again after ``Retry-After`` seconds."""
    return problem(
        503,
        "database_unavailable",
        _("The service is briefly unavailable, try again in a moment."),
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def for_exception(request: HttpRequest, exc: BaseException | None) -> HttpResponse:
    """The problem for an exception no handler answered: 503 when the database is out of
    reach (logged here, once, as a warning), else 500 (the caller logs the traceback)."""
    with in_request_language(request):
        if exc is not None and database_unavailable(exc):
            response = unavailable()
            note_unavailable(request, exc, response)
            return response
        return server_error()


# What a plain error response says about its body, which its problem document replaces.
_BODY_HEADERS = frozenset({"content-type", "content-length"})


def for_response(request: HttpRequest, response: HttpResponseBase) -> HttpResponse:
    """The problem document for an error response some layer made in HTML or plain text
    (Django's 404 page, ninja's bare 405, a debug page)."""
    status = response.status_code
    with in_request_language(request):
        if status == 404:
            answer = not_found()
        elif status == 405:
            answer = method_not_allowed(str(response.get("Allow", "")))
        elif status == 413:
            answer = problem(413, "payload_too_large", _("The request body is larger than 1 MiB."))
        elif status == 500:
            answer = server_error()
        else:
            answer = problem(
                status,
                "http_error",
                _("The request was refused (HTTP %(status)s).") % {"status": status},
            )
    # The rest stays: Allow, Retry-After, Vary, Content-Language, what inner layers set.
    for name, value in response.items():
        if name.lower() not in _BODY_HEADERS and name not in answer:
            answer[name] = value
    answer.cookies = response.cookies
    if getattr(response, "_has_been_logged", False):
        answer._has_been_logged = True  # type: ignore[attr-defined]  # django.utils.log
    return answer


def document(schema: dict[str, Any]) -> None:
    """Make the OpenAPI document say what the API sends: every error response is
    ``application/problem+json`` (ninja writes its renderer's ``application/json``), and every
    operation can answer 503 ``database_unavailable`` with ``Retry-After``."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    if "Problem" not in components:
        definition = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(definition.pop("$defs", {}))
        components["Problem"] = definition
    problem_content = {CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    retry_after = {
        "description": "Seconds to wait before sending the same request again.",
        "schema": {"type": "integer", "minimum": 1},
    }
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            for status, response in responses.items():
                content = response.get("content")
                if int(status) >= 400 and content and "application/json" in content:
                    content[CONTENT_TYPE] = content.pop("application/json")
            key = "503" if "503" in responses else 503
            unavailable = responses.setdefault(key, {"description": "Service Unavailable"})
            unavailable.setdefault("content", dict(problem_content))
            unavailable.setdefault("headers", {})["Retry-After"] = retry_after
            note = (
                "`database_unavailable`: the database is briefly out of reach (a restart, a "
                "failover). Send the same request again after `Retry-After` seconds (with the "
                "same `Idempotency-Key`, a top-up or an order is still made only once)."
            )
            if note not in unavailable["description"]:
                unavailable["description"] += " — " + note


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
            return not_found()
        # OperationalError / InterfaceError of a database out of reach: 503, one warning.
        response = for_exception(request, exc)
        if response.status_code == 500:
            logger.exception("unhandled API error on %s %s", request.method, request.path)
            response._has_been_logged = True  # type: ignore[attr-defined]  # logged just now
        return response
