"""The one lock order of every sale.

Every transaction that sells or settles something takes its row locks in this order, so
that no two of them can each hold a row the other is waiting for (PostgreSQL would kill one
as a deadlock's victim):

1. the row that starts it: an automatic top-up rule (``usage.autotopup``), an order's own
   row (every order transition is a compare-and-swap on it, taken first);
2. the card's device row, when the sale changes it — a first sale activates the card, a
   credit (pay-per-use) plan switches it to pay-per-use — or is paid from the card's credit,
   which only the owner as of that lock may spend (:func:`lock_card`);
3. bounded ledger accounts that already exist — reseller float, card credit, data
   bundles — in primary-key order (:func:`simtopup.ledger.actions.lock_accounts`, and
   ``lock_balances`` for usage batches, which never touch device rows). An account created
   in the same transaction (a new bundle) is invisible to every other one and can be
   written at any point; a reseller's float, when it is the only existing account a sale
   touches, is debited last so that its lock is held for the shortest time.

Hot system accounts (revenue, clearing, funding) are never locked.

Kinds of sale that follow it: reseller top-ups of bundles and of credit on the general path
(:func:`simtopup.resellers.actions.place_reseller_topup`) and on the PostgreSQL one-statement
path (``resellers/fast_sale.py``, which does the same steps in the same order in SQL), customer
orders paid by a provider or by the card's credit, automatic top-ups, refunds, usage
batches. Before this order existed, a first bundle sale and a first credit sale of one card
deadlocked: one held the device and wanted the float, the other the reverse.

Any deadlock or serialization victim that remains (e.g. between other applications' locks)
is retried by :func:`simtopup.core.transactions.durable`.
"""

from __future__ import annotations

from collections.abc import Iterable

from simtopup.devices.models import Device, DeviceStatus
from simtopup.ledger.actions import lock_accounts
from simtopup.ledger.models import Account


def changes_device(device: Device, *, credit_plan: bool) -> bool:
    """Will selling ``device`` (a credit plan or not) write its row? Both changes only ever
    go one way (in stock → active, not pay-per-use → pay-per-use), so a stale copy can only
    say yes too often, never too rarely."""
    return device.status == DeviceStatus.IN_STOCK or (credit_plan and not device.payg)


def lock_card(device: Device) -> int | None:
    """Step 2 of the lock order above, inside the caller's transaction: lock the card's row
    and return its owner as of now (None: nobody's). A sale paid from the card's credit
    takes it whether or not the sale changes the card, and checks the owner it returns: an
    unbinding then either committed before (the order sees no owner) or waits for the sale."""
    return (
        Device.objects.filter(pk=device.pk)
        .select_for_update(of=("self",))
        .values_list("owner_id", flat=True)
        .first()
    )


def lock_sale(
    device: Device, *, credit_plan: bool, accounts: Iterable[int] = ()
) -> dict[int, Account]:
    """Steps 2 and 3 of the lock order above, inside the caller's transaction: the card's row
    if this sale changes it, then the given bounded accounts in primary-key order. Returns
    the locked accounts by id (as :func:`~simtopup.ledger.actions.lock_accounts`)."""
    if changes_device(device, credit_plan=credit_plan):
        lock_card(device)
    return lock_accounts(accounts)
