"""``X-Simtopup-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`` (Stripe's scheme)."""

from __future__ import annotations

import hashlib
import hmac
import time

from django.conf import settings
from django.utils.translation import gettext_lazy as _

from simtopup.core.errors import DomainError

HEADER = "X-Simtopup-Signature"


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(
    secret: str,
    header: str | None,
    body: bytes,
    *,
    tolerance: int | None = None,
    now: float | None = None,
) -> None:
    """Raise a 401 DomainError unless ``header`` is a fresh, valid signature of ``body``."""
    tolerance = settings.SIGNATURE_TOLERANCE_SECONDS if tolerance is None else tolerance
    if not header:
        raise DomainError("unauthenticated", _("The request is not signed."), 401)
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if sep:
            parts.setdefault(key, []).append(value)
    try:
        t = int(parts["t"][0])
    except (KeyError, ValueError):
        raise DomainError(
            "invalid_signature", _("The signature header is malformed."), 401
        ) from None
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, candidate) for candidate in parts.get("v1", [])):
        raise DomainError("invalid_signature", _("The signature does not match the request."), 401)
    current = time.time() if now is None else now
    if abs(current - t) > tolerance:
        raise DomainError(
            "signature_expired", _("The signature is too old (or from the future)."), 401
        )
