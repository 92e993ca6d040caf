"""``X-Simtopup-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`` (Stripe's scheme).

Several ``v1`` values may be sent (one per secret while a secret is being rotated); the
signature holds if any of them matches. The timestamp is checked only after the MAC, so a
forger learns nothing about the clock from the error code.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

from django.conf import settings
from django.utils.translation import gettext_lazy as _

from simtopup.core.errors import DomainError

HEADER = "X-Simtopup-Signature"
# Unix seconds as plain ASCII digits (int() would also take "+1", "1_000" or non-ASCII digits).
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX_MAC = re.compile(r"[0-9a-fA-F]{64}")


def _mac(secret: str, timestamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = str(int(time.time()) if timestamp is None else timestamp)
    return f"t={t},v1={_mac(secret, t, body)}"


def verify(
    secret: str,
    header: str | None,
    body: bytes,
    *,
    tolerance: int | None = None,
    now: float | None = None,
) -> None:
    """Raise a 401 DomainError unless ``header`` is a fresh, valid signature of ``body``:
    ``unauthenticated`` (no header), ``invalid_signature`` (malformed or not matching) or
    ``signature_expired`` (valid, but more than ``tolerance`` seconds from now, either way).
    """
    tolerance = settings.SIGNATURE_TOLERANCE_SECONDS if tolerance is None else tolerance
    if not header or not header.strip():
        raise DomainError("unauthenticated", _("The request is not signed."), 401)
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if sep:
            parts.setdefault(key, []).append(value.strip())
    timestamps = parts.get("t", [])
    candidates = [v.lower() for v in parts.get("v1", []) if _HEX_MAC.fullmatch(v)]
    if len(timestamps) != 1 or not _TIMESTAMP.fullmatch(timestamps[0]) or not candidates:
        raise DomainError("invalid_signature", _("The signature header is malformed."), 401)
    expected = _mac(secret, timestamps[0], body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise DomainError("invalid_signature", _("The signature does not match the request."), 401)
    current = time.time() if now is None else now
    if abs(current - int(timestamps[0])) > tolerance:
        raise DomainError(
            "signature_expired", _("The signature is too old (or from the future)."), 401
        )
