"""Request-bound network signatures (docs/api.md, "Signatures"): v2 signs the method, the path
with its query as sent, the timestamp and the body, so a header made for one request opens no
other; the deprecated v1 (timestamp and body) still opens a POST, never a GET. The hot path
(api/hot_reads.py) and the API answer every signed request alike."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.utils import translation

from simtopup.core.errors import DomainError
from simtopup.core.signing import sign, sign_body, verify
from tests.support import MB, Actors, post_json
from tests.test_hot_reads import get, seen

USAGE = "/network/v1/usage"
SECRET = "a-test-secret"


def authorization_path(number: str) -> str:
    return f"/network/v1/devices/{number}/authorization"


def recipe_v2(secret: str, t: int, method: str, path: str, body: bytes) -> str:
    """docs/api.md's recipe, written out here rather than taken from core.signing."""
    message = f"{t}.{method}.{path}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def recipe_v1(secret: str, t: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


# --- core.signing -----------------------------------------------------------------------------


def test_sign_follows_the_documented_recipe() -> None:
    t = 1_795_680_000
    path = "/network/v1/devices/8986/authorization?x=1&y=%20"
    assert sign(SECRET, "get", path, b"", t) == f"t={t},v2={recipe_v2(SECRET, t, 'GET', path, b'')}"
    body = b'{"records":[]}'
    both = sign(SECRET, "POST", USAGE, body, t, with_v1=True)
    assert both == (
        f"t={t},v1={recipe_v1(SECRET, t, body)},v2={recipe_v2(SECRET, t, 'POST', USAGE, body)}"
    )


def _code(header: str, method: str, path: str, body: bytes, now: float) -> str:
    try:
        verify(SECRET, header, method, path, body, tolerance=300, now=now)
    except DomainError as exc:
        return exc.code
    return "ok"


@pytest.mark.parametrize(
    ("make", "method", "path", "body", "expected"),
    [
        (lambda t: sign(SECRET, "GET", "/a", b"", t), "GET", "/a", b"", "ok"),
        (lambda t: sign(SECRET, "GET", "/a", b"", t), "GET", "/b", b"", "invalid_signature"),
        (
            lambda t: sign(SECRET, "GET", "/a?x=1", b"", t),
            "GET",
            "/a?x=2",
            b"",
            "invalid_signature",
        ),
        (lambda t: sign(SECRET, "GET", "/a?x=1", b"", t), "GET", "/a", b"", "invalid_signature"),
        (lambda t: sign(SECRET, "GET", "/a", b"", t), "HEAD", "/a", b"", "invalid_signature"),
        (lambda t: sign(SECRET, "POST", "/a", b"{}", t), "PUT", "/a", b"{}", "invalid_signature"),
        (lambda t: sign(SECRET, "POST", "/a", b"{}", t), "POST", "/a", b"{} ", "invalid_signature"),
        (lambda t: sign_body(SECRET, b"", t), "GET", "/a", b"", "invalid_signature"),
        (lambda t: sign_body(SECRET, b"{}", t), "PUT", "/a", b"{}", "invalid_signature"),
        (lambda t: sign_body(SECRET, b"{}", t), "POST", "/a", b"{}", "ok"),
        (lambda t: sign_body(SECRET, b"{}", t), "post", "/a", b"{}", "ok"),
        (lambda t: sign_body(SECRET, b"{}", t - 301), "POST", "/a", b"{}", "signature_expired"),
        (lambda t: sign(SECRET, "GET", "/a", b"", t - 301), "GET", "/a", b"", "signature_expired"),
        (lambda t: sign(SECRET, "GET", "/a", b"", t + 301), "GET", "/a", b"", "signature_expired"),
        (
            lambda t: (
                sign(SECRET, "GET", "/a", b"", t).upper().replace("T=", "t=").replace("V2", "v2")
            ),
            "GET",
            "/a",
            b"",
            "ok",
        ),
        # Both schemes: any acceptable one that matches is enough; v1 is not acceptable on GET.
        (lambda t: sign(SECRET, "GET", "/a", b"", t, with_v1=True), "GET", "/a", b"", "ok"),
        (
            lambda t: f"t={t},v1={recipe_v1(SECRET, t, b'')},v2={'0' * 64}",
            "GET",
            "/a",
            b"",
            "invalid_signature",
        ),
        (
            lambda t: f"t={t},v1={recipe_v1(SECRET, t, b'{}')},v2={'0' * 64}",
            "POST",
            "/a",
            b"{}",
            "ok",
        ),
        (
            lambda t: f"t={t},v1={'0' * 64},v2={recipe_v2(SECRET, t, 'POST', '/a', b'{}')}",
            "POST",
            "/a",
            b"{}",
            "ok",
        ),
        (lambda t: f"t={t}", "GET", "/a", b"", "invalid_signature"),
        (
            lambda t: f"t={t},v3={recipe_v2(SECRET, t, 'GET', '/a', b'')}",
            "GET",
            "/a",
            b"",
            "invalid_signature",
        ),
        (lambda t: "", "GET", "/a", b"", "unauthenticated"),
    ],
)
def test_verify(
    make: Callable[[int], str], method: str, path: str, body: bytes, expected: str
) -> None:
    now = int(time.time())
    assert _code(make(now), method, path, body, now) == expected


def test_a_v1_on_a_get_says_why() -> None:
    now = int(time.time())
    with pytest.raises(DomainError) as caught:
        verify(SECRET, sign_body(SECRET, b"", now), "GET", "/a", b"", now=now)
    assert caught.value.code == "invalid_signature"
    assert caught.value.status == 401
    with translation.override("en"):
        assert "POST only" in str(caught.value.message)


# --- the network API --------------------------------------------------------------------------


