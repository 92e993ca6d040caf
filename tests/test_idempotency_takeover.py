"""Two late-comers and one lapsed key (core/idempotency.py): only one takes it over.

Both read the key while its lease has run out; the first then takes it over. The second's
take-over must see that the lease it read is no longer the key's (the compare-and-swap on
``locked_until``) and wait, or both would run the request. The interleaving is forced by
handing the second late-comer the row as both read it, before the first one's take-over
(a read that really happens when two requests arrive together); docs/mutation.md has the
mutant this kills."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db.models import QuerySet
from django.utils import timezone

from simtopup.api.models import IdempotencyRecord
from simtopup.core import idempotency

LEASE = timedelta(seconds=30)

pytestmark = pytest.mark.django_db


def claim() -> idempotency.Outcome:
    return idempotency.claim("test", "k", "f", method="POST", path="/x", lease=LEASE)


def test_of_two_late_comers_that_read_the_same_lapsed_lease_only_one_takes_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    holder = claim()
    assert isinstance(holder, idempotency.Claimed)
    IdempotencyRecord.objects.filter(key="k").update(
        locked_until=timezone.now() - timedelta(seconds=1)
    )
    as_both_read_it = IdempotencyRecord.objects.get(key="k")

    first = claim()
    assert isinstance(first, idempotency.Claimed)

    def the_row_as_read_before(self: QuerySet[Any]) -> Any:
        return as_both_read_it if self.model is IdempotencyRecord else real_first(self)

    real_first = QuerySet.first
    monkeypatch.setattr(QuerySet, "first", the_row_as_read_before)
    second = claim()
    monkeypatch.setattr(QuerySet, "first", real_first)

    assert isinstance(second, idempotency.InProgress)
    # The key stays the first late-comer's: it stores, and its answer is the one replayed.
    idempotency.store(first.record, 201, {"order": 1})
    assert idempotency.answer("test", "k") == idempotency.Replay(201, '{"order": 1}')
