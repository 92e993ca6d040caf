"""Referential integrity without row locks on hot rows.

A foreign-key check row-locks (``FOR KEY SHARE``) the row it points at. When every new row
points at the same few rows — every ledger transfer at a system account, every order at its
plan and its reseller — concurrent transactions all lock those rows, and PostgreSQL records
each set of lockers as a multixact: the sales of one plan queue on that plan's row.

For such references the foreign-key constraint is left out (``db_constraint=False``) and
this module installs the same guarantee without the lock:

* the referenced rows are permanent: the database refuses to delete them or change their
  id (on SQLite, DELETE stays possible for Django's test flush, as for ledger transfers) —
  plans are deactivated, resellers suspended, accounts kept forever;
* one statement-level check after every INSERT into the referring table refuses the whole
  statement if a new row points at a row that does not exist (SQLite: a row trigger), and an
  UPDATE that changes a reference is checked row by row.

Used by migrations, so the SQL here must keep producing the same objects. SQLite drops a
table's triggers when a migration rebuilds the table (most ALTERs there): a later migration
that alters one of these tables must install its triggers again (see ledger 0004).
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db.backends.base.schema import BaseDatabaseSchemaEditor


def _permanent(table: str) -> tuple[list[str], list[str]]:
    name = f"{table}_permanent"
    message = f"{table} rows are permanent: they are never deleted or renumbered"
    postgresql = [
        f"""
CREATE OR REPLACE FUNCTION {name}() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '{message}';
END
$$ LANGUAGE plpgsql""",
        f"""
CREATE TRIGGER {name} BEFORE DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION {name}()""",
        f"""
CREATE TRIGGER {table}_id_fixed BEFORE UPDATE OF id ON {table}
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION {name}()""",
    ]
    sqlite = [
        f"""
CREATE TRIGGER {table}_id_fixed BEFORE UPDATE OF id ON {table}
WHEN OLD.id IS NOT NEW.id
BEGIN
    SELECT RAISE(ABORT, '{message}');
END"""
    ]
    return postgresql, sqlite


def _references(table: str, references: Sequence[tuple[str, str]]) -> tuple[list[str], list[str]]:
    name = f"{table}_references_exist"

    def missing(row: str) -> str:
        return " OR ".join(
            f"({row}.{column} IS NOT NULL AND NOT EXISTS "
            f"(SELECT 1 FROM {target} t WHERE t.id = {row}.{column}))"
            for column, target in references
        )

    columns = ", ".join(column for column, _target in references)
    changed = " OR ".join(
        f"OLD.{column} IS DISTINCT FROM NEW.{column}" for column, _target in references
    )
    # One pass over the new rows, each reference probed through the primary key by a scalar
    # subquery: PostgreSQL runs it per row and cannot turn it into an anti-join, which it
    # answered (the transition table has no statistics) by hashing the whole referenced
    # table — 20 ms per usage batch of 1,000 transfers.
    probes = " OR ".join(
        f"(n.{column} IS NOT NULL AND (SELECT t.id FROM {target} t WHERE t.id = n.{column}) IS NULL)"
        for column, target in references
    )
    postgresql = [
        f"""
CREATE OR REPLACE FUNCTION {name}() RETURNS trigger AS $$
DECLARE
    bad bigint;
BEGIN
    SELECT n.id INTO bad FROM new_rows n WHERE {probes} LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION '{table} row % refers to a row that does not exist', bad
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql""",
        f"""
CREATE TRIGGER {name} AFTER INSERT ON {table}
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {name}()""",
        # Updates that change a reference (none of our code does) are checked row by row.
        f"""
CREATE OR REPLACE FUNCTION {name}_on_update() RETURNS trigger AS $$
BEGIN
    IF {missing("NEW")} THEN
        RAISE EXCEPTION '{table} row % refers to a row that does not exist', NEW.id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql""",
        f"""
CREATE TRIGGER {name}_on_update BEFORE UPDATE OF {columns} ON {table}
    FOR EACH ROW WHEN ({changed}) EXECUTE FUNCTION {name}_on_update()""",
    ]
    sqlite = [
        f"""
CREATE TRIGGER {name} BEFORE INSERT ON {table}
WHEN {missing("NEW")}
BEGIN
    SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: {table} refers to a missing row');
END""",
        f"""
CREATE TRIGGER {name}_on_update BEFORE UPDATE OF {columns} ON {table}
WHEN {missing("NEW")}
BEGIN
    SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: {table} refers to a missing row');
END""",
    ]
    return postgresql, sqlite


def _run(editor: BaseDatabaseSchemaEditor, postgresql: list[str], sqlite: list[str]) -> None:
    vendor = editor.connection.vendor
    for statement in postgresql if vendor == "postgresql" else sqlite if vendor == "sqlite" else []:
        editor.execute(statement, params=None)


def make_permanent(editor: BaseDatabaseSchemaEditor, table: str) -> None:
    _run(editor, *_permanent(table))


def drop_permanent(editor: BaseDatabaseSchemaEditor, table: str) -> None:
    if editor.connection.vendor == "postgresql":
        editor.execute(f"DROP TRIGGER IF EXISTS {table}_permanent ON {table}", params=None)
        editor.execute(f"DROP TRIGGER IF EXISTS {table}_id_fixed ON {table}", params=None)
        editor.execute(f"DROP FUNCTION IF EXISTS {table}_permanent()", params=None)
    elif editor.connection.vendor == "sqlite":
        editor.execute(f"DROP TRIGGER IF EXISTS {table}_id_fixed", params=None)


def check_references(
    editor: BaseDatabaseSchemaEditor, table: str, references: Sequence[tuple[str, str]]
) -> None:
    """``references``: (column, referenced table) pairs, checked after every INSERT."""
    _run(editor, *_references(table, references))


def drop_references(editor: BaseDatabaseSchemaEditor, table: str) -> None:
    name = f"{table}_references_exist"
    for trigger in (name, f"{name}_on_update"):
        if editor.connection.vendor == "postgresql":
            editor.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}", params=None)
            editor.execute(f"DROP FUNCTION IF EXISTS {trigger}()", params=None)
        elif editor.connection.vendor == "sqlite":
            editor.execute(f"DROP TRIGGER IF EXISTS {trigger}", params=None)
