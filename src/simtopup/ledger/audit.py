"""`simtopup check-ledger`: verify the ledger invariants on a live database.

Every check of one audit reads the same consistent snapshot of the database, so that sales
committing while it runs cannot make it see half of a movement (an account's new cached
balance without the transfer that explains it, money in clearing without the order that
holds it):

* PostgreSQL: one transaction at ``REPEATABLE READ, READ ONLY``; its snapshot is taken by
  its first query, so the ``SET TRANSACTION`` must come before any other statement in it;
* SQLite: one *deferred* read transaction. The project opens its write transactions with
  ``BEGIN IMMEDIATE`` (settings.py), which would hold the write lock — and stop every sale —
  for the whole audit; a deferred transaction takes no lock until it writes (it never does:
  ``PRAGMA query_only`` is on), and in WAL mode it reads one snapshot from its first read
  while writers go on.

Inside a transaction the caller already opened (a test's, or a caller that wants the audit
to see its own uncommitted writes) the audit reads in that transaction, at its isolation.

Memory stays bounded however large the ledger: accounts stream in primary-key order, each
row carrying its balance derived from the transfers, computed by the database in the same
statement; only per-unit totals and the clearing accounts are kept.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from simtopup.ledger.models import Account, LedgerAudit, Transfer

logger = logging.getLogger("simtopup.ledger")

# Domains register what their clearing accounts should hold right now (code → amount),
# e.g. orders: the money of orders paid but not yet fulfilled or refunded. They run inside
# the audit's snapshot.
CLEARING_EXPECTATIONS: list[Callable[[], dict[str, int]]] = []
# Domains register further consistency checks that return violation lines (same snapshot).
EXTRA_CHECKS: list[Callable[[], list[str]]] = []

# Accounts fetched per round trip while streaming.
CHUNK_SIZE = 2000
# Scheduled audits: how many results are kept, how many violation lines each keeps, and how
# many lines the error log shows.
KEPT_AUDITS = 100
KEPT_LINES = 100
LOGGED_LINES = 5


@dataclass(frozen=True)
class AuditResult:
    violations: list[str]
    # When the audit began, just before its first read took the snapshot.
    checked_at: datetime
    accounts: int
    transfers: int
    duration_ms: int

    @property
    def ok(self) -> bool:
        return not self.violations

    def as_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "violations": self.violations,
            "checked_at": self.checked_at.astimezone(UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "accounts": self.accounts,
            "transfers": self.transfers,
            "duration_ms": self.duration_ms,
        }


@contextmanager
def read_snapshot() -> Iterator[None]:
    """One read-only transaction in which every read sees the same committed state."""
    if connection.in_atomic_block:
        yield
    elif connection.vendor == "postgresql":
        # Django's connection health check, if due, runs before BEGIN (set_autocommit), so
        # this is the transaction's first statement; PostgreSQL refuses it after any query,
        # so a snapshot taken earlier would fail loudly, never silently.
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield
    elif connection.vendor == "sqlite":
        with _sqlite_deferred_read():
            yield
    else:
        with transaction.atomic():
            yield


@contextmanager
def _sqlite_deferred_read() -> Iterator[None]:
    # transaction_mode is how Django's SQLite backend begins a transaction (BEGIN <mode>);
    # connecting sets it from the settings, so connect first, then begin this one deferred.
    wrapper = cast(Any, connection)
    wrapper.ensure_connection()
    mode = wrapper.transaction_mode
    wrapper.transaction_mode = "DEFERRED"
    try:
        with transaction.atomic():
            wrapper.transaction_mode = mode
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA query_only = ON")
            yield
    finally:
        wrapper.transaction_mode = mode
        try:
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA query_only = OFF")
        except Exception:
            connection.close()  # never hand a read-only connection to the next writer
            raise


def _accounts_with_derived_balances() -> str:
    """Every account in primary-key order with the balance its transfers add up to, in one
    statement (so one snapshot even outside a transaction): the database aggregates the
    transfers, Python sees one row per account."""
    account = connection.ops.quote_name(Account._meta.db_table)
    transfer = connection.ops.quote_name(Transfer._meta.db_table)
    return f"""
SELECT a.id, a.code, a.unit, a.balance, a.hot, a.allow_negative, a.clearing,
       COALESCE(d.total, 0)
