"""The triggers that stand in for foreign keys on hot rows (core/integrity.py) and for the
ledger's immutability are all in place after every migration — on SQLite, a migration that
rebuilds a table drops its triggers, which this test would catch."""

from __future__ import annotations

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db

BOTH = {
    "ledger_transfer_immutable",
    "ledger_transfer_references_exist",
    "ledger_transfer_references_exist_on_update",
    "orders_order_references_exist",
    "orders_order_references_exist_on_update",
    "usage_bundle_references_exist",
    "usage_bundle_references_exist_on_update",
    "usage_usagerecord_references_exist",
    "usage_usagerecord_references_exist_on_update",
    "ledger_account_id_fixed",
    "catalog_plan_id_fixed",
    "resellers_reseller_id_fixed",
    "devices_device_id_fixed",
}
# SQLite keeps DELETE for Django's test flush, so these exist on PostgreSQL only.
POSTGRESQL_ONLY = {
    "ledger_account_permanent",
    "catalog_plan_permanent",
    "resellers_reseller_permanent",
    "devices_device_permanent",
}


def test_every_integrity_trigger_is_installed() -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            expected = BOTH
        else:
            cursor.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
            expected = BOTH | POSTGRESQL_ONLY
        installed = {row[0] for row in cursor.fetchall()}
    assert expected <= installed, sorted(expected - installed)
