"""`simtopup check-ledger`: verify the ledger invariants on a live database."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from django.db.models import Exists, F, OuterRef, Sum

from simtopup.ledger.models import Account, Transfer

# Domains register what their clearing accounts should hold right now (code → amount),
# e.g. orders: the money of orders paid but not yet fulfilled or refunded.
CLEARING_EXPECTATIONS: list[Callable[[], dict[str, int]]] = []
# Domains register further consistency checks that return violation lines.
EXTRA_CHECKS: list[Callable[[], list[str]]] = []


def derived_balances() -> dict[int, int]:
    totals: dict[int, int] = defaultdict(int)
    for account_id, amount in Transfer.objects.values_list("destination_id").annotate(
        s=Sum("amount")
    ):
        totals[account_id] += amount
    for account_id, amount in Transfer.objects.values_list("source_id").annotate(s=Sum("amount")):
        totals[account_id] -= amount
    return totals


def audit() -> list[str]:
    """Return one line per violated invariant; an empty list means the ledger is sound."""
    problems: list[str] = []
    derived = derived_balances()
    per_unit: dict[str, int] = defaultdict(int)
    accounts = {a.id: a for a in Account.objects.order_by("id")}
    for account in accounts.values():
        truth = derived.get(account.id, 0)
        per_unit[account.unit] += truth
        if account.hot:
            if account.balance != 0:
                problems.append(
                    f"hot account {account.code} has a cached balance {account.balance}"
                )
        elif account.balance != truth:
            problems.append(
                f"account {account.code}: cached balance {account.balance} "
                f"!= sum of its transfers {truth}"
            )
        if not account.allow_negative and truth < 0:
            problems.append(f"account {account.code} is below its floor: {truth}")
    for unit, total in sorted(per_unit.items()):
        if total != 0:
            problems.append(f"unit {unit}: balances sum to {total}, not 0")
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
    expected: dict[str, int] = {}
    for hook in CLEARING_EXPECTATIONS:
        for code, amount in hook().items():
            expected[code] = expected.get(code, 0) + amount
    # Every clearing account, and every one a domain expects money in — even if it was never
    # created (an order marked paid whose money never moved leaves no clearing account).
    by_code = {a.code: a for a in accounts.values()}
    clearing = {a.code for a in accounts.values() if a.clearing}
    for code in sorted(clearing | {code for code, amount in expected.items() if amount}):
        found = by_code.get(code)
        truth = derived.get(found.id, 0) if found else 0
        want = expected.get(code, 0)
        if truth != want:
            problems.append(
                f"clearing account {code} holds {truth}, but outstanding items account for {want}"
            )
    for check in EXTRA_CHECKS:
        problems.extend(check())
    return problems
