"""App tokens: issue, authenticate, revoke."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from simtopup.accounts.models import AppToken, Customer

TOKEN_PREFIX = "st_"
# last_used_at is refreshed at most this often (one write per token per minute, not per call).
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def issue_token(customer: Customer, name: str = "") -> tuple[str, AppToken]:
    """A new token for ``customer``: (the raw token, shown once; its row)."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = AppToken.objects.create(
        customer=customer, name=name[:100], prefix=raw[:10], token_hash=hash_token(raw)
    )
    return raw, token


def authenticate_token(raw: str) -> AppToken | None:
    """The unrevoked token row (with its customer) for ``raw``, or None. Tokens are random
    256-bit strings, so a plain SHA-256 lookup is safe."""
    if not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
        return None
    token = (
        AppToken.objects.filter(token_hash=hash_token(raw), revoked_at__isnull=True)
        .select_related("customer")
        .first()
    )
    if token is not None:
        touch(token)
    return token


def touch(token: AppToken) -> None:
    """Record use, cheaply: only when the stored time is a minute old (conditional update)."""
    now = timezone.now()
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_RESOLUTION:
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
