"""What orders ask of the domains above them, which lend it at start-up.

``orders`` is the bottom of the sales: resellers sell through it, payments and automatic
top-ups pay for it, usage meters what it granted — they all read and place orders, so
orders cannot import them. Yet an order that fails must give its money back to whoever paid
(a reseller's float, the card's credit, a payment provider), a reseller must hear of a top-up
that finished after its sale, and a bundle plan opens a bundle, a row of the usage domain. So
each of those domains registers its part here in its ``AppConfig.ready`` — a lower layer that
genuinely has to reach a higher one. A missing registration is a bug, never a silent no-op.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simtopup.ledger.actions import Posting
    from simtopup.network.adapters import Grant
    from simtopup.orders.models import Order


def _nothing(order: Order) -> None:
    return None


@dataclass(frozen=True)
class Payer:
    """The domain that takes the money of one or more channels."""

    # (order, failure code, detail): return the money of an order that has just failed, in
    # the transaction that failed it, and tell whoever must hear of it.
    refund: Callable[[Order, str, str], None]
    # A fulfilment that finished after the sale (an asynchronous adapter, a retry).
    fulfilled_later: Callable[[Order], None] = _nothing


_PAYERS: dict[str, Payer] = {}
# Opens the bundle a fulfilled bundle plan grants; returns the posting that fills it, which
# the fulfilment posts together with its own legs (one ledger write).
BundleOpener = Callable[["Order", "Grant"], "Posting"]
_BUNDLE_OPENER: list[BundleOpener] = []


def register_payer(channels: Iterable[str], payer: Payer) -> None:
    for channel in channels:
        _PAYERS[channel] = payer


def payer_of(order: Order) -> Payer:
    try:
        return _PAYERS[order.channel]
    except KeyError:
        raise RuntimeError(
            f"no payer registered for {order.channel} orders (is its app installed?)"
        ) from None


def register_bundle_opener(opener: BundleOpener) -> None:
    _BUNDLE_OPENER[:] = [opener]


def bundle_opener() -> BundleOpener:
    if not _BUNDLE_OPENER:
        raise RuntimeError("no bundle opener registered (is the usage app installed?)")
    return _BUNDLE_OPENER[0]
