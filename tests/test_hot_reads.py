"""The hot path for the reads customers and the network poll (api/hot_reads.py) answers
exactly what the API answers — status, body and headers — for every request it could see:
generated cards (bundles, credit, pay-per-use, status, holder) and generated requests (good,
revoked, other people's, malformed and oddly written tokens; fresh, stale, forged and
missing signatures; odd card ids and ICCIDs). Each request runs once through the whole
stack and once with the hot path taken out of it. Where the API answers 200 the hot path
must have answered by itself (one statement, no token query), and a revoked token fails at
the very next request."""

from __future__ import annotations

from contextlib import nullcontext
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from simtopup.accounts.models import AppToken, Customer
from simtopup.accounts.tokens import LAST_USED_RESOLUTION, issue_token
from simtopup.core.signing import HEADER, sign, sign_body
from simtopup.devices.models import Device, DeviceStatus
from tests.support import GB, MB, Actors, iccid
from tests.test_reads import card_from_spec

HOT = "simtopup.api.hot_reads.HotReadsMiddleware"
# Headers only the API's answers carry, from LocaleMiddleware, which the hot path skips: the
# language the request was handled in. A 200 of these operations holds no text in any
# language (codes, numbers and times only), so it does not vary with Accept-Language.
LANGUAGE_HEADERS = {"Vary", "Content-Language"}
# Both requests of a pair carry the same request id (core/requestid.py takes the caller's):
# it is in the answer's headers and in a problem's body.
REQUEST_ID = {"X-Request-Id": "hot-reads-differential"}
HOUR = 3600


def get(path: str, headers: dict[str, str], *, hot: bool) -> tuple[Any, list[str]]:
    """The answer to ``GET path`` through the whole stack (``hot``) or without the hot path,
    and the statements it ran (PostgreSQL's PREPARE of a statement's first use left out)."""
    general = [m for m in django_settings.MIDDLEWARE if m != HOT]
    with nullcontext() if hot else override_settings(MIDDLEWARE=general):
        client = Client()  # loads the middleware in force now
        connection.queries_log.clear()  # it keeps the last 9,000: the count would stop
        with CaptureQueriesContext(connection) as queries:
            response = client.get(path, headers={**REQUEST_ID, **headers})
    return response, [q["sql"] for q in queries if not q["sql"].startswith("PREPARE")]


def seen(response: Any) -> tuple[int, bytes, dict[str, str]]:
    headers = {k: v for k, v in response.headers.items() if k not in LANGUAGE_HEADERS}
    return response.status_code, response.content, headers


def test_the_hot_path_is_in_the_stack() -> None:
    """Outside the middleware that set the security headers and problem documents, before
    the ones an API call has no use for."""
    stack = django_settings.MIDDLEWARE
    assert stack.index(HOT) > stack.index("simtopup.api.middleware.ProblemMiddleware")
    assert stack.index(HOT) > stack.index("django.middleware.csp.ContentSecurityPolicyMiddleware")
    assert stack.index(HOT) < stack.index("django.contrib.sessions.middleware.SessionMiddleware")
    assert stack.index(HOT) < stack.index("django.middleware.locale.LocaleMiddleware")


# --- generated cards -----------------------------------------------------------------------

# Bundle windows in whole hours from now: the two requests of an example may straddle a
# second; the edges to the second are tests/test_reads.py's (the statement against the ORM).
bundle_spec = st.tuples(
    st.integers(-40 * 24, 40 * 24).filter(lambda h: h != 0),  # starts_at - now, hours
    st.integers(1, 40 * 24),  # length in hours
    st.one_of(st.just(0), st.integers(1, 3 * GB)),  # bytes left
    st.sampled_from(["day-1g", "month-20g"]),
)
card_spec = st.fixed_dictionaries(
    {
        "identifier": st.sampled_from(["iccid", "imei", "serial"]),
        "status": st.sampled_from(list(DeviceStatus)),
        "payg": st.booleans(),
        "credit": st.one_of(st.sampled_from([0, 9, 10, 11]), st.integers(0, 100000)),
        "bundles": st.lists(bundle_spec, max_size=4),
        "tariffs": st.lists(
            st.tuples(st.sampled_from([-2 * HOUR, -HOUR, HOUR]), st.integers(1, 20)), max_size=2
        ),
        "holder": st.sampled_from(["me", "someone else", "nobody"]),
    }
)


def make_card(spec: dict[str, Any], actors: Actors, me: Customer, other: Customer) -> Device:
    holder = {"me": me, "someone else": other, "nobody": None}[spec["holder"]]
    # Bundle windows in hours here.
    return card_from_spec(
        spec, actors.plans, holder, timezone.now(), label="hot", base=7000, unit=HOUR
    )


def people() -> tuple[Customer, Customer]:
    me, _created = Customer.objects.get_or_create(phone="+8613800138000", language="en")
    other, _created = Customer.objects.get_or_create(phone="+8613900139000", language="en")
    return me, other


# --- the balance ---------------------------------------------------------------------------

