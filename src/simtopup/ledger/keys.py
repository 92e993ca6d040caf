"""The idempotency keys of an order's transfers, ``order:<id>:<leg>`` (leg: pay, credit,
revenue, discount, refund, grant): written by the sales, read back by statements and
histories to link a movement to its order. The one place in Python that knows the format
(the PostgreSQL fast path's SQL writes the same keys; its equivalence test compares them)."""

from __future__ import annotations

import re

_ORDER_KEY = re.compile(r"^order:(\d+):")


def order_key(order_id: int, leg: str) -> str:
    return f"order:{order_id}:{leg}"


def order_id_of(key: str) -> int | None:
    """The order a transfer key belongs to, or None for a transfer of no order."""
    match = _ORDER_KEY.match(key)
    return int(match.group(1)) if match else None