@pytest.fixture
def cards(actors: Actors) -> tuple[str, str]:
    """Two cards' ICCIDs, the first with a day bundle: its authorization says allowed."""
    alice = Client(HTTP_AUTHORIZATION=f"Bearer {actors.alice_key}")
    response = post_json(
        alice,
        "/reseller/v1/topups",
        {"device": actors.device.iccid, "plan": "day-1g", "reference": "sig-a"},
    )
    assert response.status_code == 201, response.content
    return actors.device.iccid or "", actors.devices[1].iccid or ""


def _answer(path: str, header: str | None, *, hot: bool) -> tuple[int, bytes, dict[str, str]]:
    headers = {} if header is None else {"X-Simtopup-Signature": header}
    response, _sql = get(path, headers, hot=hot)
    return seen(response)


def _status_and_code(answer: tuple[int, bytes, dict[str, str]]) -> tuple[int, str | None]:
    status, body, _headers = answer
    return status, json.loads(body).get("code") if status != 200 else None


NOW: Callable[[], int] = lambda: int(time.time())  # noqa: E731


def _cases(a: str, b: str) -> list[tuple[str, str, str, tuple[int, str | None]]]:
    """(what, header, request path, expected status and code)"""
    pa, pb = authorization_path(a), authorization_path(b)
    key = settings.NETWORK_SECRET
    t = NOW()
    return [
        ("signed for it", sign(key, "GET", pa, b""), pa, (200, None)),
        ("signed with its query", sign(key, "GET", pa + "?s=1", b""), pa + "?s=1", (200, None)),
        ("another device's signature", sign(key, "GET", pa, b""), pb, (401, "invalid_signature")),
        ("query added", sign(key, "GET", pa, b""), pa + "?s=1", (401, "invalid_signature")),
        (
            "query changed",
            sign(key, "GET", pa + "?s=1", b""),
            pa + "?s=2",
            (401, "invalid_signature"),
        ),
        ("query dropped", sign(key, "GET", pa + "?s=1", b""), pa, (401, "invalid_signature")),
        ("signed as a POST", sign(key, "POST", pa, b""), pa, (401, "invalid_signature")),
        ("v1 on a GET", sign_body(key, b""), pa, (401, "invalid_signature")),
        ("v1 and v2", sign(key, "GET", pa, b"", with_v1=True), pa, (200, None)),
        ("expired", sign(key, "GET", pa, b"", t - 301), pa, (401, "signature_expired")),
        ("another secret", sign("x", "GET", pa, b""), pa, (401, "invalid_signature")),
        ("unsigned", "", pa, (401, "unauthenticated")),
    ]


CASE_NAMES = [
    "signed for it",
    "signed with its query",
    "another device's signature",
    "query added",
    "query changed",
    "query dropped",
    "signed as a POST",
    "v1 on a GET",
    "v1 and v2",
    "expired",
    "another secret",
    "unsigned",
]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_the_hot_path_and_the_api_answer_alike(cards: tuple[str, str], name: str) -> None:
    [(_what, header, path, expected)] = [c for c in _cases(*cards) if c[0] == name]
    hot, general = (_answer(path, header, hot=h) for h in (True, False))
    assert hot == general, name
    assert _status_and_code(general) == expected, general


def test_a_get_signed_for_one_device_does_not_open_another(cards: tuple[str, str]) -> None:
    a, b = cards
    header = sign(settings.NETWORK_SECRET, "GET", authorization_path(a), b"")
    assert (
        Client()
        .get(authorization_path(a), headers={"X-Simtopup-Signature": header})
        .json()["allowed"]
    )
    replayed = Client().get(authorization_path(b), headers={"X-Simtopup-Signature": header})
    assert replayed.status_code == 401
    assert replayed.json()["code"] == "invalid_signature"


def _usage(actors: Actors, rid: str) -> bytes:
    record = {
        "id": rid,
        "iccid": actors.device.iccid,
        "bytes": MB,
        "started_at": "2026-01-01T00:00:00Z",
        "ended_at": "2026-01-01T00:01:00Z",
    }
    return json.dumps({"records": [record]}).encode()


def _post(path: str, body: bytes, header: str) -> Any:
    return Client().post(
        path, data=body, content_type="application/json", headers={"X-Simtopup-Signature": header}
    )


@pytest.mark.parametrize(
    ("make", "path", "expected"),
    [
        (lambda body: sign(settings.NETWORK_SECRET, "POST", USAGE, body), USAGE, 200),
        (lambda body: sign_body(settings.NETWORK_SECRET, body), USAGE, 200),  # deprecated v1
        (lambda body: sign(settings.NETWORK_SECRET, "POST", USAGE, body, with_v1=True), USAGE, 200),
        (lambda body: sign(settings.NETWORK_SECRET, "PUT", USAGE, body), USAGE, 401),
        (lambda body: sign(settings.NETWORK_SECRET, "POST", USAGE, body), USAGE + "?x=1", 401),
        (
            lambda body: sign(settings.NETWORK_SECRET, "POST", USAGE + "?x=1", body),
            USAGE + "?x=1",
            200,
        ),
        (lambda body: sign(settings.NETWORK_SECRET, "POST", USAGE, body, NOW() - 301), USAGE, 401),
    ],
    ids=["v2", "v1", "both", "method", "query-added", "query-signed", "expired"],
)
def test_usage_posts(
    cards: tuple[str, str], actors: Actors, make: Any, path: str, expected: int
) -> None:
    body = _usage(actors, "sig-usage")
    response = _post(path, body, make(body))
    assert response.status_code == expected, response.content
    if expected == 200:
        assert response.json()["accepted"] == 1
    else:
        assert response.json()["code"] in ("invalid_signature", "signature_expired")
