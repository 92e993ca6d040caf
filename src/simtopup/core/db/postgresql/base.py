"""Django's PostgreSQL backend with a health check that costs no round trip while busy.

With ``CONN_HEALTH_CHECKS`` Django runs ``SELECT 1`` before the first query of *every*
request on a persistent connection. On the reseller top-up hot path, which is one statement,
that doubled the round trips (py-spy: 31 % of the web process's samples were that check).

This wrapper keeps the guarantee that matters — a connection the server has closed
(PostgreSQL restarted, the backend terminated, an idle timeout) is replaced before a request
uses it — and pays the round trip only when it can tell something: a server that ends a
session sends an error message and closes the socket, so a healthy idle connection has
nothing to read. The check therefore polls the socket (no I/O), and runs Django's real check
(``SELECT 1``) when there is something to read, when the connection is not idle at the
protocol level, or when it has not been checked for ``FULL_CHECK_SECONDS`` (a connection
that sat unused for a while, where a silently dropped TCP path is most likely).
"""

from __future__ import annotations

import select
import time

from django.db.backends.postgresql.base import DatabaseWrapper as PostgresWrapper
from psycopg import pq

FULL_CHECK_SECONDS = 5.0


class DatabaseWrapper(PostgresWrapper):
    full_checked_at = 0.0

    def connect(self) -> None:
        super().connect()
        self.full_checked_at = time.monotonic()

    def looks_alive(self) -> bool:
        """True when the connection is certainly fine without asking the server."""
        conn = self.connection
        if conn is None or conn.closed or conn.broken:
            return False
        if time.monotonic() - self.full_checked_at > FULL_CHECK_SECONDS:
            return False
        pgconn = conn.pgconn
        if pgconn.status != pq.ConnStatus.OK:
            return False
        if pgconn.transaction_status != pq.TransactionStatus.IDLE:
            return False
        # poll, not select: a process with over 1,024 open files has sockets select() refuses.
        poller = select.poll()
        try:
            poller.register(pgconn.socket, select.POLLIN | select.POLLPRI)
            events = poller.poll(0)
        except (OSError, ValueError):
            return False
        return not events

    def close_if_health_check_failed(self) -> None:
        # health_check_enabled / _done are Django's (not in django-stubs).
        enabled = getattr(self, "health_check_enabled", False)
        done = getattr(self, "health_check_done", False)
        if enabled and not done and not self.pool and self.looks_alive():
            self.health_check_done = True
            return
        super().close_if_health_check_failed()

    def is_usable(self) -> bool:
        usable = super().is_usable()
        if usable:
            self.full_checked_at = time.monotonic()
        return usable
