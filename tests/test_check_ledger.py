"""`simtopup check-ledger`: exit 0 on a sound ledger, 1 with a precise report on any corruption.

Each test corrupts the ledger the way real damage could happen — a stray ``UPDATE``, a raw
``INSERT`` that bypasses :func:`~simtopup.ledger.actions.post`, an order whose money never
reached clearing — and asserts the exact violation lines.

Some corruption the database itself refuses (the CHECK constraints on accounts and transfers,
the immutability trigger). Those tests first prove the guard refuses it, then lift the guards
inside a savepoint (as a restore without constraints or a hand-edited database would) to prove
``check-ledger`` still catches it; the savepoint is rolled back, bringing the guards back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F
from django.test import Client
from django.utils import timezone

from simtopup import cli
from simtopup.ledger import audit as audit_module
from simtopup.ledger.actions import Posting, open_account, post, system_account, transfer
from simtopup.ledger.audit import audit
from simtopup.ledger.models import BYTES, Account, AccountKind, Transfer
from simtopup.orders.models import Channel, Order, OrderStatus
from tests.support import Actors, post_json

CNY = "CNY"
OK = "ledger OK: double entry, cached balances, floors and clearing all hold"


@dataclass
class Report:
    returncode: int
    stdout: str
    violations: list[str]
    error: str = ""


def check_ledger() -> Report:
    out, err = StringIO(), StringIO()
    try:
        call_command("check_ledger", stdout=out, stderr=err)
    except CommandError as exc:
        lines = err.getvalue().splitlines()
        assert all(line.startswith("VIOLATION: ") for line in lines), lines
        violations = [line.removeprefix("VIOLATION: ") for line in lines]
        return Report(exc.returncode, out.getvalue(), violations, str(exc))
    assert err.getvalue() == ""
    return Report(0, out.getvalue().strip(), [])


def check_ledger_json() -> tuple[int, dict[str, Any]]:
    """``check-ledger --json``: the exit code and the one JSON object printed."""
    out, err = StringIO(), StringIO()
    returncode = 0
    try:
        call_command("check_ledger", json=True, stdout=out, stderr=err)
    except CommandError as exc:
        returncode = exc.returncode
    assert err.getvalue() == ""
    report = json.loads(out.getvalue())
    assert list(report) == [
        "ok",
        "violations",
        "checked_at",
        "accounts",
        "transfers",
        "duration_ms",
    ]
    checked_at = report["checked_at"]
    assert checked_at.endswith("Z")
    assert datetime.fromisoformat(checked_at).utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - datetime.fromisoformat(checked_at)) < timedelta(minutes=1)
    assert isinstance(report["duration_ms"], int)
    assert report["duration_ms"] >= 0
    assert report["accounts"] == Account.objects.count()
    assert report["transfers"] == Transfer.objects.count()
    return returncode, report


def assert_violations(*expected: str) -> None:
    report = check_ledger()
    assert report.violations == list(expected)
    assert report.returncode == 1
    assert report.error == f"ledger check failed: {len(expected)} violation(s)"
    assert report.stdout == ""
    returncode, machine = check_ledger_json()
    assert (returncode, machine["ok"], machine["violations"]) == (1, False, list(expected))


def assert_clean() -> None:
    assert check_ledger() == Report(0, OK, [])
    returncode, machine = check_ledger_json()
    assert (returncode, machine["ok"], machine["violations"]) == (0, True, [])


@contextmanager
def guards_lifted() -> Iterator[None]:
    """Inside a savepoint: drop the CHECK constraints and the immutability trigger, then roll
    everything back (guards and corruption alike) on the way out."""
    sqlite = connection.vendor == "sqlite"
    with transaction.atomic(), connection.cursor() as cursor:
        if sqlite:
            cursor.execute("PRAGMA ignore_check_constraints = ON")
            cursor.execute("DROP TRIGGER ledger_transfer_immutable")
            cursor.execute("DROP TRIGGER ledger_transfer_references_exist")
        else:
            # ALTER TABLE refuses to run while deferred foreign-key checks are pending.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(
                "ALTER TABLE ledger_account DROP CONSTRAINT ledger_account_floor, "
                "DROP CONSTRAINT ledger_hot_account_uncached"
            )
            cursor.execute("ALTER TABLE ledger_transfer DROP CONSTRAINT ledger_transfer_positive")
            cursor.execute("ALTER TABLE ledger_transfer DISABLE TRIGGER ledger_transfer_immutable")
            cursor.execute(
                "ALTER TABLE ledger_transfer DISABLE TRIGGER ledger_transfer_references_exist"
            )
        try:
            yield
        finally:
            if sqlite:
                cursor.execute("PRAGMA ignore_check_constraints = OFF")
            else:
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")  # Django's default again
            transaction.set_rollback(True)


@dataclass
class Ledger:
    card: Account  # device credit, CNY
    float: Account  # reseller float, CNY
    bundle: Account  # data bundle, BYTES
    overage: Account  # device overage, BYTES, may go negative
    revenue: Account
    funding: Account
    adjustments: Account
    issued: Account
    consumed: Account


def move(source: Account, destination: Account, amount: int, key: str) -> Transfer:
    with transaction.atomic():
        return transfer(source, destination, amount, kind="test", key=key)


def refreshed(account: Account) -> Account:
    account.refresh_from_db()
    return account


@pytest.fixture
def ledger(db: None) -> Ledger:
    """A small, sound, busy ledger in two units."""
    book = Ledger(
        card=open_account("test:card", AccountKind.DEVICE_CREDIT, CNY),
        float=open_account("test:float", AccountKind.RESELLER_FLOAT, CNY),
        bundle=open_account("test:bundle", AccountKind.BUNDLE, BYTES),
        overage=open_account(
            "test:overage", AccountKind.DEVICE_OVERAGE, BYTES, allow_negative=True
        ),
        revenue=system_account("revenue", CNY),
        funding=system_account("float_funding", CNY),
        adjustments=system_account("adjustments", CNY),
        issued=system_account("data_issued", BYTES),
        consumed=system_account("data_consumed", BYTES),
    )
    move(book.funding, book.float, 100_000, "float")
    move(book.float, book.card, 5_000, "sale")
    move(book.card, book.revenue, 1_000, "charge")
    move(book.issued, book.bundle, 2**30, "grant")
    with transaction.atomic():
        post(
            [
                Posting(book.bundle, book.consumed, 2**30, "usage", "usage"),
                Posting(book.overage, book.consumed, 2**20, "overage", "overage"),
            ]
        )
    return book


def test_an_empty_ledger_is_sound(db: None) -> None:
    assert_clean()


def test_a_busy_sound_ledger_passes(ledger: Ledger) -> None:
    assert refreshed(ledger.overage).balance == -(2**20)  # allowed: overage has no floor
    assert refreshed(ledger.bundle).balance == 0
    assert_clean()


def test_a_transfer_naming_a_missing_account_is_reported(ledger: Ledger) -> None:
    # Transfers have no foreign-key constraint (ledger migration 0004): a trigger refuses
    # such a row; with it lifted, the audit still finds it.
    with guards_lifted(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ledger_transfer (amount, unit, kind, idempotency_key, memo, created_at,"
            " source_id, destination_id) VALUES (5, 'CNY', 'test', 'dangling', '', %s, %s, %s)",
            [timezone.now(), 10**9, 10**9 + 1],
        )
        dangling = Transfer.objects.get(idempotency_key="dangling")
        assert_violations(f"transfer {dangling.pk} names an account that does not exist")


def test_a_cached_balance_that_drifted_is_reported(ledger: Ledger) -> None:
    Account.objects.filter(pk=ledger.card.pk).update(balance=F("balance") + 1)
    assert_violations("account test:card: cached balance 4001 != sum of its transfers 4000")


def test_drift_below_zero_on_an_account_without_a_floor_is_reported(ledger: Ledger) -> None:
    Account.objects.filter(pk=ledger.overage.pk).update(balance=-(2**21))
    assert_violations(
        f"account test:overage: cached balance {-(2**21)} != sum of its transfers {-(2**20)}"
    )


def test_the_database_refuses_a_bounded_balance_below_zero(ledger: Ledger) -> None:
    # Why a broken floor can't come from a stray UPDATE of the cached balance: the CHECK
    # constraint ledger_account_floor refuses it.
    for account in (ledger.card, ledger.float, ledger.bundle):
        with pytest.raises(IntegrityError), transaction.atomic():
            Account.objects.filter(pk=account.pk).update(balance=-1)
    assert (refreshed(ledger.card).balance, refreshed(ledger.bundle).balance) == (4000, 0)
    assert_clean()


def test_a_hot_account_below_a_floor_is_reported(ledger: Ledger) -> None:
    # A system account wrongly flagged as floored after it went negative (no cached balance,
    # so no CHECK constraint can see it).
    Account.objects.filter(pk=ledger.funding.pk).update(allow_negative=False)
    assert_violations("account system:float_funding:CNY is below its floor: -100000")


def test_an_account_re_flagged_as_floored_while_negative_is_reported(ledger: Ledger) -> None:
    # The CHECK constraint lets this through only with a zeroed cache; both lies show.
    Account.objects.filter(pk=ledger.overage.pk).update(allow_negative=False, balance=0)
    assert_violations(
        f"account test:overage: cached balance 0 != sum of its transfers {-(2**20)}",
        f"account test:overage is below its floor: {-(2**20)}",
    )


def test_a_floor_broken_behind_the_constraints_is_reported(ledger: Ledger) -> None:
    with guards_lifted():
        # A raw transfer taking more than the card holds, with a cache that agrees with it.
        Transfer.objects.create(
            source=ledger.card,
            destination=ledger.revenue,
            amount=4_300,
            unit=CNY,
            kind="raw",
            idempotency_key="raw",
        )
        Account.objects.filter(pk=ledger.card.pk).update(balance=-300)
        assert_violations("account test:card is below its floor: -300")
    assert refreshed(ledger.card).balance == 4000
    assert_clean()


def test_the_database_refuses_a_cached_balance_on_a_hot_account(ledger: Ledger) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Account.objects.filter(pk=ledger.revenue.pk).update(balance=7)
    assert_clean()


def test_a_hot_account_with_a_cached_balance_is_reported(ledger: Ledger) -> None:
    with guards_lifted():
        Account.objects.filter(pk=ledger.revenue.pk).update(balance=7)
        assert_violations("hot account system:revenue:CNY has a cached balance 7")
    assert refreshed(ledger.revenue).balance == 0
    assert_clean()


def test_a_hot_flag_set_on_a_bounded_account_is_reported(ledger: Ledger) -> None:
    # The CHECK constraint lets this through only for a zero cache; here the card holds 4000.
    with pytest.raises(IntegrityError), transaction.atomic():
        Account.objects.filter(pk=ledger.card.pk).update(hot=True)
    with guards_lifted():
        Account.objects.filter(pk=ledger.card.pk).update(hot=True)
        assert_violations("hot account test:card has a cached balance 4000")


def test_an_unsettled_clearing_account_is_reported(ledger: Ledger) -> None:
    clearing = system_account("order_clearing", CNY)
    # Money taken into clearing for no order at all.
    move(ledger.float, clearing, 500, "orphan")
    assert_violations(
        "clearing account system:order_clearing:CNY holds 500, but outstanding items account for 0"
    )
    # Settling it (a correcting transfer, never an edit) makes the ledger sound again.
    move(clearing, ledger.revenue, 500, "orphan:settle")
    assert_clean()


def test_a_settled_order_reopened_as_paid_is_reported(actors: Actors, alice: Client) -> None:
    body = {"device": actors.device.iccid, "plan": "day-1g", "reference": "ref-1"}
    response = post_json(alice, "/reseller/v1/topups", body)
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "fulfilled"
    assert_clean()
    # Fulfilled, so its 4.60 left clearing; claiming it is still paid must not go unnoticed.
    Order.objects.filter(pk=response.json()["id"]).update(status=OrderStatus.PAID)
    assert_violations(
        "clearing account system:order_clearing:CNY holds 0, but outstanding items account for 460"
    )


def test_a_paid_order_whose_money_never_reached_clearing_is_reported(actors: Actors) -> None:
    # No order ever moved Hong Kong dollars, so no HKD clearing account exists at all.
    assert not Account.objects.filter(code="system:order_clearing:HKD").exists()
    Order.objects.create(
        channel=Channel.RESELLER,
        status=OrderStatus.PAID,
        device=actors.device,
        plan=actors.plans["day-1g"],
        reseller=actors.alice,
        reference="lost",
        amount=460,
        retail_amount=500,
        currency="HKD",
    )
    assert_violations(
        "clearing account system:order_clearing:HKD holds 0, but outstanding items account for 460"
    )


def test_a_transfer_in_a_foreign_unit_is_reported(ledger: Ledger) -> None:
    # A raw insert (no post()) between two CNY accounts, in bytes.
    raw = Transfer.objects.create(
        source=ledger.adjustments,
        destination=ledger.revenue,
        amount=100,
        unit=BYTES,
        kind="raw",
        idempotency_key="raw",
    )
    assert_violations(f"transfer {raw.pk} in BYTES joins accounts of another unit")


def test_a_transfer_across_units_is_reported(ledger: Ledger) -> None:
    raw = Transfer.objects.create(
        source=ledger.adjustments,
        destination=ledger.issued,
        amount=100,
        unit=CNY,
        kind="raw",
        idempotency_key="raw",
    )
    assert_violations(
        "unit BYTES: balances sum to 100, not 0",
        "unit CNY: balances sum to -100, not 0",
        f"transfer {raw.pk} in CNY joins accounts of another unit",
    )


def test_a_transfer_into_an_account_of_another_unit_is_reported_once(ledger: Ledger) -> None:
    raws = [
        Transfer.objects.create(
            source=ledger.issued,
            destination=ledger.adjustments,
            amount=1,
            unit=unit,
            kind="raw",
            idempotency_key=f"raw:{unit}",
        )
        for unit in (BYTES, CNY, "USD")
    ]
    assert_violations(
        "unit BYTES: balances sum to -3, not 0",
        "unit CNY: balances sum to 3, not 0",
        *(f"transfer {raw.pk} in {raw.unit} joins accounts of another unit" for raw in raws),
    )


def test_the_database_refuses_a_non_positive_transfer(ledger: Ledger) -> None:
    for amount in (0, -5):
        with pytest.raises(IntegrityError), transaction.atomic():
            Transfer.objects.create(
                source=ledger.adjustments,
                destination=ledger.revenue,
                amount=amount,
                unit=CNY,
                kind="raw",
                idempotency_key="raw",
            )
    assert_clean()


def test_a_non_positive_transfer_behind_the_constraints_is_reported(ledger: Ledger) -> None:
    with guards_lifted():
        Transfer.objects.create(
            source=ledger.adjustments,
            destination=ledger.revenue,
            amount=-5,
            unit=CNY,
            kind="raw",
            idempotency_key="raw",
        )
        assert_violations("transfers with a non-positive amount exist")
    assert_clean()


def test_an_edited_or_deleted_transfer_is_reported(ledger: Ledger) -> None:
    sale = Transfer.objects.get(idempotency_key="sale")
    with pytest.raises(DatabaseError, match="immutable"), transaction.atomic():
        Transfer.objects.filter(pk=sale.pk).update(amount=4_500)
    with guards_lifted():
        Transfer.objects.filter(pk=sale.pk).update(amount=4_500)
        assert_violations(
            "account test:card: cached balance 4000 != sum of its transfers 3500",
            "account test:float: cached balance 95000 != sum of its transfers 95500",
        )
    with guards_lifted():
        Transfer.objects.filter(pk=sale.pk).delete()
        assert_violations(
            "account test:card: cached balance 4000 != sum of its transfers -1000",
            "account test:card is below its floor: -1000",
            "account test:float: cached balance 95000 != sum of its transfers 100000",
        )
    # The guards are back: the trigger refuses the edit again.
    with pytest.raises(DatabaseError, match="immutable"), transaction.atomic():
        Transfer.objects.filter(pk=sale.pk).update(amount=4_500)
    assert_clean()


def test_every_violation_is_reported_at_once(ledger: Ledger) -> None:
    Account.objects.filter(pk=ledger.card.pk).update(balance=0)
    Account.objects.filter(pk=ledger.bundle.pk).update(balance=1)
    move(ledger.float, system_account("order_clearing", CNY), 500, "orphan")
    assert_violations(
        "account test:card: cached balance 0 != sum of its transfers 4000",
        "account test:bundle: cached balance 1 != sum of its transfers 0",
        "clearing account system:order_clearing:CNY holds 500, but outstanding items account for 0",
    )


def test_domain_checks_are_reported(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        audit_module, "EXTRA_CHECKS", [lambda: [], lambda: ["usage: bundle 7 over-drained"]]
    )
    assert_violations("usage: bundle 7 over-drained")
    monkeypatch.setattr(audit_module, "EXTRA_CHECKS", [lambda: []])
    assert_clean()


def test_the_audit_agrees_with_the_command(ledger: Ledger) -> None:
    assert audit() == []
    Account.objects.filter(pk=ledger.float.pk).update(balance=F("balance") - 1)
    assert (
        audit()
        == check_ledger().violations
        == ["account test:float: cached balance 94999 != sum of its transfers 95000"]
    )


def test_the_command_line_exits_1_on_a_violation(
    transactional_db: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Through the real entry point (`simtopup check-ledger`), so on committed data.
    card = open_account("test:card", AccountKind.DEVICE_CREDIT, CNY)
    move(system_account("adjustments", CNY), card, 700, "fund")
    cli.main(["simtopup", "check-ledger"])
    assert capsys.readouterr().out.strip() == OK
    Account.objects.filter(pk=card.pk).update(balance=701)
    with pytest.raises(SystemExit) as exited:
        cli.main(["simtopup", "check-ledger"])
    assert exited.value.code == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "VIOLATION: account test:card: cached balance 701 != sum of its transfers 700",
        "CommandError: ledger check failed: 1 violation(s)",
    ]
    # --json: one JSON object on stdout for machines, the same exit code.
    with pytest.raises(SystemExit) as exited:
        cli.main(["simtopup", "check-ledger", "--json"])
    assert exited.value.code == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["ok"] is False
    assert report["violations"] == [
        "account test:card: cached balance 701 != sum of its transfers 700"
    ]
    assert (report["accounts"], report["transfers"]) == (
        Account.objects.count(),
        Transfer.objects.count(),
    )
    assert captured.err.splitlines() == ["CommandError: ledger check failed: 1 violation(s)"]
    Account.objects.filter(pk=card.pk).update(balance=700)
    cli.main(["simtopup", "check-ledger", "--json"])
    assert json.loads(capsys.readouterr().out)["ok"] is True
