"""App tokens: issue, authenticate, revoke."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS
from django.db.models import DateTimeField, Field, Model, Q
from django.utils import timezone

from simtopup.accounts.models import AppToken, Customer
from simtopup.core.prepared import aware, column, fetch, table

TOKEN_PREFIX = "st_"
# last_used_at is refreshed at most this often (one write per token per minute, not per call).
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def token_hash(raw: str) -> str | None:
    """The stored hash of ``raw`` if it can be one of our tokens at all, else None. Tokens
    are random 256-bit strings, so a plain SHA-256 lookup is safe."""
    if not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
        return None
    return hash_token(raw)


def live_token_sql(alias: str) -> str:
    """SQL condition: the app token row ``alias`` has the hash given as the next parameter
    and is not revoked. The one definition of a live token, for every statement that
    checks one (the token check below, the balance poll in usage/reads.py): a revoked
    token fails at the next request, nothing caches it."""
    return (
        f"{alias}.{column(AppToken, 'token_hash')} = %s"
        f" AND {alias}.{column(AppToken, 'revoked_at')} IS NULL"
    )


def used_recently(last_used_at: datetime | None, now: datetime) -> bool:
    """True when a token's recorded use is recent enough not to be written again."""
    return last_used_at is not None and now - last_used_at < LAST_USED_RESOLUTION


def issue_token(customer: Customer, name: str = "") -> tuple[str, AppToken]:
    """A new token for ``customer``: (the raw token, shown once; its row)."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = AppToken.objects.create(
        customer=customer, name=name[:100], prefix=raw[:10], token_hash=hash_token(raw)
    )
    return raw, token


def _fields(model: type[Model]) -> list[Field[Any, Any]]:
    fields = [f for f in model._meta.concrete_fields if isinstance(f, Field)]
    # _instance() converts times only; a field with its own conversion needs it added there.
    if any(hasattr(f, "from_db_value") for f in fields):
        raise TypeError(f"{model.__name__} has a field converted on load")
    return fields


@cache
def _token_sql() -> str:
    """The unrevoked token with this hash and its customer: one prepared statement, run on
    every app request (core/prepared.py), instead of compiling a queryset each time."""
    selected = [f"t.{column(AppToken, f.name)}" for f in _fields(AppToken)]
    selected += [f"c.{column(Customer, f.name)}" for f in _fields(Customer)]
    return (
        f"SELECT {', '.join(selected)} FROM {table(AppToken)} t "
        f"JOIN {table(Customer)} c ON c.{column(Customer, 'id')} = t.{column(AppToken, 'customer')}"
        f" WHERE {live_token_sql('t')}"
    )


def _instance[M: Model](model: type[M], values: Sequence[Any]) -> M:
    """A model instance from selected values, times made aware as the ORM would."""
    fields = _fields(model)
    converted = [
        aware(v) if v is not None and isinstance(f, DateTimeField) else v
        for f, v in zip(fields, values, strict=True)
    ]
    return model.from_db(DEFAULT_DB_ALIAS, [f.attname for f in fields], converted)


def authenticate_token(raw: str) -> AppToken | None:
    """The unrevoked token row (with its customer) for ``raw``, or None."""
    hashed = token_hash(raw)
    if hashed is None:
        return None
    rows = fetch("simtopup_app_token", _token_sql(), [hashed])
    if not rows:
        return None
    width = len(_fields(AppToken))
    token = _instance(AppToken, rows[0][:width])
    token.customer = _instance(Customer, rows[0][width:])
    touch(token)
    return token


def touch(token: AppToken) -> None:
    """Record use, cheaply: only when the stored time is a minute old (conditional update)."""
    now = timezone.now()
    if used_recently(token.last_used_at, now):
        return
    AppToken.objects.filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION),
        pk=token.pk,
    ).update(last_used_at=now)
    token.last_used_at = now


def revoke_token(token: AppToken) -> bool:
    """Revoke at once; True if this call revoked it."""
    return bool(
        AppToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
    )


def revoke_customer_token(customer: Customer, token_id: int) -> bool:
    """Revoke one of ``customer``'s live tokens by id; False if there is no such token."""
    return bool(
        AppToken.objects.filter(pk=token_id, customer=customer, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
    )
