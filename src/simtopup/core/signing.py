"""``X-Simtopup-Signature`` (docs/api.md, "Signatures"): Stripe's header layout, bound to the
whole request.

``t=<unix>,v2=<hex HMAC-SHA256 of "<t>.<METHOD>.<PATH>.<body>">`` — METHOD upper case, PATH the
request's path with its query string as sent (:func:`request_target`), body the raw bytes
(empty for a GET). A signature made for one request therefore opens no other: not another
device's URL, not another query, not another method.

Deprecated, accepted for one release: ``v1=<hex HMAC-SHA256 of "<t>.<body>">``, on POST only
(a body-bound request); a v1 signature on any other method is ``invalid_signature``.

The header may carry several schemes and several values of each (one per secret while a secret
is being rotated, or v1 next to v2 while receivers move over); it holds if any acceptable one
matches (constant-time comparisons). The timestamp is checked only after the MAC, so a forger
learns nothing about the clock from the error code.

:func:`sign_body` / :func:`verify_body` are the body-only scheme (``t=…,v1=…``) kept for the
signatures whose own contract is body-only: the sandbox payment gateway's ``Sandbox-Signature``
and the HTTP SMS gateway's requests.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from typing import TYPE_CHECKING

from django.conf import settings
from django.utils.encoding import escape_uri_path
from django.utils.translation import gettext_lazy as _

from simtopup.core.errors import DomainError

if TYPE_CHECKING:
    from django.http import HttpRequest

HEADER = "X-Simtopup-Signature"
# Unix seconds as plain ASCII digits (int() would also take "+1", "1_000" or non-ASCII digits).
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX_MAC = re.compile(r"[0-9a-fA-F]{64}")
_METHOD = re.compile(r"[A-Za-z]{1,20}")


def _hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def mac_v2(secret: str, timestamp: str, method: str, path: str, body: bytes) -> str:
    """The v2 MAC: HMAC-SHA256 of ``<t>.<METHOD>.<PATH>.<body>`` (PATH as UTF-8)."""
    message = b".".join((timestamp.encode(), method.upper().encode(), path.encode(), body))
    return _hmac(secret, message)


def mac_v1(secret: str, timestamp: str, body: bytes) -> str:
    """The deprecated v1 MAC: HMAC-SHA256 of ``<t>.<body>``."""
    return _hmac(secret, timestamp.encode() + b"." + body)


def _timestamp(timestamp: int | None) -> str:
    return str(int(time.time()) if timestamp is None else timestamp)


def sign(
    secret: str,
    method: str,
    path: str,
    body: bytes,
    timestamp: int | None = None,
    *,
    with_v1: bool = False,
) -> str:
    """The header value signing ``METHOD PATH`` (path with query, as sent) with ``body``.
    ``with_v1`` also carries the deprecated body-only v1 (outgoing webhooks, for one
    release, so receivers that still check v1 keep working)."""
    t = _timestamp(timestamp)
    value = f"t={t}"
    if with_v1:
        value += f",v1={mac_v1(secret, t, body)}"
    return value + f",v2={mac_v2(secret, t, method, path, body)}"


def request_target(request: HttpRequest) -> str:
    """PATH of a signature for an incoming request: the path (script name included) as the
    client sent it, percent-encoding only what must be (RFC 3986, upper-case hex, as
    :func:`django.utils.encoding.escape_uri_path`), then ``?`` and the query string byte for
    byte when there is one. The WSGI server hands over a decoded path, so this is its one
    normal form; the paths of the network API need no encoding at all."""
    query = request.META.get("QUERY_STRING", "")
    path = escape_uri_path(request.path)
    return f"{path}?{query}" if query else path


def _parse(header: str | None) -> tuple[str, dict[str, list[str]]]:
    if not header or not header.strip():
        raise DomainError("unauthenticated", _("The request is not signed."), 401)
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if sep:
            parts.setdefault(key, []).append(value.strip())
    timestamps = parts.get("t", [])
    if len(timestamps) != 1 or not _TIMESTAMP.fullmatch(timestamps[0]):
        raise DomainError("invalid_signature", _("The signature header is malformed."), 401)
    macs = {
        scheme: [v.lower() for v in parts.get(scheme, []) if _HEX_MAC.fullmatch(v)]
        for scheme in ("v1", "v2")
    }
    return timestamps[0], macs


def _matches(expected: str, candidates: list[str]) -> bool:
    # Every candidate compared (no early exit), each in constant time.
    found = False
    for candidate in candidates:
        found |= hmac.compare_digest(expected, candidate)
    return found


def _check_fresh(t: str, tolerance: int | None, now: float | None) -> None:
    tolerance = settings.SIGNATURE_TOLERANCE_SECONDS if tolerance is None else tolerance
    current = time.time() if now is None else now
    if abs(current - int(t)) > tolerance:
        raise DomainError(
            "signature_expired", _("The signature is too old (or from the future)."), 401
        )


def verify(
    secret: str,
    header: str | None,
    method: str,
    path: str,
    body: bytes,
    *,
    tolerance: int | None = None,
    now: float | None = None,
) -> None:
    """Raise a 401 DomainError unless ``header`` is a fresh, valid signature of this request
    (``method``, ``path`` with query as sent, raw ``body``): ``unauthenticated`` (no header),
    ``invalid_signature`` (malformed, not matching, or only v1 on a method other than POST) or
    ``signature_expired`` (valid, but more than ``tolerance`` seconds from now, either way).
    """
    t, macs = _parse(header)
    method = method.upper()
    if not _METHOD.fullmatch(method):
        raise DomainError("invalid_signature", _("The signature does not match the request."), 401)
    v2 = macs["v2"]
    v1 = macs["v1"] if method == "POST" else []
    if not v2 and not v1:
        if macs["v1"]:  # v1 alone, on a request it cannot bind
            raise DomainError(
                "invalid_signature",
                _("A v1 signature is accepted on POST only; sign this request with v2."),
                401,
            )
        raise DomainError("invalid_signature", _("The signature header is malformed."), 401)
    ok = _matches(mac_v2(secret, t, method, path, body), v2)
    ok |= _matches(mac_v1(secret, t, body), v1) if v1 else False
    if not ok:
        raise DomainError("invalid_signature", _("The signature does not match the request."), 401)
    _check_fresh(t, tolerance, now)


def sign_body(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """``t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` — the body-only scheme (module doc)."""
    t = _timestamp(timestamp)
    return f"t={t},v1={mac_v1(secret, t, body)}"


def verify_body(
    secret: str,
    header: str | None,
    body: bytes,
    *,
    tolerance: int | None = None,
    now: float | None = None,
) -> None:
    """:func:`verify` for the body-only scheme: a ``v1`` of ``body`` must match."""
    t, macs = _parse(header)
    if not macs["v1"]:
        raise DomainError("invalid_signature", _("The signature header is malformed."), 401)
    if not _matches(mac_v1(secret, t, body), macs["v1"]):
        raise DomainError("invalid_signature", _("The signature does not match the request."), 401)
    _check_fresh(t, tolerance, now)
