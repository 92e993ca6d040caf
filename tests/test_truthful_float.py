"""Every float in a top-up answer is one the ledger held, and sales never deadlock.

A 201 used to report the reseller's float as the copy read while authenticating plus this
sale's change: a credit committed in between made it a value that never existed (down to
``-46.00`` in a live probe), stored for idempotent replays too. Now the balance comes from
the float's compare-and-swap (``RETURNING``) in the sale's own transaction, is recorded on
the payment transfer, and every view of the sale (201, replay, GET, list, webhook) shows it.

And: a first bundle sale and a first credit sale of one card used to deadlock (one locked the
device before the float, the other the float before the device). One lock order
(``orders/locking.py``) for every kind of sale, and a bounded retry of any remaining victim
(``core/transactions.py``)."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import Counter
from typing import Any

import psycopg.errors
import pytest
from django.db import OperationalError, connection
from django.db.models import Q

from simtopup.api import auth as api_auth
from simtopup.core.money import to_decimal_string
from simtopup.core.transactions import durable, is_conflict
from simtopup.devices.inventory import create_device
from simtopup.devices.models import DeviceStatus
from simtopup.ledger.audit import audit
from simtopup.ledger.models import Transfer
from simtopup.orders.models import Order, OrderStatus
from simtopup.resellers.actions import create_reseller, credit_float
from simtopup.resellers.models import Reseller
from tests.support import Actors, float_of, iccid, post_json, reseller_client
from tests.test_concurrency import run_concurrently, topup_job

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="PostgreSQL row locks, deadlocks and the hot path"
)


def _amount(minor: int) -> str:
    return to_decimal_string(minor, "CNY")


def _sell(key: str, device: str, plan: str, reference: str, **headers: str) -> Any:
    body = {"device": device, "plan": plan, "reference": reference}
    return post_json(reseller_client(key), "/reseller/v1/topups", body, **headers)


@pytest.mark.parametrize("plan", ["day-1g", "credit-50"])
def test_a_credit_committed_during_the_sale_is_in_the_float_it_reports(
    actors: Actors, monkeypatch: pytest.MonkeyPatch, settings: Any, plan: str
) -> None:
    """The race of the probe, made deterministic: the key check loads the reseller and its
    float; then the operator's credit commits; then the sale runs (general path)."""
    settings.FAST_TOPUP = False
    real = api_auth.authenticate

    def authenticate_then_credit(token: str) -> Reseller | None:
        reseller = real(token)
        assert reseller is not None
        credit_float(Reseller.objects.get(pk=reseller.pk), 10_000, "bank transfer received")
        return reseller

    monkeypatch.setattr(api_auth, "authenticate", authenticate_then_credit)
    before = float_of(actors.alice)
    response = _sell(actors.alice_key, actors.device.iccid, plan, "r1", **{"Idempotency-Key": "k1"})
    assert response.status_code == 201, response.content
    body = response.json()
    order = Order.objects.get(pk=body["id"])
    now = float_of(actors.alice)
    assert now == before + 10_000 - order.amount
    assert body["float_balance"] == {"amount": _amount(now), "currency": "CNY"}

    monkeypatch.setattr(api_auth, "authenticate", real)
    replay = _sell(actors.alice_key, actors.device.iccid, plan, "r1", **{"Idempotency-Key": "k1"})
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == body
    assert float_of(actors.alice) == now
    client = reseller_client(actors.alice_key)
    assert client.get(f"/reseller/v1/topups/{order.pk}").json() == body
    assert client.get("/reseller/v1/topups").json()["items"] == [body]
    assert audit() == []


