"""Login by one-time code and app tokens (/api/v1/auth/…), through the real stack."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from datetime import timedelta
from typing import Any, ClassVar
from unittest import mock

import pytest
from django.conf import settings
from django.test import Client, TestCase, override_settings
from django.utils import timezone

from simtopup.accounts.models import AppToken, Customer, LoginCode, RateCounter
from simtopup.notifications.senders import Message, SendError
from tests.customer_support import (
    app_client,
    captured_messages,
    code_in,
    login_customer,
    post_json,
    request_code,
)

PHONE = "+8613800138000"


def ask(body: dict[str, Any], client: Client | None = None, **headers: str) -> Any:
    return post_json(client or Client(), "/api/v1/auth/code", body, **headers)


def exchange(body: dict[str, Any], client: Client | None = None, **headers: str) -> Any:
    return post_json(client or Client(), "/api/v1/auth/token", body, **headers)


def later(seconds: int) -> Any:
    """Move the clock of the login code logic forward."""
    moved = timezone.now() + timedelta(seconds=seconds)
    return mock.patch("django.utils.timezone.now", return_value=moved)


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    return body


# --- the flow -----------------------------------------------------------------------------


def test_it_logs_in_by_phone_and_creates_the_customer(db: None) -> None:
    with captured_messages() as sent:
        response = ask({"phone": "138 0013 8000"})  # national format: region CN
    assert response.status_code == 202, response.content
    assert response.json() == {"status": "sent", "expires_in": 600}
    assert len(sent) == 1
    assert sent[0].channel == "sms"
    assert sent[0].recipient == PHONE
    code = code_in(sent[0])
    assert Customer.objects.count() == 0  # requesting a code creates no account

    response = exchange({"phone": PHONE, "code": code, "device_name": "Pixel 9"})
    assert response.status_code == 201, response.content
    body = response.json()
    customer = Customer.objects.get()
    assert body["customer"] == {
        "id": customer.pk,
        "phone": PHONE,
        "email": None,
        "language": "zh-hans",
    }
    assert customer.last_login_at is not None
    token = AppToken.objects.get()
    assert token.name == "Pixel 9"
    assert token.customer == customer
    me = app_client(body["token"]).get("/api/v1/auth/me")
    assert me.status_code == 200
    assert me.json()["id"] == customer.pk

    # A second login finds the same account and gives a second token.
    token2, again = login_customer(PHONE)
    assert again.pk == customer.pk
    assert token2 != body["token"]
    assert Customer.objects.count() == 1
    assert AppToken.objects.count() == 2


def test_it_logs_in_by_email_lower_cased_in_the_accept_language(db: None) -> None:
    with captured_messages() as sent:
        assert ask({"email": " Li.Wei@Example.COM "}).status_code == 202
    assert sent[0].channel == "email"
    assert sent[0].recipient == "li.wei@example.com"
    response = exchange(
        {"email": "LI.WEI@example.com", "code": code_in(sent[0])}, **{"Accept-Language": "en"}
    )
    assert response.status_code == 201, response.content
    assert response.json()["customer"]["email"] == "li.wei@example.com"
    assert response.json()["customer"]["language"] == "en"
    assert Customer.objects.get().language == "en"


def test_it_keeps_only_a_hash_of_the_code(db: None) -> None:
    code = request_code({"phone": PHONE})
    row = LoginCode.objects.get()
    stored = " ".join(str(getattr(row, f.attname)) for f in LoginCode._meta.concrete_fields)
    assert code not in stored
    expected = hmac.new(
        settings.SECRET_KEY.encode(), f"phone:{PHONE}:{code}".encode(), hashlib.sha256
    ).hexdigest()
    assert row.code_hash == expected
    assert row.expires_at - row.created_at == timedelta(minutes=10)
    assert row.requested_ip == "127.0.0.1"
    assert row.sent_at is not None


def test_it_refuses_an_expired_code(db: None) -> None:
    code = request_code({"phone": PHONE})
    with later(601):
        assert_problem(exchange({"phone": PHONE, "code": code}), 422, "invalid_code")
    assert AppToken.objects.count() == 0
    assert Customer.objects.count() == 0
    with later(590):  # still valid just before the 10 minutes are up
        assert exchange({"phone": PHONE, "code": code}).status_code == 201


def test_it_burns_the_code_after_five_wrong_tries(db: None) -> None:
    code = request_code({"phone": PHONE})
    wrong = f"{(int(code) + 1) % 1000000:06d}"
    for _ in range(5):
        assert_problem(exchange({"phone": PHONE, "code": wrong}), 422, "invalid_code")
    row = LoginCode.objects.get()
    assert row.attempts == 5
    assert row.burned_at is not None
    # Even the right code is refused now, with the same answer.
    assert_problem(exchange({"phone": PHONE, "code": code}), 422, "invalid_code")
    assert AppToken.objects.count() == 0
    assert Customer.objects.count() == 0


def test_it_counts_a_malformed_code_as_a_wrong_try(db: None) -> None:
    request_code({"phone": PHONE})
    assert_problem(exchange({"phone": PHONE, "code": "12ab"}), 422, "invalid_code")
    assert LoginCode.objects.get().attempts == 1


def test_it_spends_a_code_once(db: None) -> None:
    code = request_code({"phone": PHONE})
    assert exchange({"phone": PHONE, "code": code}).status_code == 201
    assert_problem(exchange({"phone": PHONE, "code": code}), 422, "invalid_code")
    assert AppToken.objects.count() == 1


def test_a_new_code_replaces_the_old_one(db: None) -> None:
    old = request_code({"phone": PHONE})
    with later(61):
        new = request_code({"phone": PHONE})
        if new != old:
            assert_problem(exchange({"phone": PHONE, "code": old}), 422, "invalid_code")
        assert exchange({"phone": PHONE, "code": new}).status_code == 201
    assert LoginCode.objects.filter(burned_at__isnull=False).count() == 1


def test_a_code_only_works_for_its_own_phone(db: None) -> None:
    code = request_code({"phone": PHONE})
    request_code({"phone": "+8613900139000"})
    assert_problem(exchange({"phone": "+8613900139000", "code": code}), 422, "invalid_code")


# --- never reveal whether an account exists ------------------------------------------------


def test_answers_are_the_same_for_known_and_unknown_accounts(db: None) -> None:
    login_customer(PHONE)
    with later(61), captured_messages() as sent:
        known = ask({"phone": PHONE})
        unknown = ask({"phone": "+8613700137000"})
    assert known.status_code == unknown.status_code == 202
    assert known.content == unknown.content
    assert [m.recipient for m in sent] == [PHONE, "+8613700137000"]  # both get a code

    # The same request id for both: the problem carries it (core/requestid.py).
    same_id = {"X-Request-Id": "enumeration-check"}
    wrong_known = exchange({"phone": PHONE, "code": "000000"}, **same_id)
    never_asked = {"phone": "+8613600136000", "code": "000000"}
    wrong_unknown = exchange(never_asked, **same_id)
    assert wrong_known.status_code == wrong_unknown.status_code == 422
    assert wrong_known.content == wrong_unknown.content


# --- rate limits ---------------------------------------------------------------------------


def test_it_limits_codes_per_phone_number(db: None) -> None:
    # The limits count in fixed windows: start early in a clock hour so the six-minute walk
    # below stays inside one hourly window whatever the time the suite runs.
    base = timezone.now().replace(minute=1, second=0, microsecond=0)

    def at(seconds: int) -> Any:
        return mock.patch(
            "django.utils.timezone.now", return_value=base + timedelta(seconds=seconds)
        )

    with at(0), captured_messages() as sent:
        assert ask({"phone": PHONE}).status_code == 202
        second = ask({"phone": PHONE})
    body = assert_problem(second, 429, "too_many_requests")
    assert 1 <= int(second["Retry-After"]) <= 60
    assert str(int(second["Retry-After"])) in body["detail"]
    assert len(sent) == 1
    assert LoginCode.objects.count() == 1
    # Another number is not affected.
    with at(1):
        assert ask({"phone": "+8613900139000"}).status_code == 202

    # One a minute, five an hour.
    for minute in range(1, 5):
        with at(61 * minute):
            assert ask({"phone": PHONE}).status_code == 202
    with at(61 * 5), captured_messages() as sent:
        sixth = ask({"phone": PHONE})
    assert_problem(sixth, 429, "too_many_requests")
    assert int(sixth["Retry-After"]) > 60
    assert sent == []
    assert LoginCode.objects.filter(identity=PHONE).count() == 5


@override_settings(LOGIN_CODE_IP_LIMITS=["3/3600"])
def test_it_limits_codes_per_client_ip(db: None) -> None:
    with captured_messages() as sent:
        for n in range(3):
            assert ask({"phone": f"+861380013800{n}"}).status_code == 202
        refused = ask({"email": "new@example.com"})
        other_ip = ask({"phone": "+8613800138009"}, Client(REMOTE_ADDR="10.1.2.3"))
    assert_problem(refused, 429, "too_many_requests")
    assert int(refused["Retry-After"]) >= 1
    assert other_ip.status_code == 202
    assert [m.recipient for m in sent] == [f"+861380013800{n}" for n in range(3)] + [
        "+8613800138009"
    ]
    # The refused request left no trace on the email's own counter.
    assert not RateCounter.objects.filter(key__contains="new@example.com").exists()


@override_settings(LOGIN_CODE_IP_LIMITS=["2/3600"])
def test_an_ipv6_client_is_limited_by_its_64(db: None) -> None:
    for n, addr in enumerate(["2001:db8:1:2::1", "2001:db8:1:2:ffff::9"]):
        response = ask({"phone": f"+861380013800{n}"}, Client(REMOTE_ADDR=addr))
        assert response.status_code == 202
    same_64 = ask({"phone": "+8613800138005"}, Client(REMOTE_ADDR="2001:db8:1:2:abcd::1"))
    assert_problem(same_64, 429, "too_many_requests")
    other_64 = ask({"phone": "+8613800138006"}, Client(REMOTE_ADDR="2001:db8:1:3::1"))
    assert other_64.status_code == 202


@override_settings(LOGIN_CODE_IP_LIMITS=["2/3600"], CLIENT_IP_HEADER="HTTP_X_FORWARDED_FOR")
def test_it_reads_the_client_ip_from_the_trusted_proxy_header(db: None) -> None:
    for n in range(2):
        response = ask({"phone": f"+861380013800{n}"}, **{"X-Forwarded-For": "6.6.6.6, 8.8.8.8"})
        assert response.status_code == 202
    assert_problem(
        ask({"phone": "+8613800138005"}, **{"X-Forwarded-For": "1.1.1.1, 8.8.8.8"}),
        429,
        "too_many_requests",
    )
    assert ask({"phone": "+8613800138006"}, **{"X-Forwarded-For": "9.9.9.9"}).status_code == 202
    assert set(LoginCode.objects.values_list("requested_ip", flat=True)) == {
        "8.8.8.8",
        "9.9.9.9",
    }


# --- tokens --------------------------------------------------------------------------------


def test_a_revoked_token_stops_working_at_once(db: None) -> None:
    token, _customer = login_customer()
    other, _same = login_customer()
    client = app_client(token)
    assert client.get("/api/v1/auth/me").status_code == 200
    assert client.delete("/api/v1/auth/token").status_code == 204
    assert_problem(client.get("/api/v1/auth/me"), 401, "unauthenticated")
    assert_problem(client.get("/api/v1/devices"), 401, "unauthenticated")
    assert_problem(client.delete("/api/v1/auth/token"), 401, "unauthenticated")
    assert app_client(other).get("/api/v1/auth/me").status_code == 200


def test_it_lists_and_revokes_my_tokens_only(db: None) -> None:
    first, alice = login_customer(PHONE)
    second, _ = login_customer(PHONE)
    bob_token, bob = login_customer("+8613900139000")
    response = app_client(second).get("/api/v1/auth/tokens")
    assert response.status_code == 200, response.content
    items = response.json()["items"]
    assert response.json()["next_cursor"] is None
    assert [t["current"] for t in items] == [True, False]
    assert {t["id"] for t in items} == set(alice.tokens.values_list("pk", flat=True))
    assert all(t["prefix"] in (first[:10], second[:10]) for t in items)
    assert "token" not in items[0]
    assert "token_hash" not in items[0]

    bob_token_id = AppToken.objects.get(customer=bob).pk
    assert_problem(
        app_client(second).delete(f"/api/v1/auth/tokens/{bob_token_id}"), 404, "not_found"
    )
    assert app_client(bob_token).get("/api/v1/auth/me").status_code == 200

    first_id = items[1]["id"]
    assert app_client(second).delete(f"/api/v1/auth/tokens/{first_id}").status_code == 204
    assert_problem(app_client(first).get("/api/v1/auth/me"), 401, "unauthenticated")
    assert_problem(app_client(second).delete(f"/api/v1/auth/tokens/{first_id}"), 404, "not_found")
    listed = app_client(second).get("/api/v1/auth/tokens?limit=1").json()
    assert [t["id"] for t in listed["items"]] == [items[0]["id"]]
    assert listed["next_cursor"] is None


def test_it_records_token_use_at_most_once_a_minute(db: None) -> None:
    token, _ = login_customer()
    client = app_client(token)
    client.get("/api/v1/auth/me")
    row = AppToken.objects.get()
    first_use = row.last_used_at
    assert first_use is not None
    client.get("/api/v1/auth/me")
    row.refresh_from_db()
    assert row.last_used_at == first_use
    with mock.patch(
        "simtopup.accounts.tokens.timezone.now", return_value=first_use + timedelta(seconds=61)
    ):
        client.get("/api/v1/auth/me")
    row.refresh_from_db()
    assert row.last_used_at == first_use + timedelta(seconds=61)


def test_garbage_tokens_are_unauthenticated(db: None) -> None:
    for value in ["Bearer nope", "Bearer st_" + "x" * 43, "Basic abc", ""]:
        response = Client(HTTP_AUTHORIZATION=value).get("/api/v1/auth/me")
        assert_problem(response, 401, "unauthenticated")


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"phone": "12345"}, 422, "invalid_phone"),
        ({"phone": "+86 138 0013 800"}, 422, "invalid_phone"),
        ({"phone": "not a number"}, 422, "invalid_phone"),
        ({"phone": "+86 10 1234 5678"}, 422, "invalid_phone"),  # a Beijing landline
        ({"phone": "+1" + "2" * 50}, 422, "validation_error"),
        ({"email": "nobody"}, 422, "invalid_email"),
        ({"email": "a@b"}, 422, "invalid_email"),
        ({"phone": PHONE, "email": "a@example.com"}, 422, "validation_error"),
        ({}, 422, "validation_error"),
        ({"phone": 13800138000}, 422, "validation_error"),
        ({"phone": PHONE, "extra": 1}, 422, "validation_error"),
        ({"phone": None}, 422, "validation_error"),
    ],
)
def test_it_refuses_bad_code_requests(db: None, body: Any, status: int, code: str) -> None:
    with captured_messages() as sent:
        assert_problem(ask(body), status, code)
    assert sent == []
    assert LoginCode.objects.count() == 0
    assert RateCounter.objects.count() == 0


def test_it_refuses_bodies_that_are_not_json(db: None) -> None:
    response = Client().post("/api/v1/auth/code", data="phone=1", content_type="text/plain")
    assert response.status_code in (400, 422)
    assert response["Content-Type"] == "application/problem+json"
    assert LoginCode.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"phone": PHONE}, "validation_error"),
        ({"phone": PHONE, "code": ""}, "validation_error"),
        ({"phone": PHONE, "code": 123456}, "validation_error"),
        ({"phone": "12", "code": "123456"}, "invalid_phone"),
        ({"email": "x", "code": "123456"}, "invalid_email"),
        ({"code": "123456"}, "validation_error"),
        ({"phone": PHONE, "code": "123456", "device_name": "x" * 101}, "validation_error"),
    ],
)
def test_it_refuses_bad_token_requests(db: None, body: Any, code: str) -> None:
    request_code({"phone": PHONE})
    assert_problem(exchange(body), 422, code)
    assert AppToken.objects.count() == 0
    assert Customer.objects.count() == 0
    assert LoginCode.objects.get().attempts == 0


# --- delivery ------------------------------------------------------------------------------


class BrokenSender:
    channels: ClassVar[frozenset[str]] = frozenset({"sms", "email"})

    def send(self, message: Message) -> None:
        raise SendError("provider down")


def test_a_failed_delivery_is_logged_and_the_answer_stays_202(
    db: None, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        override_settings(SMS_SENDER="tests.test_app_auth.BrokenSender"),
        TestCase.captureOnCommitCallbacks(execute=True),
        caplog.at_level(logging.ERROR),
    ):
        response = ask({"phone": PHONE})
    assert response.status_code == 202
    row = LoginCode.objects.get()
    assert row.send_failed is True
    assert row.sent_at is not None
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert failures
    assert "provider down" in str(failures[0].exc_info[1])
    assert PHONE in failures[0].getMessage()


def test_the_console_sender_prints_the_code(db: None, capsys: pytest.CaptureFixture[str]) -> None:
    with override_settings(SMS_SENDER="console"), TestCase.captureOnCommitCallbacks(execute=True):
        assert ask({"phone": PHONE}).status_code == 202
    out = capsys.readouterr().out
    assert PHONE in out
    # Whatever the language of the message, the code is its only run of six digits.
    [code] = re.findall(r"(?<!\d)\d{6}(?!\d)", out.split(PHONE, 1)[1])
    assert exchange({"phone": PHONE, "code": code}).status_code == 201


# --- races, with committed data and real threads ---------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_one_code_sent_ten_times_at_once_logs_in_once() -> None:
    from tests.test_concurrency import run_concurrently

    code = request_code({"phone": PHONE})
    responses = run_concurrently(
        [lambda: exchange({"phone": PHONE, "code": code}) for _ in range(10)], threads=10
    )
    assert sorted(r.status_code for r in responses) == [201] + [422] * 9
    assert AppToken.objects.count() == 1
    assert Customer.objects.count() == 1
    assert LoginCode.objects.get().used_at is not None


@pytest.mark.django_db(transaction=True)
def test_the_first_login_creates_one_customer_whatever_the_race() -> None:
    from simtopup.accounts.login import Identity, _customer_for
    from simtopup.accounts.models import IdentityKind
    from tests.test_concurrency import run_concurrently

    identity = Identity(IdentityKind.EMAIL, "race@example.com")
    customers = run_concurrently(
        [lambda: _customer_for(identity, "en") for _ in range(8)], threads=8
    )
    assert len({c.pk for c in customers}) == 1
    assert Customer.objects.filter(email="race@example.com").count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_code_requests_respect_the_limit() -> None:
    from tests.test_concurrency import run_concurrently

    with override_settings(SMS_SENDER="memory", LOGIN_CODE_IDENTITY_LIMITS=["2/3600"]):
        responses = run_concurrently([lambda: ask({"phone": PHONE}) for _ in range(10)], threads=10)
    assert sorted(r.status_code for r in responses) == [202] * 2 + [429] * 8
    assert LoginCode.objects.count() == 2
    assert RateCounter.objects.get(key=f"code:phone:{PHONE}").count == 2


def test_the_janitor_prunes_old_codes_and_rate_windows(db: None) -> None:
    from simtopup.ops.janitor import run_janitor

    request_code({"phone": PHONE})
    with later(8 * 24 * 3600):
        fresh = request_code({"phone": "+8613900139000"})
        result = run_janitor()
    assert result["login_codes_pruned"] >= 1
    assert list(LoginCode.objects.values_list("identity", flat=True)) == ["+8613900139000"]
    assert fresh
    assert not RateCounter.objects.filter(key__contains=PHONE).exists()
