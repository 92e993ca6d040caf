"""The reads customers and the network poll all day, answered before the website's stack.

``GET /api/v1/devices/{id}/balance`` (a customer's app, every few seconds while it is open)
and ``GET /network/v1/devices/{iccid}/authorization`` (the policy server, at every data
session) are one SQL statement each (usage/reads.py). Through the whole stack — sessions,
language, CSRF, user and messages middleware, URL resolution past every web pattern,
django-ninja's operation (authentication, response validation) — the Python around that
statement cost several times the statement. This middleware answers them directly, from the
same parts:

- the same checks: the balance statement holds accounts.tokens' live-token condition
  (:func:`~simtopup.usage.reads.device_balance_by_token`, so the token costs no statement of
  its own); the network signature is :func:`~simtopup.api.auth.check_network_signature`;
  the bearer token is read by :func:`~simtopup.api.auth.bearer_token`, as the API reads it;
- the same reads and bodies: :func:`~simtopup.api.app_devices.balance_body` of the same
  read model, :func:`~simtopup.api.network.authorization_answer`, rendered by the API's own
  renderer (``NinjaAPI.create_response``);

and only when the answer is a plain 200. Anything else — no or a malformed token, a revoked
one, a card that is not the caller's or does not exist, a token whose use is due to be
recorded (``last_used_at``, once a minute), an unsigned or stale request, an unknown ICCID,
another method or path — goes on untouched to the API, which answers it as it always has
(problem documents in the request's language). So the API stays the one definition of every
error and of the documented operations (OpenAPI); this adds no behaviour, only speed.
``tests/test_hot_reads.py`` holds the two paths to identical answers.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from simtopup.accounts.tokens import token_hash, used_recently
from simtopup.api.app_devices import balance_body
from simtopup.api.auth import bearer_token, check_network_signature
from simtopup.api.network import authorization_answer
from simtopup.core.errors import DomainError
from simtopup.usage.reads import device_balance_by_token

# The two operations' paths as the API's URL patterns match them (int and str converters).
BALANCE = re.compile(r"/api/v1/devices/([0-9]+)/balance")
AUTHORIZATION = re.compile(r"/network/v1/devices/([^/]+)/authorization")
SIGNATURE = "HTTP_X_SIMTOPUP_SIGNATURE"  # core.signing.HEADER as a WSGI environ key


class HotReadsMiddleware:
    """Placed, like the top-up hot path, after the middleware that sets response headers
    (security, frame options, CSP, problem documents) and before those a bearer-token or
    signed API call has no use for (session, locale, CSRF, user, messages)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        from simtopup.api.urls import api  # the API's renderer and content type

        self.get_response = get_response
        self.api = api

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "GET":
            path = request.path_info
            answer: object = None
            if path.endswith("/balance"):
                match = BALANCE.fullmatch(path)
                if match:
                    answer = balance(request, int(match[1]))
            elif path.endswith("/authorization"):
                match = AUTHORIZATION.fullmatch(path)
                if match:
                    answer = authorization(request, match[1])
            if answer is not None:
                response = self.api.create_response(request, answer, status=200)
                response["Content-Length"] = str(len(response.content))  # as CommonMiddleware
                return response
        return self.get_response(request)


def balance(request: HttpRequest, device_id: int) -> object:
    """The body of a 200 balance answer, or None for the API to answer."""
    raw = bearer_token(request)
    hashed = None if raw is None else token_hash(raw)
    if hashed is None:
        return None
    now = timezone.now()
    found = device_balance_by_token(hashed, device_id, now)
    if found is None:
        return None
    read, last_used_at = found
    if not used_recently(last_used_at, now):
        return None  # the API's token check records the use
    return balance_body(read)


def authorization(request: HttpRequest, iccid: str) -> object:
    """The body of a 200 authorization answer, or None for the API to answer."""
    try:
        check_network_signature(request, request.META.get(SIGNATURE))
    except DomainError:
        return None
    return authorization_answer(iccid)
