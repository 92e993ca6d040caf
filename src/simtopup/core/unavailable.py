"""The database cannot be reached: how to tell, and what to do with the connection.

A PostgreSQL restart, a failover or an administrator ending sessions shows up in whatever code
touches the database next, as Django's :class:`~django.db.utils.OperationalError` ("connection
refused", "server closed the connection unexpectedly", "terminating connection due to
administrator command") or :class:`~django.db.utils.InterfaceError` ("connection already
closed"). Nothing is wrong with the request or the code: the answer is 503 with
``Retry-After`` (the API's ``database_unavailable`` problem, the website's "briefly
unavailable" page), logged as one warning line, not as a traceback at ERROR per request.

Programming errors stay 500: ``IntegrityError``, ``DataError`` and ``ProgrammingError`` are
never unavailability, nor are the few ``OperationalError`` that SQLite raises for a wrong
statement (no such table or column, a syntax error) or PostgreSQL's "program limit exceeded"
(SQLSTATE class 54).
"""

from __future__ import annotations

import logging
import sqlite3

from django.db import connections
from django.db.utils import DatabaseError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponseBase

logger = logging.getLogger(__name__)

# Long enough for a restart or a failover to finish, short enough that a client's retry
# lands soon after the database is back.
RETRY_AFTER_SECONDS = 5

# sqlite3 raises OperationalError for these mistakes in the statement itself.
_SQLITE_STATEMENT_ERRORS = ("no such ", "has no column", "syntax error", "already exists")


def database_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` (or an exception it was raised from) says the database could not be
    reached or dropped the connection."""
    seen: BaseException | None = exc
    for _ in range(8):  # an explicit ``raise … from …`` chain, never a loop
        if seen is None:
            return False
        if isinstance(seen, InterfaceError):
            return True
        if isinstance(seen, OperationalError):
            return not _statement_error(seen)
        seen = seen.__cause__
    return False


def _statement_error(exc: OperationalError) -> bool:
    driver = exc.__cause__  # Django raises its own class from the driver's exception
    sqlstate = getattr(driver, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate.startswith("54"):
        return True
    if isinstance(driver, sqlite3.OperationalError):
        return any(text in str(driver) for text in _SQLITE_STATEMENT_ERRORS)
    return False


def discard_broken_connections() -> None:
    """Close every connection that failed and no longer answers, so that the next request
    opens a new one instead of meeting the dead one again.

    Django's WSGI handler does the same when a request finishes
    (``close_if_unusable_or_obsolete``), and the PostgreSQL backend's health check when the
    next one starts; doing it here as well covers callers that send no request signals (the
    test client, a management command calling a view) and costs nothing on the normal path.
    A connection inside an atomic block belongs to the code that opened the block.
    """
    for conn in connections.all(initialized_only=True):
        if (
            conn.connection is not None
            and conn.errors_occurred
            and not conn.in_atomic_block
            and not conn.is_usable()
        ):
            try:
                conn.close()
            except DatabaseError:
                logger.debug("closing a broken %s connection failed", conn.alias, exc_info=True)


def note_unavailable(request: HttpRequest, exc: BaseException, response: HttpResponseBase) -> None:
    """Log the outage once for this request (a warning: nothing to debug in the code) and mark
    ``response`` as logged so that Django's ``django.request`` logger does not log it again
    as an error with the traceback; then drop the broken connection."""
    logger.warning(
        "database unavailable, answered %s to %s %s: %s: %s",
        response.status_code,
        request.method,
        request.path,
        type(exc).__name__,
        str(exc).strip().splitlines()[0] if str(exc).strip() else "",
    )
    response._has_been_logged = True  # type: ignore[attr-defined]  # django.utils.log
    discard_broken_connections()
