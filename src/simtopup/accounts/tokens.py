"""App tokens: issue, authenticate, revoke."""

from __future__ import annotations

import hashlib
import secrets

from django.utils import timezone

from simtopup.accounts.models import AppToken, Customer

TOKEN_PREFIX = "st_"


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
    return (
        AppToken.objects.filter(token_hash=hash_token(raw), revoked_at__isnull=True)
        .select_related("customer")
        .first()
    )


def revoke_token(token: AppToken) -> bool:
    """Revoke at once; True if this call revoked it."""
    return bool(
        AppToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
    )
