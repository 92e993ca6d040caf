"""The PostgreSQL backend's health check (simtopup/core/db/postgresql/base.py): no round trip
while a connection is busy and quiet, and a connection the server has closed is still
replaced before a request uses it."""

from __future__ import annotations

import select
import time

import psycopg
import pytest
from django.core.signals import request_started
from django.db import connection
from django.test import Client

from simtopup.core.db.postgresql import base

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL backend only"),
]


@pytest.fixture
def full_checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the real health checks (``SELECT 1``)."""
    calls: list[int] = []
    real = base.PostgresWrapper.is_usable

    def counting(self: base.DatabaseWrapper) -> bool:
        calls.append(1)
        return real(self)

    monkeypatch.setattr(base.PostgresWrapper, "is_usable", counting)
    return calls


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def terminate(pid: int) -> None:
    """End that backend from another session, as a server restart or an admin would, and
    wait until its socket has the server's goodbye to read."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as other:
        assert other.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone() == (True,)
    socket = connection.connection.pgconn.socket
    deadline = time.monotonic() + 5
    while not select.select([socket], [], [], 0.05)[0]:
        assert time.monotonic() < deadline, "the server never closed the session"


def test_a_busy_quiet_connection_is_not_asked(full_checks: list[int]) -> None:
    pid = backend_pid()
    # Just checked (as a connection in use is): run alone, this test's connection may be
    # older than FULL_CHECK_SECONDS since the test database was set up, and is then asked once.
    connection.full_checked_at = time.monotonic()
    for _ in range(5):
        connection.close_if_unusable_or_obsolete()  # what every request starts with
        assert backend_pid() == pid
    assert full_checks == []


def test_a_connection_idle_for_a_while_is_asked_once(full_checks: list[int]) -> None:
    pid = backend_pid()
    connection.full_checked_at = time.monotonic() - base.FULL_CHECK_SECONDS - 1
    connection.close_if_unusable_or_obsolete()
    assert backend_pid() == pid
    assert backend_pid() == pid
    assert full_checks == [1]
    connection.close_if_unusable_or_obsolete()
    assert backend_pid() == pid
    assert full_checks == [1]  # checked just now: quiet again


def test_a_connection_the_server_closed_is_replaced_before_use(full_checks: list[int]) -> None:
    pid = backend_pid()
    terminate(pid)
    connection.close_if_unusable_or_obsolete()
    assert backend_pid() != pid  # no error: a fresh connection answered
    assert full_checks == [1]


def test_requests_survive_a_server_side_disconnect_between_them() -> None:
    client = Client()
    assert client.get("/readyz").status_code == 200
    terminate(backend_pid())
    # What Django's WSGI handler does when a request starts (its test client does not).
    request_started.send(sender=None)
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ready"}


def test_a_connection_inside_a_transaction_is_not_trusted_blindly(
    full_checks: list[int],
) -> None:
    backend_pid()
    connection.connection.execute("BEGIN")  # left open behind Django's back
    try:
        assert not connection.looks_alive()
    finally:
        connection.connection.execute("ROLLBACK")
    assert connection.looks_alive()
