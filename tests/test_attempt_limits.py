"""Attempt limits hold under parallel requests, and a stranger cannot lock a clerk out.

One-time codes: every try is claimed before the code is compared, so however many tries
arrive at once, no more than ``LOGIN_CODE_MAX_ATTEMPTS`` comparisons are made. Rate limits
count and check in one statement. The reseller portal reserves a failed attempt before it
checks a password, per (user name, address), per user name and per address.

The parallel tests use committed data and one database connection per thread, so the
database's own locking decides (as in ``test_concurrency.py``).
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from django.utils import timezone

from simtopup.accounts import login as login_module
from simtopup.accounts.login import Identity, hash_code, spend_code
from simtopup.accounts.models import Customer, IdentityKind, LoginCode, RateCounter
from simtopup.accounts.ratelimit import Limit, RateLimited, hit, release
from simtopup.core.errors import DomainError
from simtopup.web import agent as agent_views
from tests.agent_support import log_in, make_staff
from tests.support import Actors
from tests.test_concurrency import run_concurrently

PHONE = "+8613800138000"
IDENTITY = Identity(IdentityKind.PHONE, PHONE)
RIGHT, WRONG = "246810", "135791"
CLERK = "clerk@alice.example"
ADDRESS_A, ADDRESS_B = "203.0.113.7", "198.51.100.20"


def live_code() -> LoginCode:
    now = timezone.now()
    return LoginCode.objects.create(
        kind=IdentityKind.PHONE,
        identity=PHONE,
        code_hash=hash_code(IDENTITY, RIGHT),
        created_at=now,
        expires_at=now + timedelta(minutes=10),
    )


class Calls:
    """Wraps a function and counts its calls (from any thread). Each call takes a little
    longer, so that parallel requests overlap while they evaluate what they were sent."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.count += 1
        time.sleep(0.05)
        return self.function(*args, **kwargs)


@pytest.fixture
def comparisons(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Counts the codes compared (each comparison hashes the code it was given)."""
    calls = Calls(login_module.hash_code)
    monkeypatch.setattr(login_module, "hash_code", calls)
    return calls


@pytest.fixture
def password_checks(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Counts the passwords the portal's login page checks."""
    calls = Calls(agent_views.authenticate)
    monkeypatch.setattr(agent_views, "authenticate", calls)
    return calls


def try_code(code: str) -> str:
    try:
        spend_code(IDENTITY, code)
    except DomainError as exc:
        return exc.code
    return "ok"


class Clock:
    """``timezone.now`` moved to just after midnight UTC (so every rate-limit window starts
    with the test), and moved on by :meth:`advance`."""

    def __init__(self) -> None:
        self.real = timezone.now
        seconds = self.real().timestamp()
        self.offset = timedelta(seconds=(math.floor(seconds / 86400) + 1) * 86400 + 1 - seconds)

    def __call__(self) -> datetime:
        return self.real() + self.offset

    def advance(self, minutes: int) -> None:
        self.offset += timedelta(minutes=minutes)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    moved = Clock()
    monkeypatch.setattr(timezone, "now", moved)
    return moved


def portal_client(address: str) -> Client:
    return Client(REMOTE_ADDR=address)


# --- one-time codes ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_twelve_concurrent_wrong_codes_are_compared_five_times_and_burn_the_code(
    comparisons: Calls,
) -> None:
    code = live_code()

    results = run_concurrently([lambda: try_code(WRONG) for _ in range(12)], threads=12)

    assert results == ["invalid_code"] * 12
    assert comparisons.count == 5
    code.refresh_from_db()
    assert code.attempts == 5
    assert code.burned_at is not None
    assert code.used_at is None
    assert try_code(RIGHT) == "invalid_code"  # the right code, after the limit
    assert comparisons.count == 5  # … is not even compared
    assert Customer.objects.count() == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_right_code_among_concurrent_wrong_ones_logs_in_at_most_once(comparisons: Calls) -> None:
    code = live_code()

    results = run_concurrently(
        [lambda: try_code(WRONG) for _ in range(8)] + [lambda: try_code(RIGHT)] * 3, threads=11
    )

    assert comparisons.count <= 5
    assert results.count("ok") <= 1
    code.refresh_from_db()
    assert code.attempts <= 5
    assert Customer.objects.count() == results.count("ok")
    assert (code.used_at is not None) == ("ok" in results)


