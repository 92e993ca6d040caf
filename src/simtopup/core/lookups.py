"""``field__any=[…]``: membership in a long list of ints or strings, as one parameter.

``field__in=[…]`` sends one placeholder per value; with thousands of values psycopg spends
longer splitting the query text than PostgreSQL spends running it. On PostgreSQL this lookup
sends the list as a single array (``= ANY(%s)``), written out here as one array literal for
integers and strings (psycopg's list adapter quotes element by element, several times
slower); elsewhere it is a plain ``IN``. Values are passed as they are (no per-value field
conversion): use it for integer keys and strings.
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
            literal = array_literal(values)
            if literal is not None:
                return f"{lhs} = ANY(%s::{literal[0]}[])", [*lhs_params, literal[1]]
            return f"{lhs} = ANY(%s)", [*lhs_params, values]
        if not values:
            return "1 = 0", list(lhs_params)
        marks = ", ".join(["%s"] * len(values))
        return f"{lhs} IN ({marks})", [*lhs_params, *values]


def array_literal(values: list[Any]) -> tuple[str, str] | None:
    """``(element type, PostgreSQL array literal)`` for a non-empty list of only ints or only
    strings, else None."""
    if not values:
        return None
    if all(type(v) is int for v in values):
        return "bigint", "{" + ",".join(map(str, values)) + "}"
    if all(type(v) is str for v in values):
        quoted = ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
        return "text", "{" + quoted + "}"
    return None


# Foreign keys have a lookup registry of their own.
ForeignObject.register_lookup(AnyOf)
