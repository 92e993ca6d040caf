"""The ledger audit on a live database: one snapshot while sales commit, and on a schedule.

Run during sales, an audit that reads accounts and transfers in separate statements sees
half-finished movements and cries wolf (an account's new cached balance without the transfer
that explains it). These tests force the interleaving (a sale committed from another thread
in the middle of an audit), run audits under real concurrent sales, and check the worker's
scheduled audit, its log line and its /metrics gauges.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.models import F, Sum
from django.test import Client

from simtopup.core.errors import DomainError
from simtopup.ledger import audit as audit_module
from simtopup.ledger.actions import system_account, transfer
from simtopup.ledger.audit import AuditResult, audit, record_audit, run_audit
from simtopup.ledger.models import Account, LedgerAudit, Transfer
from simtopup.ops import janitor
from simtopup.ops.janitor import maybe_audit_ledger, run_janitor
from simtopup.orders.models import Channel, Order, OrderStatus
from simtopup.resellers.actions import credit_float, sell_topup
from tests.staff_support import verify_console
from tests.support import Actors

CLEARING = "system:order_clearing:CNY"


def in_another_thread(work: Callable[[], None], *, timeout: float = 30) -> None:
    """Run ``work`` on its own database connection and wait for it; its errors raise here.
    On SQLite it waits for the write lock 2 s at most, not the configured 30 s."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            if connection.vendor == "sqlite":
                with connection.cursor() as cursor:
                    cursor.execute("PRAGMA busy_timeout = 2000")
            work()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"the other thread did not finish in {timeout} s"
    if errors:
        raise errors[0]


def order_paid_into_clearing(actors: Actors, reference: str) -> Callable[[], None]:
    """A sale half-way: the order is paid and its money sits in clearing (sound: clearing
    holds what the outstanding orders account for)."""

    def work() -> None:
        with transaction.atomic():
            order = Order.objects.create(
                channel=Channel.RESELLER,
                status=OrderStatus.PAID,
                device=actors.device,
                plan=actors.plans["day-1g"],
                reseller=actors.alice,
                reference=reference,
                amount=460,
                retail_amount=500,
                currency="CNY",
            )
            transfer(
                Account.objects.get(pk=actors.alice.float_account_id),
                system_account("order_clearing", "CNY"),
                460,
                kind="order_payment",
                key=f"test:{order.pk}",
            )

    return work


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("snapshot", [True, False], ids=["one-snapshot", "statement-by-statement"])
def test_a_sale_committed_in_the_middle_of_an_audit(
    actors: Actors, monkeypatch: pytest.MonkeyPatch, snapshot: bool
) -> None:
    """The sale commits after the audit read the orders (the domain hooks run first) and
    before it reads the clearing account. In one snapshot the audit sees none of it; read
    statement by statement, it sees the money in clearing without the order that holds it."""
    transfers_before = Transfer.objects.count()
    committed: list[int] = []

    def commit_a_sale_now() -> dict[str, int]:
        in_another_thread(order_paid_into_clearing(actors, "mid-audit"))
        committed.append(Transfer.objects.count())  # read inside the audit, too
        return {}

    hooks = [*audit_module.CLEARING_EXPECTATIONS, commit_a_sale_now]
    monkeypatch.setattr(audit_module, "CLEARING_EXPECTATIONS", hooks)
    result = run_audit(snapshot=snapshot)
    monkeypatch.undo()

    assert committed, "the sale was not committed during the audit"
    if snapshot:
        assert result.violations == []
        assert result.transfers == transfers_before
        assert committed == [transfers_before]  # the writer's commit is invisible inside
    else:
        assert result.violations == [
            f"clearing account {CLEARING} holds 460, but outstanding items account for 0"
        ]
        assert committed == [transfers_before + 1]
    # The sale did commit (the audit did not block it), and the ledger is sound with it.
    after = run_audit()
    assert after.violations == []
    assert after.transfers == transfers_before + 1
    # The audit's connection writes again afterwards (SQLite: query_only is off, and the
    # project's IMMEDIATE transactions are back).
    with transaction.atomic():
        credit_float(actors.bob, 100, "after the audit")
    if connection.vendor == "sqlite":
        assert connection.transaction_mode == "IMMEDIATE"  # type: ignore[attr-defined]
    assert audit() == []