FROM {account} a
LEFT JOIN (
    SELECT m.account_id, SUM(m.amount) AS total
    FROM (
        SELECT destination_id AS account_id, amount FROM {transfer}
        UNION ALL
        SELECT source_id AS account_id, -amount AS amount FROM {transfer}
    ) m
    GROUP BY m.account_id
) d ON d.account_id = a.id
ORDER BY a.id"""


def _stream(sql: str) -> Iterator[tuple[Any, ...]]:
    # A server-side cursor on PostgreSQL (unless the settings disable them, for a pooler in
    # transaction mode); SQLite's cursors fetch lazily anyway.
    if connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS"):
        cursor = connection.cursor()
    else:
        cursor = connection.chunked_cursor()
    with cursor:
        cursor.execute(sql)
        while rows := cursor.fetchmany(CHUNK_SIZE):
            yield from rows


def _checks() -> tuple[list[str], int]:
    """Every invariant, read as the caller's transaction sees the database: violation lines
    (an empty list: the ledger is sound) and the number of accounts read."""
    problems: list[str] = []
    expected: dict[str, int] = {}
    for hook in CLEARING_EXPECTATIONS:
        for code, amount in hook().items():
            expected[code] = expected.get(code, 0) + amount
    per_unit: dict[str, int] = defaultdict(int)
    # The derived balance of every clearing account and of every account a domain expects
    # money in (a handful), by code.
    watched: dict[str, int] = {}
    clearing: set[str] = set()
    accounts = 0
    for _id, code, unit, cached, hot, allow_negative, is_clearing, total in _stream(
        _accounts_with_derived_balances()
    ):
        accounts += 1
        truth = int(total)
        per_unit[unit] += truth
        if hot:
            if cached != 0:
                problems.append(f"hot account {code} has a cached balance {cached}")
        elif cached != truth:
            problems.append(
                f"account {code}: cached balance {cached} != sum of its transfers {truth}"
            )
        if not allow_negative and truth < 0:
            problems.append(f"account {code} is below its floor: {truth}")
        if is_clearing:
            clearing.add(code)
        if is_clearing or code in expected:
            watched[code] = truth
    for unit, unit_total in sorted(per_unit.items()):
        if unit_total != 0:
            problems.append(f"unit {unit}: balances sum to {unit_total}, not 0")
    for t in (
        Transfer.objects.exclude(unit=F("source__unit"))
        .union(Transfer.objects.exclude(unit=F("destination__unit")))
        .order_by("id")[:20]
    ):
        problems.append(f"transfer {t.id} in {t.unit} joins accounts of another unit")
    # Transfers carry no foreign-key constraint (see migration 0004): make sure none names an
    # account that does not exist.
    dangling = Transfer.objects.filter(
        ~Exists(Account.objects.filter(pk=OuterRef("source_id")))
        | ~Exists(Account.objects.filter(pk=OuterRef("destination_id")))
    ).values_list("id", flat=True)
    for transfer_id in dangling.order_by("id")[:20]:
        problems.append(f"transfer {transfer_id} names an account that does not exist")
    if Transfer.objects.filter(amount__lte=0).exists():
        problems.append("transfers with a non-positive amount exist")
    # Every clearing account, and every one a domain expects money in — even if it was never
    # created (an order marked paid whose money never moved leaves no clearing account).
    for code in sorted(clearing | {code for code, amount in expected.items() if amount}):
        truth = watched.get(code, 0)
        want = expected.get(code, 0)
        if truth != want:
            problems.append(
                f"clearing account {code} holds {truth}, but outstanding items account for {want}"
            )
    for check in EXTRA_CHECKS:
        problems.extend(check())
    return problems, accounts


def run_audit(*, snapshot: bool = True) -> AuditResult:
    """Check every invariant in one snapshot (:func:`read_snapshot`).

    ``snapshot=False`` lets each statement read the database as of its own start, as the
    audit did before it had a snapshot; it is kept to show (tests/test_live_audit.py) the
    false violations a live database then produces."""
    started = time.monotonic()
    with read_snapshot() if snapshot else nullcontext():
        checked_at = timezone.now()
        transfers = Transfer.objects.count()  # the first read takes the snapshot
        problems, accounts = _checks()
    return AuditResult(
        violations=problems,
        checked_at=checked_at,
        accounts=accounts,
        transfers=transfers,
        duration_ms=round((time.monotonic() - started) * 1000),
    )


def audit() -> list[str]:
    """Return one line per violated invariant; an empty list means the ledger is sound."""
    return run_audit().violations


def record_audit() -> LedgerAudit:
    """Audit, store the result for /metrics (keeping the newest :data:`KEPT_AUDITS`), and
    log any violation at ERROR. The worker runs this on its schedule."""
    result = run_audit()
    with transaction.atomic():
        row = LedgerAudit.objects.create(
            checked_at=result.checked_at,
            ok=result.ok,
            violations_count=len(result.violations),
            violations=result.violations[:KEPT_LINES],
            accounts=result.accounts,
            transfers=result.transfers,
            duration_ms=result.duration_ms,
        )
        oldest_kept = list(
            LedgerAudit.objects.order_by("-id").values_list("id", flat=True)[
                KEPT_AUDITS - 1 : KEPT_AUDITS
            ]
        )
        if oldest_kept:
            LedgerAudit.objects.filter(id__lt=oldest_kept[0]).delete()
    if result.violations:
        more = len(result.violations) - LOGGED_LINES
        logger.error(
            "ledger audit: %d violation(s): %s%s",
            len(result.violations),
            "; ".join(result.violations[:LOGGED_LINES]),
            f"; … and {more} more (simtopup check-ledger lists them all)" if more > 0 else "",
        )
    else:
        logger.info(
            "ledger audit: sound (%d accounts, %d transfers, %d ms)",
            result.accounts,
            result.transfers,
            result.duration_ms,
        )
    return row