# How the request names its token: {t} is the raw token of the kind drawn below.
AUTHORIZATIONS = [
    "Bearer {t}",
    "bearer {t}",
    "BEARER {t}",
    "Bearer  {t}",
    "Bearer {t} ",
    "Bearer {t}x",
    "Token {t}",
    "{t}",
    "Bearer ",
    "Bearer",
    "",
    None,
]
TOKENS = ["mine", "revoked", "someone else's", "not a token"]
# When the token was last used: recently (no write due) or long enough ago that the API
# records this use (the hot path hands those over), or never.
LAST_USED = [timedelta(seconds=5), LAST_USED_RESOLUTION + timedelta(seconds=5), None]
CARD_IDS = ["{id}", "0{id}", "{missing}", "0", str(2**63), str(10**30)]
SUFFIXES = ["", "/", "?fields=all"]


def variants(*dimensions: list[Any]) -> list[tuple[Any, ...]]:
    """The first value of every dimension, and each other value of each dimension with the
    first of the others: every way a request can be odd, one at a time."""
    base = tuple(d[0] for d in dimensions)
    found = [base]
    for n, dimension in enumerate(dimensions):
        found += [(*base[:n], value, *base[n + 1 :]) for value in dimension[1:]]
    return found


@given(spec=card_spec)
@settings(
    max_examples=20,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # each example is ~50 requests
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_the_balance_answers_what_the_api_answers(actors: Actors, spec: dict[str, Any]) -> None:
    me, other = people()
    device = make_card(spec, actors, me, other)
    tokens = {kind: issue_token(me if kind != "someone else's" else other) for kind in TOKENS}
    AppToken.objects.filter(pk=tokens["revoked"][1].pk).update(revoked_at=timezone.now())
    tokens["not a token"] = ("st_" + "A" * 43, tokens["mine"][1])
    answered = 0
    for authorization, kind, last_used, card_id, suffix in variants(
        AUTHORIZATIONS, TOKENS, LAST_USED, CARD_IDS, SUFFIXES
    ):
        raw, row = tokens[kind]
        headers = {} if authorization is None else {"Authorization": authorization.format(t=raw)}
        path_id = card_id.format(id=device.pk, missing=device.pk + 10**6)
        path = f"/api/v1/devices/{path_id}/balance{suffix}"
        answers = []
        for hot in (True, False):
            used = None if last_used is None else timezone.now() - last_used
            AppToken.objects.filter(pk=row.pk).update(last_used_at=used)
            answers.append(get(path, headers, hot=hot))
        (hot_response, hot_sql), (api_response, _api_sql) = answers

        assert seen(hot_response) == seen(api_response), path
        if api_response.status_code == 200 and last_used == LAST_USED[0]:
            # The hot path answered: one statement, the balance with the token check in it.
            assert len(hot_sql) == 1, hot_sql
            assert "simtopup_device_balance_by_token" in hot_sql[0] or "apptoken" in hot_sql[0]
            assert hot_response.json()["device"] == device.masked
            answered += 1
    # Mine: Bearer, bearer and BEARER; the id with a leading zero; a query string. Someone
    # else's: their token.
    assert answered == {"me": 5, "someone else": 1, "nobody": 0}[spec["holder"]]


def test_a_poll_is_one_statement_and_a_revoked_token_fails_at_once(actors: Actors) -> None:
    me, _other = people()
    Device.objects.filter(pk=actors.device.pk).update(owner=me)
    raw, row = issue_token(me, "phone")
    headers = {"Authorization": f"Bearer {raw}"}
    url = f"/api/v1/devices/{actors.device.pk}/balance"
    first, first_sql = get(url, headers, hot=True)  # records the token's use: the API's path
    assert first.status_code == 200
    assert len(first_sql) > 1
    row.refresh_from_db()
    assert row.last_used_at is not None
    polled, polled_sql = get(url, headers, hot=True)
    assert polled.status_code == 200
    assert polled.json() == first.json()
    assert len(polled_sql) == 1, polled_sql

    # Log out through the API: the very next poll is refused, by the API's own answer.
    assert Client().delete("/api/v1/auth/token", headers=headers).status_code == 204
    refused, _sql = get(url, headers, hot=True)
    assert refused.status_code == 401
    assert refused.json()["code"] == "unauthenticated"
    assert refused["Content-Type"] == "application/problem+json"


def test_a_stale_token_use_is_still_recorded(actors: Actors) -> None:
    """The hot path never writes: once a minute a poll goes to the API, which records it."""
    me, _other = people()
    Device.objects.filter(pk=actors.device.pk).update(owner=me)
    raw, row = issue_token(me, "phone")
    headers = {"Authorization": f"Bearer {raw}"}
    url = f"/api/v1/devices/{actors.device.pk}/balance"
    long_ago = timezone.now() - LAST_USED_RESOLUTION - timedelta(seconds=30)
    AppToken.objects.filter(pk=row.pk).update(last_used_at=long_ago)
    response, _sql = get(url, headers, hot=True)
    assert response.status_code == 200
    row.refresh_from_db()
    assert row.last_used_at is not None
    assert row.last_used_at > long_ago + timedelta(seconds=29)


# --- the authorization ---------------------------------------------------------------------

SIGNATURES = [
    "good",
    "stale",
    "future",
    "wrong secret",
    "malformed",
    "empty",
    "none",
    "v1 only",
    "v1 and v2",
    "another device",
    "POST",
]
ICCID_FORMS = ["{i}", "{i}F", "{i}f", "{dashed}", "{spaced}", "{unknown}", "x{i}", "{i}/"]


def signature(kind: str, path: str) -> dict[str, str]:
    """The signature header of a kind for ``GET path``."""
    now = int(timezone.now().timestamp())
    secret = django_settings.NETWORK_SECRET
    value = {
        "good": sign(secret, "GET", path, b""),
        "stale": sign(secret, "GET", path, b"", now - 3600),
        "future": sign(secret, "GET", path, b"", now + 3600),
        "wrong secret": sign("not-the-network-secret", "GET", path, b""),
        "malformed": "t=1,v1=zz",
        "empty": "",
        "v1 only": sign_body(secret, b""),  # the deprecated scheme: POST only
        "v1 and v2": sign(secret, "GET", path, b"", with_v1=True),
        "another device": sign(
            secret, "GET", f"/network/v1/devices/{iccid(998)}/authorization", b""
        ),
        "POST": sign(secret, "POST", path, b""),
    }.get(kind)
    return {} if value is None else {HEADER: value}


@given(spec=card_spec.filter(lambda s: s["identifier"] == "iccid"))
@settings(
    max_examples=20,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # each example is ~50 requests
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_the_authorization_answers_what_the_api_answers(
    actors: Actors, spec: dict[str, Any]
) -> None:
    me, other = people()
    device = make_card(spec, actors, me, other)
    number = device.iccid or ""
    answered = 0
    for signed, form in variants(SIGNATURES, ICCID_FORMS):
        written = form.format(
            i=number,
            dashed=f"{number[:4]}-{number[4:10]}-{number[10:]}",
            spaced=quote(f"{number[:4]} {number[4:]}"),
            unknown=iccid(999),
        )
        path = f"/network/v1/devices/{written}/authorization"
        headers = signature(signed, path)
        (hot_response, hot_sql), (api_response, _sql) = [
            get(path, headers, hot=hot) for hot in (True, False)
        ]
        assert seen(hot_response) == seen(api_response), path
        if api_response.status_code == 200:
            assert len(hot_sql) == 1, hot_sql
            answered += 1
    # The good signature: the ICCID as is, with F or f, dashes, a space; v1 next to v2.
    assert answered == 6


def test_the_operations_are_still_documented(actors: Actors) -> None:
    paths = Client().get("/api/openapi.json").json()["paths"]
    balance = paths["/api/v1/devices/{device_id}/balance"]["get"]
    assert balance["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/BalanceOut"
    }
    assert "401" in balance["responses"]
    authorization = paths["/network/v1/devices/{iccid}/authorization"]["get"]
    assert authorization["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AuthorizationOut"
    }


@pytest.mark.parametrize("method", ["post", "put", "delete", "head", "options"])
def test_other_methods_are_the_apis(actors: Actors, method: str) -> None:
    me, _other = people()
    Device.objects.filter(pk=actors.device.pk).update(owner=me)
    raw, _row = issue_token(me)
    AppToken.objects.filter(customer=me).update(last_used_at=timezone.now())
    url = f"/api/v1/devices/{actors.device.pk}/balance"
    headers = {"Authorization": f"Bearer {raw}"}
    answers = []
    for hot in (True, False):
        general = [m for m in django_settings.MIDDLEWARE if m != HOT]
        with nullcontext() if hot else override_settings(MIDDLEWARE=general):
            answers.append(getattr(Client(), method)(url, headers={**REQUEST_ID, **headers}))
    assert answers[0].status_code == answers[1].status_code != 200
    assert answers[0].content == answers[1].content


def test_bundle_data_reads_the_same_on_both(actors: Actors) -> None:
    """A card with bundle data: the hot answer is the API's, field for field."""
    me, other = people()
    spec = {
        "identifier": "iccid",
        "status": DeviceStatus.ACTIVE,
        "payg": True,
        "credit": 500,
        "bundles": [(-1, 24, 7 * MB, "day-1g"), (2, 24, GB, "month-20g"), (-30, 5, 0, "day-1g")],
        "tariffs": [],
        "holder": "me",
    }
    device = make_card(spec, actors, me, other)
    raw, _row = issue_token(me)
    AppToken.objects.filter(customer=me).update(last_used_at=timezone.now())
    hot, hot_sql = get(
        f"/api/v1/devices/{device.pk}/balance", {"Authorization": f"Bearer {raw}"}, hot=True
    )
    assert len(hot_sql) == 1
    body = hot.json()
    assert body["remaining_bytes"] == 7 * MB
    assert [b["status"] for b in body["bundles"]] == ["expired", "active", "upcoming"]
    assert body["credit"] == {"amount": "5.00", "currency": "CNY"}
    assert body["payg"] is True
