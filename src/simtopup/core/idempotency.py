"""Do a request at most once per key: the claim, its lease, the stored answer and its replay.

Written once for every door that takes a one-time key: the API's ``Idempotency-Key``
(``api/idempotency.py`` turns these outcomes into HTTP answers) and the website's "Pay"
button (``web/customer/topup.py``).

- :func:`claim` inserts the key in a short transaction of its own, so a concurrent duplicate
  sees it at once. A claim whose holder died is taken over once its lease has run out, by a
  compare-and-swap on ``locked_until``: of two late-comers only one wins.
- :func:`store` writes the answer in the caller's transaction, beside the action's effects,
  and only while the lease is still ours (same ``locked_until``, no answer yet): a holder
  whose lease was taken over raises :class:`LeaseLost`, so its transaction, effects
  included, rolls back and the key's effects happen once.
- :func:`release` gives the key back when nothing was done, so a retry runs at once.
- :func:`fingerprint` is what "the same request" means: method, path and the body as
  canonical JSON. The API's general path and the PostgreSQL one-statement sale
  (``resellers/fast_sale.py``, which stores it from SQL) must hash a request alike.

The rows are ``core.models.IdempotencyRecord`` (table ``api_idempotencyrecord``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from simtopup.core.models import IdempotencyRecord


class LeaseLost(Exception):
    """Another request took the key over after our lease ran out; our effects must go."""


@dataclass(frozen=True)
class Claimed:
    """The key is ours until ``record.locked_until``: run the action, then :func:`store`."""

    record: IdempotencyRecord


@dataclass(frozen=True)
class Replay:
    """An earlier request with this key finished: its answer, to give again."""

    status: int
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Mismatch:
    """The key was used with another request (another fingerprint)."""


@dataclass(frozen=True)
class InProgress:
    """An earlier request with this key still holds its lease (or the key just vanished)."""


type Outcome = Claimed | Replay | Mismatch | InProgress


def fingerprint(method: str, path: str, body: bytes, parsed: Any = None) -> str:
    """SHA-256 over method, path and the body as canonical JSON (``parsed``: the body
    already decoded, to spare decoding it again); a body that is not JSON as it came."""
    try:
        data = json.loads(body) if parsed is None else parsed
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = body
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), canonical):
        digest.update(part)
        digest.update(b"\0")
    return digest.hexdigest()


def claim(
    scope: str,
    key: str,
    fingerprint: str,
    *,
    method: str,
    path: str,
    lease: timedelta,
    now: datetime | None = None,
) -> Outcome:
    """Claim ``key`` in ``scope`` for a request whose content hashes to ``fingerprint``."""
    now = now or timezone.now()
    try:
        with transaction.atomic(durable=True):
            record = IdempotencyRecord.objects.create(
                scope=scope,
                key=key,
                method=method,
                path=path[:255],
                request_hash=fingerprint,
                locked_until=now + lease,
            )
        return Claimed(record)
    except IntegrityError:
        pass
    existing = IdempotencyRecord.objects.filter(scope=scope, key=key).first()
    if existing is None:  # pruned or released between our insert and read: retry later
        return InProgress()
    if existing.request_hash != fingerprint:
        return Mismatch()
    if existing.response_status is not None:
        return Replay(existing.response_status, existing.response_body)
    if existing.locked_until >= now:
        return InProgress()
    # The holder's lease ran out (it died half-way, nothing was stored): take over, unless
    # another late-comer changed locked_until first.
    until = now + lease
    took_over = IdempotencyRecord.objects.filter(
        pk=existing.pk, response_status__isnull=True, locked_until=existing.locked_until
    ).update(locked_until=until)
    if not took_over:
        return InProgress()
    existing.locked_until = until
    return Claimed(existing)


def store(record: IdempotencyRecord, status: int, body: dict[str, Any] | str) -> None:
    """Store the answer, in the transaction of the action's effects; :class:`LeaseLost` if
    the key was taken over since our claim (then roll the effects back)."""
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    stored = IdempotencyRecord.objects.filter(
        pk=record.pk, response_status__isnull=True, locked_until=record.locked_until
    ).update(response_status=status, response_body=text)
    if stored != 1:
        raise LeaseLost


def answer(scope: str, key: str) -> Replay | None:
    """The stored answer for ``key``, if a request with it has finished."""
    record = IdempotencyRecord.objects.filter(
        scope=scope, key=key, response_status__isnull=False
    ).first()
    if record is None or record.response_status is None:
        return None
    return Replay(record.response_status, record.response_body)


def release(record: IdempotencyRecord) -> None:
    """Give the key back (nothing was done): a retry may run at once instead of waiting out
    the lease. A key taken over by another request stays theirs."""
    IdempotencyRecord.objects.filter(
        pk=record.pk, response_status__isnull=True, locked_until=record.locked_until
    ).delete()


def prune(older_than: timedelta | None = None) -> int:
    """Forget keys claimed more than ``older_than`` ago (default: IDEMPOTENCY_RETENTION_HOURS;
    run by the janitor)."""
    if older_than is None:
        older_than = timedelta(hours=settings.IDEMPOTENCY_RETENTION_HOURS)
    deleted, _rows = IdempotencyRecord.objects.filter(
        created_at__lt=timezone.now() - older_than
    ).delete()
    return deleted
