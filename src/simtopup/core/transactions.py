"""Transactions that survive being chosen as a deadlock's or a serialization failure's victim.

PostgreSQL breaks a lock cycle by aborting one of its transactions (SQLSTATE 40P01) and
refuses a commit that would break serializability (40001). The transaction wrote nothing;
running it again from the start is the documented answer. Every sale follows one lock order
(:mod:`simtopup.orders.locking`), so these should not happen among our own transactions; a
remaining victim is retried a bounded number of times instead of answering 500.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from django.db import DatabaseError, transaction

logger = logging.getLogger(__name__)

# deadlock_detected, serialization_failure
CONFLICT_SQLSTATES = frozenset({"40P01", "40001"})
ATTEMPTS = 4


def is_conflict(exc: BaseException) -> bool:
    """Was ``exc`` a deadlock or serialization victim (nothing written, safe to run again)?"""
    while exc is not None:
        if getattr(exc, "sqlstate", None) in CONFLICT_SQLSTATES:
            return True
        exc = exc.__cause__  # type: ignore[assignment]
    return False


def durable[T](action: Callable[[], T], *, attempts: int = ATTEMPTS) -> T:
    """Run ``action`` in its own durable transaction; if the database aborts it as a
    deadlock or serialization victim, run it again (up to ``attempts`` times in all, with a
    short random pause). ``action`` must do nothing outside the database that it would not
    do again (side effects belong in ``transaction.on_commit``)."""
    for attempt in range(1, attempts + 1):
        try:
            with transaction.atomic(durable=True):
                return action()
        except DatabaseError as exc:
            if attempt == attempts or not is_conflict(exc):
                raise
            logger.warning(
                "transaction chosen as a lock-conflict victim (attempt %s of %s); retrying",
                attempt,
                attempts,
            )
            time.sleep(random.uniform(0.002, 0.01) * 2**attempt)
    raise AssertionError("unreachable")
