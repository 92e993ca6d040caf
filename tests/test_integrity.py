"""The triggers that stand in for foreign keys on hot rows (core/integrity.py) and for the
ledger's immutability are all in place after every migration — on SQLite, a migration that
rebuilds a table drops its triggers, which this test would catch."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.test import Client

from simtopup.ledger.models import Account
from simtopup.orders.models import Order
from simtopup.usage.models import Bundle
from tests.support import Actors, iccid, post_json

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
    "orders_order_id_fixed",
}
# SQLite keeps DELETE for Django's test flush, so these exist on PostgreSQL only.
POSTGRESQL_ONLY = {
    "ledger_account_permanent",
    "catalog_plan_permanent",
    "resellers_reseller_permanent",
    "devices_device_permanent",
    "orders_order_permanent",
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


MISSING = 10**12


def sold(actors: Actors, alice: Client) -> tuple[Order, Bundle]:
    response = post_json(
        alice,
        "/reseller/v1/topups",
        {"device": iccid(1), "plan": "day-1g", "reference": "integrity"},
    )
    assert response.status_code == 201, response.content
    order = Order.objects.get(pk=response.json()["id"])
    return order, Bundle.objects.get(order=order)


def copy_of_order(order: Order, **changes: Any) -> Order:
    copy = Order.objects.get(pk=order.pk)
    copy.pk = None
    copy.receipt_no = None
    copy.reference = "copy"
    for name, value in changes.items():
        setattr(copy, name, value)
    return copy


@pytest.mark.parametrize("field", ["device_id", "plan_id", "reseller_id"])
def test_an_order_pointing_at_a_missing_row_is_refused(
    actors: Actors, alice: Client, field: str
) -> None:
    order, _bundle = sold(actors, alice)
    with pytest.raises(IntegrityError), transaction.atomic():
        copy_of_order(order, **{field: MISSING}).save()
    with pytest.raises(IntegrityError), transaction.atomic():
        Order.objects.filter(pk=order.pk).update(**{field: MISSING})
    copy_of_order(order).save()  # the same row with its references intact goes in
    assert Order.objects.count() == 2


@pytest.mark.parametrize("field", ["device_id", "plan_id", "order_id", "account_id"])
def test_a_bundle_pointing_at_a_missing_row_is_refused(
    actors: Actors, alice: Client, field: str
) -> None:
    order, bundle = sold(actors, alice)
    fresh = Account.objects.create(code="bundle:test", kind="bundle", unit="BYTES")
    another = copy_of_order(order)
    another.save()
    copy = Bundle.objects.get(pk=bundle.pk)
    copy.pk = None
    copy.order_id = another.pk
    copy.account_id = fresh.pk
    setattr(copy, field, MISSING)
    with pytest.raises(IntegrityError), transaction.atomic():
        copy.save()
    with pytest.raises(IntegrityError), transaction.atomic():
        Bundle.objects.filter(pk=bundle.pk).update(**{field: MISSING})
    setattr(copy, field, getattr(Bundle.objects.get(pk=bundle.pk), field))
    if field == "order_id":
        copy.order_id = another.pk
    if field == "account_id":
        copy.account_id = fresh.pk
    copy.save()
    assert Bundle.objects.count() == 2


def test_orders_are_never_deleted_or_renumbered(actors: Actors, alice: Client) -> None:
    order, _bundle = sold(actors, alice)
    with pytest.raises(DatabaseError), transaction.atomic():
        Order.objects.filter(pk=order.pk).update(id=MISSING)
    if connection.vendor == "postgresql":  # SQLite keeps DELETE for Django's test flush
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("DELETE FROM orders_order WHERE id = %s", [order.pk])
    assert Order.objects.filter(pk=order.pk).exists()
