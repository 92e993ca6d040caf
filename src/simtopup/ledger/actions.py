"""The only code that moves value. Callers open the transaction; this module posts inside it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from simtopup.core.bulk import insert_rows
from simtopup.core.errors import DomainError
from simtopup.ledger.models import BYTES, Account, AccountKind, Transfer

# Hot system accounts: code stem → clearing?
SYSTEM_ACCOUNTS: dict[str, bool] = {
    "revenue": False,  # money earned: bundles sold, pay-per-use charged
    "order_clearing": True,  # money taken for orders not yet fulfilled or refunded
    # Money payment providers took for us: captures in, refunds out. Its balance is what
    # payments and refunds say (payments/apps.py registers the expectation).
    "gateway_clearing": True,
    "float_funding": False,  # money resellers paid the operator for their float
    "reseller_discount": False,  # credit given to cards beyond the reseller's wholesale price
    "adjustments": False,  # operator corrections
    "data_issued": False,  # bytes granted in bundles (BYTES)
    "data_consumed": False,  # bytes used on the network (BYTES)
}


# Above this many bounded accounts, post() updates them all in one statement (usage batches).
ONE_STATEMENT_FROM = 4


class _Bounded(Protocol):
    kind: str
    balance: int
    allow_negative: bool


class InsufficientFunds(DomainError):
    def __init__(self, account: _Bounded) -> None:
        if account.kind == AccountKind.RESELLER_FLOAT:
            super().__init__(
                "insufficient_float", _("The reseller float is too low for this top-up."), 402
            )
        elif account.kind == AccountKind.DEVICE_CREDIT:
            super().__init__(
                "insufficient_balance", _("The card's credit is too low for this order."), 402
            )
        else:
            super().__init__("insufficient_funds", _("Not enough value on the account."), 402)
        self.account = account


@dataclass(frozen=True)
class Posting:
    source: Account
    destination: Account
    amount: int
    kind: str
    key: str
    memo: str = ""


# System accounts never change once created, so each process keeps the ones that migrate
# creates (those of the operator's currency and of BYTES, see apps.py) instead of reading
# them on every transfer. The cache is cleared whenever migrate or a test flush runs.
_cache: dict[str, Account] = {}


def clear_system_account_cache() -> None:
    _cache.clear()


def ensure_system_accounts(units: list[str]) -> None:
    """Create every system account for ``units`` (idempotent); run after migrate."""
    clear_system_account_cache()
    for unit in units:
        for stem in SYSTEM_ACCOUNTS:
            if _standard(stem, unit):
                _cache[f"system:{stem}:{unit}"] = _get_or_create_system(stem, unit)


def _standard(stem: str, unit: str) -> bool:
    """Does migrate create this system account? Money accounts in the operator's currency,
    data accounts (and adjustments) in BYTES."""
    if unit == BYTES:
        return stem.startswith("data_") or stem == "adjustments"
    return unit == settings.CURRENCY and not stem.startswith("data_")


def system_account(stem: str, unit: str) -> Account:
    """The hot system account ``system:<stem>:<unit>``, created on first use."""
    if stem not in SYSTEM_ACCOUNTS:
        raise ValueError(f"unknown system account {stem!r}")
    code = f"system:{stem}:{unit}"
    cached = _cache.get(code)
    if cached is not None:
        return cached
    account = _get_or_create_system(stem, unit)
    if _standard(stem, unit):
        # Created at migrate time, outside any transaction that could roll it back.
        _cache[code] = account
    return account


def _get_or_create_system(stem: str, unit: str) -> Account:
    code = f"system:{stem}:{unit}"
    account = Account.objects.filter(code=code).first()
    if account is None:
        account, _created = Account.objects.get_or_create(
            code=code,
            defaults={
                "kind": AccountKind.SYSTEM,
                "unit": unit,
                "hot": True,
                "allow_negative": True,
                "clearing": SYSTEM_ACCOUNTS[stem],
                "name": stem.replace("_", " "),
            },
        )
    return account


def open_account(
    code: str, kind: AccountKind, unit: str, *, allow_negative: bool = False
) -> Account:
    """Create a bounded account (idempotent on ``code``)."""
    account, _created = Account.objects.get_or_create(
        code=code, defaults={"kind": kind, "unit": unit, "allow_negative": allow_negative}
    )
    return account


def lock_accounts(account_ids: Iterable[int]) -> dict[int, Account]:
    """Lock bounded accounts in primary-key order (the one global order; no deadlocks)."""
    ids = sorted(set(account_ids))
    if not ids:
        return {}
    rows = (
        Account.objects.filter(id__in=ids, hot=False).order_by("pk").select_for_update(of=("self",))
    )
    return {account.id: account for account in rows}


def post(postings: Sequence[Posting]) -> list[Transfer]:
    """Post transfers atomically within the caller's transaction.

    Floors hold by compare-and-swap (``UPDATE … WHERE balance + delta >= 0``): a posting that
    would take a bounded account below zero raises :class:`InsufficientFunds`, and the
    caller's transaction rolls back everything it did — so a caller that wants to go on after
    catching it must have wrapped the call in its own savepoint. Callers must already hold the row locks
    of the bounded accounts involved (:func:`lock_accounts`) when they touch several.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("ledger.post() must run inside transaction.atomic()")
    deltas: dict[int, int] = defaultdict(int)
    accounts: dict[int, Account] = {}
    for p in postings:
        if p.amount <= 0:
            raise ValueError(f"transfer amount must be positive, got {p.amount}")
        if p.source.unit != p.destination.unit:
            raise ValueError(f"unit mismatch: {p.source.code} / {p.destination.code}")
        if p.source.pk == p.destination.pk:
            raise ValueError("a transfer needs two different accounts")
        for account, delta in ((p.source, -p.amount), (p.destination, p.amount)):
            if not account.hot:
                deltas[account.pk] += delta
                accounts[account.pk] = account
    # Accounts whose postings cancel out are not updated, so their balance is not read
    # either: their transfers record none (NULL) rather than a copy's possibly older value.
    after = _apply({i: d for i, d in deltas.items() if d}, accounts)
    balances = balances_after([(p.source.pk, p.destination.pk, p.amount) for p in postings], after)
    return Transfer.objects.bulk_create(
        [
            Transfer(
                source=p.source,
                destination=p.destination,
                amount=p.amount,
                unit=p.source.unit,
                kind=p.kind,
                idempotency_key=p.key,
                memo=p.memo[:300],
                source_balance=source_balance,
                destination_balance=destination_balance,
            )
            for p, (source_balance, destination_balance) in zip(postings, balances, strict=True)
        ]
    )