@pytest.mark.django_db(transaction=True)
def test_the_audit_transaction_is_read_only_and_isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def look() -> list[str]:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SHOW transaction_isolation")
                seen["isolation"] = cursor.fetchone()[0]
                cursor.execute("SHOW transaction_read_only")
                seen["read_only"] = cursor.fetchone()[0]
            else:
                cursor.execute("PRAGMA query_only")
                seen["read_only"] = cursor.fetchone()[0]
        seen["in_transaction"] = connection.in_atomic_block
        return []

    monkeypatch.setattr(audit_module, "EXTRA_CHECKS", [look])
    assert audit() == []
    if connection.vendor == "postgresql":
        assert seen == {"isolation": "repeatable read", "read_only": "on", "in_transaction": True}
    else:
        assert seen == {"read_only": 1, "in_transaction": True}


@pytest.mark.django_db(transaction=True)
def test_a_long_audit_does_not_block_a_writer(
    actors: Actors, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the audit's transaction is open (held here by a slow domain check), another
    thread sells a top-up and credits a float: both commit (SQLite: within the 2 s busy
    timeout that thread waits at most)."""

    def sell_and_fund() -> None:
        with transaction.atomic():
            sell_topup(actors.alice, str(actors.device.iccid), "day-1g", "during-audit")
        credit_float(actors.alice, 10_000, "during the audit")

    def slow_check() -> list[str]:
        in_another_thread(sell_and_fund)
        return []

    monkeypatch.setattr(audit_module, "EXTRA_CHECKS", [slow_check])
    assert audit() == []
    monkeypatch.undo()
    assert Order.objects.filter(reference="during-audit", status=OrderStatus.FULFILLED).exists()
    assert audit() == []


# --- under real concurrent sales ----------------------------------------------------------


def split_reads_audit() -> list[str]:
    """The audit as it read before: the transfers' sums, then the accounts, each statement
    on its own (autocommit) — kept here to prove the load below does interleave."""
    derived: dict[int, int] = defaultdict(int)
    for account_id, amount in Transfer.objects.values_list("destination_id").annotate(
        s=Sum("amount")
    ):
        derived[account_id] += amount
    for account_id, amount in Transfer.objects.values_list("source_id").annotate(s=Sum("amount")):
        derived[account_id] -= amount
    problems = []
    per_unit: dict[str, int] = defaultdict(int)
    for account in Account.objects.order_by("id"):
        truth = derived.get(account.id, 0)
        per_unit[account.unit] += truth
        if not account.hot and account.balance != truth:
            problems.append(f"account {account.code}: cached balance {account.balance} != {truth}")
    problems += [f"unit {u}: {total}" for u, total in per_unit.items() if total]
    return problems


@dataclass
class Load:
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[BaseException] = field(default_factory=list)
    sales: int = 0


def seller(actors: Actors, load: Load, n: int) -> None:
    """Sell top-ups (daily passes, and pay-per-use credit: float → clearing → revenue and
    card credit) from both resellers to every device; fund a float when it runs low."""
    plans = ["day-1g", "credit-50", "month-20g"]
    resellers = [actors.alice, actors.bob]
    i = 0
    try:
        while not load.stop.is_set():
            i += 1
            reseller = resellers[i % 2]
            device = actors.devices[(i + n) % len(actors.devices)]
            try:
                with transaction.atomic():
                    sell_topup(reseller, str(device.iccid), plans[i % 3], f"load-{n}-{i}")
                load.sales += 1
            except DomainError as exc:
                if exc.code != "insufficient_float":
                    raise
                credit_float(reseller, 200_000, "load test")
    except BaseException as exc:
        load.errors.append(exc)
    finally:
        connection.close()


@pytest.mark.slow
def test_audits_during_concurrent_sales_are_all_clean(transactional_db: None) -> None:
    """Sellers on three threads while a fourth audits again and again: every audit is
    clean. The load is heavy enough to matter: sales commit while audits read (counted),
    and the old split reads, run between the audits, report false violations."""
    actors = Actors()
    load = Load()
    sellers = [
        threading.Thread(target=seller, args=(actors, load, n), daemon=True) for n in range(3)
    ]
    results: list[AuditResult] = []
    overlapped = 0
    split_false_alarms: list[str] = []
    for thread in sellers:
        thread.start()
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and not load.errors:
            result = run_audit()
            results.append(result)
            # Transfers committed after the audit's snapshot, before it ended.
            if Transfer.objects.count() > result.transfers:
                overlapped += 1
            if not split_false_alarms:
                split_false_alarms = split_reads_audit()
            if len(results) >= 30 and overlapped >= 10 and split_false_alarms:
                break
    finally:
        load.stop.set()
        for thread in sellers:
            thread.join(60)
        connection.close()
    assert not any(t.is_alive() for t in sellers)
    if load.errors:
        raise load.errors[0]
    assert [r.violations for r in results if r.violations] == []
    assert len(results) >= 30, f"{len(results)} audits in 120 s"
    assert overlapped >= 10, f"only {overlapped} of {len(results)} audits overlapped a sale"
    assert split_false_alarms, "the old split reads never saw a half-finished sale"
    assert load.sales > 0
    # At rest, both agree the ledger is sound: the split reads' violations were false.
    assert audit() == []
    assert split_reads_audit() == []


# --- the worker's scheduled audit and /metrics ----------------------------------------------


@pytest.fixture
def scheduler(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.LEDGER_AUDIT_INTERVAL_SECONDS = 300
    monkeypatch.setattr(janitor, "_audit_retry_at", 0.0)


def ledger_metrics() -> dict[str, str]:
    body = Client().get("/metrics").content.decode()
    return {
        name: value
        for name, _, value in (
            line.partition(" ") for line in body.splitlines() if line.startswith("simtopup_ledger_")
        )
    }


def test_metrics_have_no_ledger_sample_before_the_first_audit(db: None) -> None:
    body = Client().get("/metrics").content.decode()
    assert "# TYPE simtopup_ledger_violations gauge" in body
    assert "# TYPE simtopup_ledger_audit_timestamp_seconds gauge" in body
    assert "# TYPE simtopup_ledger_audit_duration_seconds gauge" in body
    assert ledger_metrics() == {}


def test_the_janitor_audits_when_the_interval_has_passed(
    actors: Actors, scheduler: None, caplog: pytest.LogCaptureFixture
) -> None:
    assert run_janitor()["ledger_violations"] == 0
    row = LedgerAudit.objects.get()
    assert (row.ok, row.violations_count, row.violations) == (True, 0, [])
    assert row.accounts == Account.objects.count()
    assert row.transfers == Transfer.objects.count() > 0
    metrics = ledger_metrics()
    assert metrics["simtopup_ledger_violations"] == "0"
    assert float(metrics["simtopup_ledger_audit_timestamp_seconds"]) == pytest.approx(
        row.checked_at.timestamp(), abs=0.001
    )
    assert float(metrics["simtopup_ledger_audit_duration_seconds"]) == row.duration_ms / 1000
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []

    # Not due again until the interval has passed since the latest audit.
    assert run_janitor()["ledger_violations"] is None
    assert maybe_audit_ledger() is None
    assert LedgerAudit.objects.count() == 1
    LedgerAudit.objects.update(checked_at=F("checked_at") - timedelta(seconds=301))
    assert maybe_audit_ledger() is not None
    assert LedgerAudit.objects.count() == 2


def test_a_violation_is_stored_logged_and_shown_in_metrics(
    actors: Actors, scheduler: None, caplog: pytest.LogCaptureFixture
) -> None:
    float_account = actors.alice.float_account
    Account.objects.filter(pk=float_account.pk).update(balance=F("balance") + 1)
    Account.objects.filter(pk=actors.bob.float_account_id).update(balance=F("balance") + 2)
    caplog.set_level(logging.INFO, logger="simtopup.ledger")

    assert run_janitor()["ledger_violations"] == 2

    row = LedgerAudit.objects.get()
    first = f"account {float_account.code}: cached balance 100001 != sum of its transfers 100000"
    assert (row.ok, row.violations_count) == (False, 2)
    assert row.violations[0] == first
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [(r.name, r.getMessage().split(": ", 2)[:2]) for r in errors] == [
        ("simtopup.ledger", ["ledger audit", "2 violation(s)"])
    ]
    assert first in errors[0].getMessage()
    assert ledger_metrics()["simtopup_ledger_violations"] == "2"

    # Repaired (here: the stray edits undone); the next audit says so.
    Account.objects.filter(pk=float_account.pk).update(balance=F("balance") - 1)
    Account.objects.filter(pk=actors.bob.float_account_id).update(balance=F("balance") - 2)
    record_audit()
    assert ledger_metrics()["simtopup_ledger_violations"] == "0"


def test_only_the_newest_audits_are_kept(
    db: None, scheduler: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_module, "KEPT_AUDITS", 3)
    ids = [record_audit().pk for _ in range(5)]
    assert list(LedgerAudit.objects.order_by("id").values_list("id", flat=True)) == ids[2:]


def test_many_violations_keep_their_first_lines_and_count_all(
    db: None, scheduler: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    lines = [f"usage: bundle {n} over-drained" for n in range(150)]
    monkeypatch.setattr(audit_module, "EXTRA_CHECKS", [lambda: lines])
    row = record_audit()
    assert row.violations_count == 150
    assert row.violations == lines[:100]
    (error,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert error.getMessage() == (
        "ledger audit: 150 violation(s): "
        + "; ".join(lines[:5])
        + "; … and 145 more (simtopup check-ledger lists them all)"
    )


def test_the_scheduled_audit_can_be_switched_off(db: None, scheduler: None, settings: Any) -> None:
    settings.LEDGER_AUDIT_INTERVAL_SECONDS = 0
    assert run_janitor()["ledger_violations"] is None
    assert not LedgerAudit.objects.exists()


def test_a_failing_audit_is_logged_and_not_retried_before_the_interval(
    db: None, scheduler: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    def broken() -> list[str]:
        calls.append(1)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(audit_module, "EXTRA_CHECKS", [broken])
    result = run_janitor()  # the rest of the pass still reports
    assert result["ledger_violations"] is None
    assert "orders" in result
    assert maybe_audit_ledger() is None
    assert calls == [1]
    assert not LedgerAudit.objects.exists()
    (error,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert error.getMessage() == "ledger audit failed; next attempt in 300 s"
    assert error.exc_info is not None


def test_the_operator_console_lists_audits_read_only(
    db: None, scheduler: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.contrib.auth.models import User

    monkeypatch.setattr(audit_module, "EXTRA_CHECKS", [lambda: ["usage: bundle 7 over-drained"]])
    row = record_audit()
    console = Client()
    verify_console(console, User.objects.create_superuser("operator", "op@example.com", "unused"))
    listing = console.get("/admin/ledger/ledgeraudit/")
    assert listing.status_code == 200
    assert "1 ledger audit" in listing.content.decode()
    detail = console.get(f"/admin/ledger/ledgeraudit/{row.pk}/change/").content.decode()
    assert "usage: bundle 7 over-drained" in detail
    assert 'type="submit" value="Save"' not in detail