def test_lookups_and_lists_show_each_sale_s_own_float_never_the_float_now(
    actors: Actors,
) -> None:
    client = reseller_client(actors.alice_key)
    bodies = []
    for n, plan in enumerate(["day-1g", "credit-50", "month-20g"]):
        response = _sell(actors.alice_key, actors.devices[n].iccid, plan, f"sale-{n}")
        assert response.status_code == 201, response.content
        bodies.append(response.json())
        if n == 0:
            credit_float(actors.alice, 7_700, "top up the float between two sales")
    floats = [b["float_balance"]["amount"] for b in bodies]
    assert len(set(floats)) == 3
    assert floats[-1] == _amount(float_of(actors.alice))
    for body in bodies:
        assert client.get(f"/reseller/v1/topups/{body['id']}").json() == body
    assert client.get("/reseller/v1/topups").json()["items"] == bodies[::-1]
    current = client.get("/reseller/v1/float").json()["balance"]["amount"]
    assert current == _amount(float_of(actors.alice))
    # Each recorded value is the one after its own sale: the sale before it less this charge.
    first_pay = Transfer.objects.get(idempotency_key=f"order:{bodies[0]['id']}:pay")
    second_pay = Transfer.objects.get(idempotency_key=f"order:{bodies[1]['id']}:pay")
    assert second_pay.source_balance == first_pay.source_balance + 7_700 - second_pay.amount


def test_every_bounded_balance_a_transfer_records_is_one_the_account_held(
    actors: Actors,
) -> None:
    """Replaying each account's transfers in id order from zero passes through exactly the
    balances they recorded (single-threaded, ids are the commit order), ending at the
    account's balance; hot system accounts record none."""
    _sell(actors.alice_key, actors.devices[0].iccid, "day-1g", "a")
    _sell(actors.alice_key, actors.devices[1].iccid, "credit-50", "b")
    credit_float(actors.alice, 1234, "more float")
    _sell(actors.alice_key, actors.devices[1].iccid, "credit-50", "c")
    running: dict[int, int] = Counter()
    checked = 0
    for t in Transfer.objects.order_by("id").select_related("source", "destination"):
        running[t.source_id] -= t.amount
        running[t.destination_id] += t.amount
        for account, recorded in (
            (t.source, t.source_balance),
            (t.destination, t.destination_balance),
        ):
            if account.hot:
                assert recorded is None, (t, account.code)
            else:
                assert recorded == running[account.pk], (t, account.code)
                checked += 1
    assert checked >= 8
    assert audit() == []


def _chain_holds(start: int, end: int, steps: list[tuple[int, int]]) -> bool:
    """Do the recorded ``(before, after)`` steps of one account, in some order, lead from
    ``start`` to ``end`` with each step starting where another ended? (Under concurrency the
    commit order is the float row's lock order, not the id order; a reported value that the
    account never held breaks the chain.)"""
    befores = Counter(before for before, _after in steps)
    afters = Counter(after for _before, after in steps)
    befores[end] += 1
    afters[start] += 1
    return befores == afters