def balances_after(
    moves: Sequence[tuple[int, int, int]], final: Mapping[int, int]
) -> list[tuple[int | None, int | None]]:
    """Each move's (source, destination) balance right after it, for moves
    ``(source_id, destination_id, amount)`` applied in order and ending at ``final`` (the
    balances the compare-and-swap returned; hot accounts absent → None). Walks back from
    the end, so every value is one the account held within this transaction."""
    running = dict(final)
    result: list[tuple[int | None, int | None]] = []
    for source, destination, amount in reversed(moves):
        result.append((running.get(source), running.get(destination)))
        if source in running:
            running[source] += amount
        if destination in running:
            running[destination] -= amount
    result.reverse()
    return result


def _apply(changes: dict[int, int], accounts: Mapping[int, _Bounded]) -> dict[int, int]:
    """Add ``changes`` to the cached balances of bounded accounts, floors enforced. Returns
    each changed account's balance as the compare-and-swap left it (``RETURNING``), and sets
    it on the caller's copies: the value the database holds now, in this transaction, not
    the copy's older value plus the change (a concurrent credit may have committed since the
    copy was read)."""
    if len(changes) > ONE_STATEMENT_FROM:
        return _update_in_one_statement(changes, accounts)
    table = Account._meta.db_table
    after: dict[int, int] = {}
    with connection.cursor() as cursor:
        # Decreases first, in primary-key order, so a refused floor fails before any write.
        for account_id in sorted(changes, key=lambda i: (changes[i] >= 0, i)):
            delta = changes[account_id]
            cursor.execute(
                f"UPDATE {table} SET balance = balance + %s "
                f"WHERE id = %s AND (allow_negative OR balance >= %s) RETURNING balance",
                [delta, account_id, -delta],
            )
            row = cursor.fetchone()
            if row is None:
                raise InsufficientFunds(accounts[account_id])
            after[account_id] = accounts[account_id].balance = int(row[0])
    return after


def _update_in_one_statement(
    changes: dict[int, int], accounts: Mapping[int, _Bounded]
) -> dict[int, int]:
    """Batch path (usage rating): one UPDATE … FROM (VALUES …) for many accounts. The floor
    is the CHECK constraint; a refusal is reported as the account it concerns."""
    ids = sorted(changes)
    table = Account._meta.db_table
    params: list[Any]
    if connection.vendor == "postgresql":
        # Two array parameters, however many accounts (no per-value placeholders).
        params = [ids, [changes[i] for i in ids]]
        sql = (
            f"UPDATE {table} AS a SET balance = a.balance + v.delta "
            f"FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, delta) WHERE a.id = v.id "
            f"RETURNING a.id, a.balance"
        )
    else:  # SQLite ≥ 3.35: UPDATE … FROM … RETURNING; VALUES columns are column1, column2
        params = []
        for i in ids:
            params += [i, changes[i]]
        rows = ", ".join(["(%s, %s)"] * len(ids))
        sql = (
            f"UPDATE {table} SET balance = balance + v.column2 "
            f"FROM (VALUES {rows}) AS v WHERE {table}.id = v.column1 "
            f"RETURNING {table}.id, {table}.balance"
        )
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
            after = {int(i): int(b) for i, b in cursor.fetchall()}
    except IntegrityError:
        current = dict(Account.objects.filter(id__any=ids).values_list("id", "balance"))
        for i in ids:
            if not accounts[i].allow_negative and current[i] + changes[i] < 0:
                raise InsufficientFunds(accounts[i]) from None
        raise
    for i in ids:
        accounts[i].balance = after[i]
    return after