def test_wrong_codes_one_after_another_burn_the_code_and_the_right_one_is_refused(
    db: None, comparisons: Calls
) -> None:
    code = live_code()
    for _ in range(4):
        assert try_code(WRONG) == "invalid_code"
    code.refresh_from_db()
    assert (code.attempts, code.burned_at) == (4, None)
    assert try_code("12ab") == "invalid_code"  # malformed: counted, never hashed
    code.refresh_from_db()
    assert code.attempts == 5
    assert code.burned_at is not None
    assert try_code(RIGHT) == "invalid_code"
    assert comparisons.count == 4


def test_the_right_code_on_the_last_try_still_logs_in(db: None) -> None:
    code = live_code()
    for _ in range(4):
        assert try_code(WRONG) == "invalid_code"
    assert try_code(RIGHT) == "ok"
    code.refresh_from_db()
    assert code.used_at is not None
    assert code.burned_at is None
    assert try_code(RIGHT) == "invalid_code"  # spent


def test_an_expired_code_is_not_compared(db: None, comparisons: Calls) -> None:
    code = live_code()
    LoginCode.objects.filter(pk=code.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert try_code(RIGHT) == "invalid_code"
    assert comparisons.count == 0
    code.refresh_from_db()
    assert code.attempts == 0


# --- rate limits ------------------------------------------------------------------------------

NOW = datetime(2030, 1, 1, 12, 0, 5, tzinfo=UTC)


def hit_once(key: str, limits: list[Limit]) -> str:
    try:
        with transaction.atomic():
            hit(key, limits, NOW)
    except RateLimited:
        return "refused"
    return "admitted"


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_ten_parallel_hits_on_a_limit_of_five_admit_exactly_five() -> None:
    limits = [Limit(5, 900), Limit(8, 3600)]

    results = run_concurrently([lambda: hit_once("parallel", limits)] * 10, threads=10)

    assert Counter(results) == {"admitted": 5, "refused": 5}
    counts = dict(RateCounter.objects.filter(key="parallel").values_list("window_seconds", "count"))
    assert counts == {900: 5, 3600: 5}  # the refused ones rolled their other counts back


def test_a_released_hit_gives_its_place_back(db: None) -> None:
    limits = [Limit(2, 900)]
    assert [hit_once("k", limits) for _ in range(3)] == ["admitted", "admitted", "refused"]
    release("k", limits, NOW)
    assert hit_once("k", limits) == "admitted"
    assert hit_once("k", limits) == "refused"
    for _ in range(5):
        release("k", limits, NOW)
    assert RateCounter.objects.get(key="k").count == 0  # never below zero


# --- the reseller portal's login --------------------------------------------------------------


@pytest.fixture
def portal_limits(settings: Any, clock: Clock) -> None:
    settings.AGENT_LOGIN_USER_IP_LIMITS = ["5/900", "10/86400"]
    settings.AGENT_LOGIN_USER_LIMITS = ["100/3600"]
    settings.AGENT_LOGIN_IP_LIMITS = ["30/900"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_ten_parallel_wrong_passwords_from_one_address_check_at_most_five(
    actors: Actors, portal_limits: None, password_checks: Calls
) -> None:
    make_staff(actors.alice, CLERK, "clerk")

    responses = run_concurrently(
        [lambda: log_in(portal_client(ADDRESS_A), CLERK, "guess") for _ in range(10)], threads=10
    )

    assert password_checks.count == 5
    assert Counter(r.status_code for r in responses) == {400: 5, 429: 5}
    # The clerk, elsewhere, is not locked out.
    assert log_in(portal_client(ADDRESS_B), CLERK).status_code == 302
    assert password_checks.count == 6


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_ten_parallel_wrong_passwords_for_many_users_stop_at_the_address_limit(
    actors: Actors, settings: Any, clock: Clock, password_checks: Calls
) -> None:
    settings.AGENT_LOGIN_IP_LIMITS = ["4/900"]

    responses = run_concurrently(
        [partial(log_in, portal_client(ADDRESS_A), f"u{n}@x.example", "guess") for n in range(10)],
        threads=10,
    )

    assert password_checks.count == 4
    assert Counter(r.status_code for r in responses) == {400: 4, 429: 6}


def test_a_stranger_cannot_lock_the_clerk_out_from_another_address(
    actors: Actors, portal_limits: None, password_checks: Calls
) -> None:
    make_staff(actors.alice, CLERK, "clerk")
    stranger = portal_client(ADDRESS_A)
    for _ in range(5):
        assert log_in(stranger, CLERK, "guess").status_code == 400
    # The stranger is stopped at address A, even with the right password …
    blocked = log_in(stranger, CLERK)
    assert blocked.status_code == 429
    assert "Too many failed attempts" in blocked.content.decode()
    assert password_checks.count == 5
    # … while the clerk logs in from address B.
    clerk = portal_client(ADDRESS_B)
    assert log_in(clerk, CLERK).status_code == 302
    assert clerk.get("/agent/").status_code == 200


def test_the_stranger_backs_off_in_longer_steps(
    actors: Actors, portal_limits: None, clock: Clock, password_checks: Calls
) -> None:
    make_staff(actors.alice, CLERK, "clerk")

    def attempt() -> int:
        status: int = log_in(portal_client(ADDRESS_A), CLERK, "guess").status_code
        return status

    assert [attempt() for _ in range(5)] == [400] * 5
    clock.advance(1)
    assert attempt() == 429  # the 15-minute step
    clock.advance(15)
    assert [attempt() for _ in range(6)] == [400] * 5 + [429]  # the day's 10 are used up
    for _ in range(3):
        clock.advance(15)
        assert attempt() == 429
    assert password_checks.count == 10


def test_many_addresses_together_hit_the_per_user_cap(
    actors: Actors, settings: Any, clock: Clock, password_checks: Calls
) -> None:
    settings.AGENT_LOGIN_USER_IP_LIMITS = ["5/900"]
    settings.AGENT_LOGIN_USER_LIMITS = ["12/3600"]
    make_staff(actors.alice, CLERK, "clerk")
    for n in range(3):
        for _ in range(4):
            assert log_in(portal_client(f"192.0.2.{n + 1}"), CLERK, "guess").status_code == 400
    # Twelve failures from three addresses: a fourth address is refused too.
    assert log_in(portal_client("192.0.2.99"), CLERK, "guess").status_code == 429
    assert password_checks.count == 12


def test_a_successful_login_gives_back_its_place_and_clears_its_address(
    actors: Actors, portal_limits: None, settings: Any
) -> None:
    settings.AGENT_LOGIN_USER_LIMITS = ["6/3600"]
    make_staff(actors.alice, CLERK, "clerk")
    clerk = portal_client(ADDRESS_B)
    for _ in range(4):
        assert log_in(clerk, CLERK, "typo").status_code == 400
    assert log_in(clerk, CLERK).status_code == 302
    counts = Counter[str]()
    for key, count in RateCounter.objects.values_list("key", "count"):
        counts[key.split(":")[1]] += count
    # The four typos still count per user and per address; the login itself does not,
    # and the clerk's own address starts afresh for this user.
    assert counts == {"user": 4, "ip": 4}
    for _ in range(2):
        assert log_in(portal_client(ADDRESS_B), CLERK, "typo").status_code == 400
    assert log_in(portal_client(ADDRESS_B), CLERK).status_code == 429  # the user's cap of 6
