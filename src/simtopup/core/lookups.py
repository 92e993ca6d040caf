"""``field__any=[…]``: membership in a long list of ints or strings, as one parameter.

``field__in=[…]`` sends one placeholder per value; with thousands of values psycopg spends
longer splitting the query text than PostgreSQL spends running it. On PostgreSQL this lookup
sends the list as a single array (``= ANY(%s)``); elsewhere it is a plain ``IN``. Values are
passed as they are (no per-value field conversion): use it for integer keys and strings.
Pass a set for long lists: the ORM walks lists and tuples value by value looking for
expressions, and leaves sets alone.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Field, ForeignObject, Lookup


@Field.register_lookup
class AnyOf(Lookup):
    lookup_name = "any"
    prepare_rhs = False

    def get_prep_lookup(self) -> Any:
        return list(self.rhs)

    def as_sql(self, compiler: Any, connection: Any) -> Any:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        values = list(self.rhs)
        if connection.vendor == "postgresql":
            return f"{lhs} = ANY(%s)", [*lhs_params, values]
        if not values:
            return "1 = 0", list(lhs_params)
        marks = ", ".join(["%s"] * len(values))
        return f"{lhs} IN ({marks})", [*lhs_params, *values]


# Foreign keys have a lookup registry of their own.
ForeignObject.register_lookup(AnyOf)
