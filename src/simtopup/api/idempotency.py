"""``Idempotency-Key`` (docs/api.md): same key + same body → the original response; same key +
another body → 422; while the first request still runs → 409 with ``Retry-After``.

The key is claimed in a short transaction of its own, so a concurrent duplicate sees it at
once; the response is stored in the same transaction as the action's effects, so a crash can
never leave an effect without its stored response. A claim whose request died is taken over
once its lease has run out. The claim, lease, store and replay rule is
:mod:`simtopup.core.idempotency`, shared with the website's "Pay" button; this module
only turns its outcomes into HTTP answers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _

from simtopup.api.problems import CONTENT_TYPE, from_domain_error, problem
from simtopup.core import idempotency
from simtopup.core.errors import DomainError
from simtopup.core.transactions import durable

Action = Callable[[], tuple[int, dict[str, Any]]]


def _json(status: int, body: dict[str, Any] | str) -> HttpResponse:
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    return HttpResponse(
        text, status=status, content_type=CONTENT_TYPE if status >= 400 else "application/json"
    )


def run_once(
    request: HttpRequest,
    scope: str,
    action: Action,
    prepare: Callable[[], object] | None = None,
) -> HttpResponse:
    """Run ``action`` (which returns ``(status, body)``) at most once per idempotency key.

    ``prepare``, if given, runs just before the action's transaction, outside it, once the
    key is ours: the place for slow calls to other services (a payment provider) that must
    not hold database locks. It may raise DomainError like the action.
    """
    key = request.headers.get("Idempotency-Key")
    if key is None:
        try:
            if prepare is not None:
                prepare()
            # Its own transaction, run again if chosen as a lock-conflict victim.
            status, body = durable(action)
        except DomainError as exc:
            return from_domain_error(exc)
        return _json(status, body)
    if not 1 <= len(key) <= 255:
        return problem(
            400,
            "invalid_idempotency_key",
            _("The Idempotency-Key header must be 1–255 characters."),
        )
    fingerprint = idempotency.fingerprint(request.method or "", request.path, request.body)
    lease = timedelta(seconds=settings.IDEMPOTENCY_LEASE_SECONDS)
    outcome = idempotency.claim(
        scope, key, fingerprint, method=request.method or "", path=request.path, lease=lease
    )
    if isinstance(outcome, idempotency.Mismatch):
        return problem(
            422,
            "idempotency_key_reused",
            _("This Idempotency-Key was already used with a different request."),
        )
    if isinstance(outcome, idempotency.Replay):
        response = _json(outcome.status, outcome.body)
        response["Idempotent-Replayed"] = "true"
        return response
    if isinstance(outcome, idempotency.InProgress):
        return _in_progress()
    record = outcome.record
    try:
        if prepare is not None:
            prepare()

        def act_and_store() -> tuple[int, dict[str, Any]]:
            status, body = action()
            idempotency.store(record, status, body)
            return status, body

        # The effect and its stored answer in one transaction, run again if chosen as a
        # lock-conflict victim (core/transactions.py).
        status, body = durable(act_and_store)
    except DomainError as exc:
        response = from_domain_error(exc)
        if exc.status >= 500:
            # A temporary failure (e.g. the payment provider is unreachable): nothing was done,
            # so the caller's retry with the same key must run again, not replay this answer.
            idempotency.release(record)
            return response
        try:
            with transaction.atomic(durable=True):
                idempotency.store(record, exc.status, response.content.decode())
        except idempotency.LeaseLost:
            # Taken over meanwhile (e.g. our duplicate_reference is the other's success).
            return _in_progress()
        return response
    except idempotency.LeaseLost:
        return _in_progress()
    except Exception:
        # Let a retry run the request again right away instead of waiting for the lease.
        idempotency.release(record)
        raise
    return _json(status, body)


def _in_progress() -> HttpResponse:
    return problem(
        409,
        "request_in_progress",
        _("A request with this Idempotency-Key is still being processed. Retry shortly."),
        headers={"Retry-After": "1"},
    )