@postgresql_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fast", [True, False], ids=["hot-path", "general-path"])
def test_concurrent_sales_and_credits_report_only_floats_that_existed_and_never_deadlock(
    actors: Actors, settings: Any, caplog: pytest.LogCaptureFixture, fast: bool
) -> None:
    """Bundle and credit sales on shared new cards, from 12 threads, while the operator
    credits the float: no 500, no deadlock (nor a retried victim: the lock order prevents
    them), every reported float a value of the float's real history."""
    settings.FAST_TOPUP = fast
    caplog.set_level(logging.WARNING)
    reseller, key = create_reseller("Chain Shop", initial_float=5_000_00)
    start = 0  # the float's history starts empty; its first step is the initial credit
    # 36 new cards, each sold a bundle and a credit plan at the same moment: the first sales
    # that change the card's row (activation, pay-per-use) race each other on every card.
    cards = [create_device(kind="esim", iccid=iccid(100 + n)) for n in range(36)]
    assert all(c.status == DeviceStatus.IN_STOCK and not c.payg for c in cards)
    jobs: list[Any] = []
    for i in range(72):
        card = cards[i // 2]
        plan = "credit-50" if i % 2 else "day-1g"
        jobs.append(topup_job(key, {"device": card.iccid, "plan": plan, "reference": f"s{i}"}))
        if i % 8 == 0:

            def credit(n: int = i) -> None:
                credit_float(Reseller.objects.get(pk=reseller.pk), 3_00 + n, f"credit {n}")

            jobs.append(credit)
    results = run_concurrently(jobs, threads=12, timeout=120)

    responses = [r for r in results if r is not None]
    assert Counter(r.status_code for r in responses) == {201: 72}
    float_transfers = Transfer.objects.filter(
        Q(source_id=reseller.float_account_id) | Q(destination_id=reseller.float_account_id)
    )
    steps = []
    for t in float_transfers:
        if t.source_id == reseller.float_account_id:
            assert t.source_balance is not None
            steps.append((t.source_balance + t.amount, t.source_balance))
        else:
            assert t.destination_balance is not None
            steps.append((t.destination_balance - t.amount, t.destination_balance))
    end = float_of(reseller)
    assert _chain_holds(start, end, steps)
    assert min(after for _before, after in steps) >= 0
    for r in responses:
        body = r.json()
        pay = Transfer.objects.get(idempotency_key=f"order:{body['id']}:pay")
        assert body["float_balance"]["amount"] == _amount(pay.source_balance)
    assert Order.objects.filter(reseller=reseller, status=OrderStatus.FULFILLED).count() == 72
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "deadlock" in m.lower() or "victim" in m], messages
    assert audit() == []


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_deadlock_victim_on_the_general_path_is_retried_not_a_500(
    actors: Actors, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real deadlock, made on purpose with two transactions locking two float rows in
    opposite orders, inside the sale's transaction: PostgreSQL kills one, and the sale runs
    again and answers 201."""
    settings.FAST_TOPUP = False
    from simtopup.api import reseller as reseller_api

    other, _key = create_reseller("Other Shop", initial_float=1000)
    mine = actors.alice.float_account_id
    theirs = other.float_account_id
    ready = threading.Barrier(2, timeout=10)
    attempts = Counter[str]()
    real_sell = reseller_api.sell_topup

    def sell_after_a_lock_cycle(*args: Any, **kwargs: Any) -> Any:
        attempts["sale"] += 1
        if attempts["sale"] == 1:
            with connection.cursor() as cursor:
                # This side checks for the cycle first, so PostgreSQL picks it as the victim.
                cursor.execute("SET LOCAL deadlock_timeout = '50ms'")
                cursor.execute("SELECT 1 FROM ledger_account WHERE id = %s FOR UPDATE", [theirs])
                ready.wait()
                # The other transaction holds ours and now waits for theirs: a cycle.
                cursor.execute("SELECT 1 FROM ledger_account WHERE id = %s FOR UPDATE", [mine])
        return real_sell(*args, **kwargs)

    def other_transaction() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("BEGIN")
                cursor.execute("SET LOCAL deadlock_timeout = '10s'")
                cursor.execute("SELECT 1 FROM ledger_account WHERE id = %s FOR UPDATE", [mine])
                ready.wait()
                with contextlib.suppress(OperationalError):
                    cursor.execute(
                        "SELECT 1 FROM ledger_account WHERE id = %s FOR UPDATE", [theirs]
                    )
                cursor.execute("ROLLBACK")
        finally:
            connection.close()

    monkeypatch.setattr(reseller_api, "sell_topup", sell_after_a_lock_cycle)
    thread = threading.Thread(target=other_transaction)
    thread.start()
    response = _sell(actors.alice_key, actors.device.iccid, "day-1g", "cycle")
    thread.join(20)
    assert response.status_code == 201, response.content
    assert attempts["sale"] == 2  # the victim's first run wrote nothing; the second sold
    assert Order.objects.filter(reference="cycle", status=OrderStatus.FULFILLED).count() == 1
    assert audit() == []


def test_durable_runs_a_victim_again_and_gives_up_after_the_bound(db: None) -> None:
    calls: list[int] = []

    def victim_twice() -> str:
        calls.append(1)
        if len(calls) <= 2:
            raise OperationalError("deadlock detected") from psycopg.errors.DeadlockDetected()
        return "done"

    assert durable(victim_twice) == "done"
    assert len(calls) == 3

    def always() -> None:
        raise OperationalError("could not serialize") from psycopg.errors.SerializationFailure()

    with pytest.raises(OperationalError) as caught:
        durable(always, attempts=3)
    assert is_conflict(caught.value)

    def not_a_conflict() -> None:
        calls.append(1)
        raise OperationalError("connection refused")

    calls.clear()
    with pytest.raises(OperationalError):
        durable(not_a_conflict)
    assert len(calls) == 1
