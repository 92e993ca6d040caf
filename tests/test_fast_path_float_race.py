"""PostgreSQL's one-statement sale when the float runs low between its check and its debit.

The sale checks the float first, then debits it last with ``… WHERE balance >= amount``.
A debit committed in between (here: another transaction holding the float's row lock while
the sale reads the old balance, committing once the sale waits on that lock) makes the
debit find the float too low: the sale hands over to the general path, counted as a
``float_race``, which refuses it. docs/mutation.md: without that condition the database's
floor constraint would still refuse the debit, but as an integrity error (counted under
another reason); this test tells the two apart."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction

from simtopup.ledger.actions import lock_accounts, system_account, transfer
from simtopup.ledger.audit import audit
from simtopup.orders.models import Order
from simtopup.resellers.models import FastSaleFallback
from tests.support import Actors, float_of, post_json, reseller_client

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the one-statement sale exists on PostgreSQL only"
)


def someone_waits_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database() AND pid <> pg_backend_pid()"
        )
        row = cursor.fetchone()
    return bool(row and row[0])


def test_a_float_spent_between_the_check_and_the_debit_is_refused_by_the_general_path(
    transactional_db: None,
) -> None:
    actors = Actors()
    bob = actors.bob  # ¥50.00 float, no discount: day-1g costs ¥5.00
    held, done = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def spend_the_float_while_the_sale_waits() -> None:
        try:
            with transaction.atomic():
                lock_accounts([bob.float_account_id])
                transfer(
                    bob.float_account,
                    system_account("adjustments", "CNY"),
                    4700,
                    kind="test",
                    key="spent-meanwhile",
                )
                held.set()
                deadline = time.monotonic() + 30
                while not someone_waits_on_a_lock():
                    if time.monotonic() > deadline:
                        raise AssertionError("the sale never waited on the float's lock")
                    time.sleep(0.01)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
            held.set()
        finally:
            connection.close()
            done.set()

    spender = threading.Thread(target=spend_the_float_while_the_sale_waits)
    spender.start()
    assert held.wait(30)
    response = post_json(
        reseller_client(actors.bob_key),
        "/reseller/v1/topups",
        {"device": actors.device.iccid, "plan": "day-1g", "reference": "raced"},
    )
    spender.join(30)
    assert done.is_set()
    assert failures == []

    assert response.status_code == 402, response.content
    assert response.json()["code"] == "insufficient_float"
    assert dict(FastSaleFallback.objects.values_list("reason", "count")) == {"float_race": 1}
    assert float_of(bob) == 5000 - 4700
    assert not Order.objects.exists()
    assert audit() == []
