"""The only code that moves value. Callers open the transaction; this module posts inside it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db import connection
from django.db.models import F, Q, Sum
from django.utils.translation import gettext_lazy as _

from simtopup.core.errors import DomainError
from simtopup.ledger.models import Account, AccountKind, Transfer

# Hot system accounts: code stem → clearing?
SYSTEM_ACCOUNTS: dict[str, bool] = {
    "revenue": False,  # money earned: bundles sold, pay-per-use charged
    "order_clearing": True,  # money taken for orders not yet fulfilled or refunded
    "float_funding": False,  # money resellers paid the operator for their float
    "reseller_discount": False,  # credit given to cards beyond the reseller's wholesale price
    "adjustments": False,  # operator corrections
    "data_issued": False,  # bytes granted in bundles (BYTES)
    "data_consumed": False,  # bytes used on the network (BYTES)
}


class InsufficientFunds(DomainError):
    def __init__(self, account: Account) -> None:
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


def system_account(stem: str, unit: str) -> Account:
    """The hot system account ``system:<stem>:<unit>``, created on first use."""
    if stem not in SYSTEM_ACCOUNTS:
        raise ValueError(f"unknown system account {stem!r}")
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
    # Decreases first, in primary-key order, so a refused floor fails before any write.
    for account_id in sorted(deltas, key=lambda i: (deltas[i] >= 0, i)):
        delta = deltas[account_id]
        if delta == 0:
            continue
        updated = Account.objects.filter(
            Q(allow_negative=True) | Q(balance__gte=-delta), id=account_id
        ).update(balance=F("balance") + delta)
        if updated != 1:
            raise InsufficientFunds(accounts[account_id])
        accounts[account_id].balance += delta  # keep the caller's copy honest
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
            )
            for p in postings
        ]
    )


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
