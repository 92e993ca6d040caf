"""A card's credit as its owner sees it — one read model for the app API
(``GET /api/v1/devices/{id}/credit``) and the website's credit page: the ledger transfers of
the card's credit account, each shown as a movement (a top-up, a pay-per-use charge, a plan
paid from credit, a refund, or an adjustment by customer service)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q, QuerySet
from django.utils.translation import gettext as _

from simtopup.ledger.keys import order_id_of
from simtopup.ledger.models import Transfer

# Ledger transfer kinds touching a card's credit → what the customer sees; any other kind is
# an adjustment.
CREDIT_KINDS = {
    "credit_topup": "topup",
    "reseller_discount": "topup",
    "payg_charge": "payg_charge",
    "order_payment": "bundle_purchase",
    "order_refund": "refund",
}


# Transfer kinds shown under a movement kind above but with words of their own: a goodwill
# credit is an ``adjustment`` to API clients (the enum stays as documented in docs/api.md),
# with its own memo.
OWN_MEMOS = {"goodwill_credit": "goodwill"}


def credit_memos() -> dict[str, str]:
    """Each movement kind's words (and those of :data:`OWN_MEMOS`), in the current language."""
    return {
        "goodwill": _("Goodwill credit from customer service"),
        "topup": _("Credit top-up"),
        "payg_charge": _("Pay-per-use data"),
        "bundle_purchase": _("Plan paid from credit"),
        "refund": _("Refund"),
        "adjustment": _("Adjustment by customer service"),
    }


@dataclass(frozen=True, slots=True)
class Movement:
    id: int
    kind: str
    incoming: bool
    amount: int  # minor units, positive; ``incoming`` says which way
    unit: str
    created_at: datetime
    memo: str
    order_id: int | None


def credit_transfers(account_id: int) -> QuerySet[Transfer]:
    """Every transfer into or out of the credit account (unordered: callers page it)."""
    return Transfer.objects.filter(Q(source_id=account_id) | Q(destination_id=account_id))


def movements(transfers: list[Transfer], account_id: int) -> list[Movement]:
    """``transfers`` of the credit account ``account_id`` as the customer sees them."""
    memos = credit_memos()
    shown = []
    for t in transfers:
        kind = CREDIT_KINDS.get(t.kind, "adjustment")
        shown.append(
            Movement(
                id=t.pk,
                kind=kind,
                incoming=t.destination_id == account_id,
                amount=t.amount,
                unit=t.unit,
                created_at=t.created_at,
                memo=memos[OWN_MEMOS.get(t.kind, kind)],
                order_id=order_id_of(t.idempotency_key),
            )
        )
    return shown
