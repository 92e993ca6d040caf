"""Web Push to the installed app (RFC 8030 with VAPID, RFC 8292; payload encrypted per
RFC 8291, ``aes128gcm``), through pywebpush.

The application server's P-256 key is derived from ``SIMTOPUP_VAPID_SECRET`` (generated into
the data directory when unset, like the other secrets): the same secret gives the same key,
so subscriptions made against it stay valid across restarts. Endpoints come from browsers:
https only, and hosts resolving to public addresses only (``SIMTOPUP_WEBHOOK_ALLOW_PRIVATE=1``
also allows plain http and private or loopback addresses, for test installations).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import socket
from functools import cache
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings

# The order of the P-256 group.
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@cache
def _private_value(secret: str) -> int:
    digest = int.from_bytes(hashlib.sha256(b"simtopup vapid\0" + secret.encode()).digest())
    return digest % (_P256_ORDER - 1) + 1


def private_key_raw() -> str:
    """The VAPID private key as pywebpush takes it (base64url of the 32-byte scalar)."""
    return _b64url(_private_value(settings.VAPID_SECRET).to_bytes(32))


def public_key() -> str:
    """The application server key the service worker subscribes with (base64url of the
    uncompressed P-256 point)."""
    key = ec.derive_private_key(_private_value(settings.VAPID_SECRET), ec.SECP256R1())
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return _b64url(point)


def vet(endpoint: str) -> str | None:
    """None when a push may go to ``endpoint`` (see the module's doc); else ``refused`` (the
    policy says no: never) or ``lookup_failed`` (its host did not resolve now: try later)."""
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return "refused"
    relaxed = bool(settings.WEBHOOK_ALLOW_PRIVATE)
    if not host or parts.scheme not in (("https", "http") if relaxed else ("https",)):
        return "refused"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return "lookup_failed"
    for *_rest, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip.is_multicast or ip.is_unspecified or not (ip.is_global or relaxed):
            return "refused"
    return None if infos else "lookup_failed"


def endpoint_allowed(endpoint: str) -> bool:
    """Whether a browser's endpoint may be stored: allowed now."""
    return vet(endpoint) is None


def send(endpoint: str, p256dh: str, auth: str, payload: bytes) -> str:
    """Push ``payload`` to one subscription: ``sent``, ``gone`` (404/410: the subscription
    is dead, delete it) or why it failed (retry later)."""
    from pywebpush import WebPushException, webpush  # type: ignore[import-untyped]

    refusal = vet(endpoint)
    if refusal == "refused":
        return "gone"
    if refusal is not None:
        return f"push failed: {refusal}"
    try:
        response = webpush(
            {"endpoint": endpoint, "keys": {"p256dh": p256dh, "auth": auth}},
            payload.decode(),
            vapid_private_key=private_key_raw(),
            vapid_claims={"sub": settings.VAPID_SUBJECT},
            timeout=settings.PUSH_TIMEOUT_SECONDS,
            ttl=86400,
        )
    except WebPushException as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (404, 410):
            return "gone"
        return f"push refused: HTTP {status}" if status else f"push failed: {exc}"[:300]
    except OSError as exc:
        return f"push failed: {exc}"[:300]
    status = int(getattr(response, "status_code", 201) or 0)
    return "sent" if 200 <= status < 300 else f"push refused: HTTP {status}"