# --- the batch path (usage rating): account ids, no model instances ------------------------


@dataclass(slots=True)
class Held:
    """A bounded account locked by :func:`lock_balances`: what batch posting needs of it."""

    id: int
    unit: str
    balance: int
    allow_negative: bool
    kind: str


@dataclass(slots=True)  # not frozen: a batch builds a thousand, and frozen ones cost 2x
class Leg:
    """A posting between account ids, for :func:`post_legs`."""

    source: int
    destination: int
    amount: int
    unit: str
    kind: str
    key: str
    memo: str = ""


def lock_balances(account_ids: Iterable[int]) -> dict[int, Held]:
    """:func:`lock_accounts` for batch paths: the same locks, in the same (primary-key)
    order, returning plain values instead of model instances. Hot accounts are skipped."""
    ids = sorted(set(account_ids))
    if not ids:
        return {}
    rows = (
        Account.objects.filter(id__any=set(ids), hot=False)
        .order_by("pk")
        .select_for_update(of=("self",))
        .values_list("id", "unit", "balance", "allow_negative", "kind")
    )
    return {row[0]: Held(*row) for row in rows}


def post_legs(legs: Sequence[Leg], held: Mapping[int, Held], hot: Iterable[Account]) -> int:
    """Batch path of :func:`post`, same rules: every bounded account of ``legs`` must be in
    ``held`` (locked in this transaction by :func:`lock_balances`), every other one in
    ``hot`` (hot system accounts). Balances move in one statement, transfers are inserted in
    one (COPY on PostgreSQL). Returns the number of transfers."""
    if not connection.in_atomic_block:
        raise RuntimeError("ledger.post_legs() must run inside transaction.atomic()")
    units = {a.pk: a.unit for a in hot if a.hot}
    units.update((i, h.unit) for i, h in held.items())
    deltas: dict[int, int] = defaultdict(int)
    for leg in legs:
        if leg.amount <= 0:
            raise ValueError(f"transfer amount must be positive, got {leg.amount}")
        if leg.source == leg.destination:
            raise ValueError("a transfer needs two different accounts")
        if units.get(leg.source) != leg.unit or units.get(leg.destination) != leg.unit:
            raise ValueError(
                f"accounts {leg.source}→{leg.destination} are not locked, hot or in {leg.unit}"
            )
        if leg.source in held:
            deltas[leg.source] -= leg.amount
        if leg.destination in held:
            deltas[leg.destination] += leg.amount
    after = _apply({i: d for i, d in deltas.items() if d}, held)
    # Held balances were read under this transaction's row locks: still true.
    after.update((i, h.balance) for i, h in held.items() if i not in after)
    balances = balances_after([(leg.source, leg.destination, leg.amount) for leg in legs], after)
    now = timezone.now()
    insert_rows(
        Transfer,
        [
            "source_id",
            "destination_id",
            "amount",
            "unit",
            "kind",
            "idempotency_key",
            "memo",
            "created_at",
            "source_balance",
            "destination_balance",
        ],
        [
            (
                leg.source,
                leg.destination,
                leg.amount,
                leg.unit,
                leg.kind,
                leg.key,
                leg.memo[:300],
                now,
                source_balance,
                destination_balance,
            )
            for leg, (source_balance, destination_balance) in zip(legs, balances, strict=True)
        ],
    )
    return len(legs)


def transfer(
    source: Account, destination: Account, amount: int, *, kind: str, key: str, memo: str = ""
) -> Transfer:
    return post([Posting(source, destination, amount, kind, key, memo)])[0]


def derived_balance(account: Account) -> int:
    """Balance computed from transfers (the truth for hot accounts)."""
    incoming = Transfer.objects.filter(destination=account).aggregate(s=Sum("amount"))["s"] or 0
    outgoing = Transfer.objects.filter(source=account).aggregate(s=Sum("amount"))["s"] or 0
    return int(incoming - outgoing)


def balance(account: Account) -> int:
    if account.hot:
        return derived_balance(account)
    return Account.objects.values_list("balance", flat=True).get(pk=account.pk)
