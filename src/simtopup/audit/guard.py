"""How SQLite is made to refuse deleting audit rows while Django's ``flush`` still works.

PostgreSQL refuses UPDATE and DELETE with a row trigger, and ``flush`` empties tables with
TRUNCATE, which row triggers do not see. SQLite's ``flush`` deletes row by row, so its DELETE
trigger asks :func:`flushing` (registered on every connection Django opens) and lets a DELETE
through only while this app's ``flush`` command runs — which erases the whole database, as
the test suite does between transactional tests. A connection without the function (the
sqlite3 shell) is refused: the trigger names a function it does not have.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SQLITE_FUNCTION = "simtopup_audit_flushing"

_state = threading.local()


def flushing() -> int:
    return 1 if getattr(_state, "flushing", False) else 0


@contextmanager
def whole_database_flush() -> Iterator[None]:
    _state.flushing = True
    try:
        yield
    finally:
        _state.flushing = False


def register_sqlite_function(sender: Any, connection: Any, **kwargs: Any) -> None:
    if connection.vendor == "sqlite":
        connection.connection.create_function(SQLITE_FUNCTION, 0, flushing)
