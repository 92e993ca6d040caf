"""Hot read statements run as PostgreSQL prepared statements, and the helpers that write them.

The reads customers and the network poll (a card's balance, the policy server's
authorization, the app token check) are small indexed lookups: PostgreSQL answers them in
a fraction of a millisecond, but planning each one costs more than that, and compiling an
ORM queryset costs more again. So they are fixed SQL texts (table and column names from the
models' metadata), prepared once per database connection (``PREPARE``) and then only
``EXECUTE``d. Django's cursor runs both, so query logging and execute wrappers still see
them. A prepared statement lives as long as its session, whatever happens to transactions,
and is re-planned by PostgreSQL itself when a table it reads changes. On SQLite, and behind
a transaction-mode pooler (``DISABLE_SERVER_SIDE_CURSORS``: sessions are shared, so a
prepared statement may not be there), the text simply runs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from weakref import WeakKeyDictionary

from django.db import connection
from django.db.models import Model
from django.utils.dateparse import parse_datetime

# The names prepared on each live PostgreSQL connection (the driver's connection object: a
# reconnect starts a new session with none).
_prepared: WeakKeyDictionary[Any, set[str]] = WeakKeyDictionary()
_NAME = re.compile(r"[a-z_][a-z0-9_]*")


def table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def column(model: type[Model], field: str) -> str:
    name = getattr(model._meta.get_field(field), "column", None)
    if not isinstance(name, str):
        raise ValueError(f"{model.__name__}.{field} is not a column")
    return connection.ops.quote_name(name)


def moment(value: datetime) -> Any:
    """A time parameter as the ORM would pass it (naive UTC text on SQLite)."""
    return connection.ops.adapt_datetimefield_value(value)


def aware(value: object) -> datetime:
    """A selected time column as an aware UTC datetime, whichever backend read it."""
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is None:
            raise ValueError(f"not a time: {value!r}")
        value = parsed
    if not isinstance(value, datetime):
        raise TypeError(f"not a time: {value!r}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def fetch(name: str, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` (``%s`` placeholders, no other ``%``) with ``params``; on
    PostgreSQL as the prepared statement ``name``, prepared on first use per connection."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"bad statement name {name!r}")
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql" or connection.settings_dict.get(
            "DISABLE_SERVER_SIDE_CURSORS"
        ):
            cursor.execute(sql, params)
            return list(cursor.fetchall())
        names = _prepared.setdefault(connection.connection, set())
        if name not in names:
            numbered = iter(range(1, len(params) + 1))
            cursor.execute(
                f"PREPARE {name} AS " + re.sub("%s", lambda _m: f"${next(numbered)}", sql)
            )
            names.add(name)
        arguments = f"({', '.join(['%s'] * len(params))})" if params else ""
        cursor.execute(f"EXECUTE {name}{arguments}", params)
        return list(cursor.fetchall())
