"""Transfers are immutable: the database itself refuses UPDATE (and DELETE on PostgreSQL).

SQLite keeps DELETE possible only because Django's test flush empties tables with DELETE;
PostgreSQL flushes with TRUNCATE, which row triggers do not see.
"""

from django.db import migrations

PG_FORWARD = """
CREATE OR REPLACE FUNCTION ledger_transfer_immutable() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'ledger transfers are immutable; post a correcting transfer instead';
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER ledger_transfer_immutable BEFORE UPDATE OR DELETE ON ledger_transfer
    FOR EACH ROW EXECUTE FUNCTION ledger_transfer_immutable();
"""
PG_BACKWARD = """
DROP TRIGGER IF EXISTS ledger_transfer_immutable ON ledger_transfer;
DROP FUNCTION IF EXISTS ledger_transfer_immutable();
"""
SQLITE_FORWARD = """
CREATE TRIGGER ledger_transfer_immutable BEFORE UPDATE ON ledger_transfer
BEGIN
    SELECT RAISE(ABORT, 'ledger transfers are immutable; post a correcting transfer instead');
END;
"""
SQLITE_BACKWARD = "DROP TRIGGER IF EXISTS ledger_transfer_immutable;"


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PG_FORWARD)
    elif schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(SQLITE_FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PG_BACKWARD)
    elif schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(SQLITE_BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0001_initial")]
    operations = [migrations.RunPython(forward, backward)]
