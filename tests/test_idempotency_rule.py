"""The one idempotency rule (core/idempotency.py) that the API and the website share: a
claim, its lease, a take-over by compare-and-swap, the answer stored once, the replay."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from simtopup.core import idempotency
from simtopup.orders.models import Order
from simtopup.payments import checkout
from tests.payments_support import app, make_customer, post_json, sandbox_direct
from tests.support import Actors

__all__ = ["sandbox_direct"]  # a fixture
from simtopup.core.models import IdempotencyRecord

LEASE = timedelta(seconds=30)


def claim(key: str = "k", fingerprint: str = "f", **kwargs: object) -> idempotency.Outcome:
    return idempotency.claim(
        "test", key, fingerprint, method="POST", path="/x", lease=LEASE, **kwargs
    )


def expire(key: str = "k") -> None:
    IdempotencyRecord.objects.filter(key=key).update(
        locked_until=timezone.now() - timedelta(seconds=1)
    )


pytestmark = pytest.mark.django_db


def test_a_duplicate_within_the_lease_waits_and_another_request_is_refused() -> None:
    first = claim()
    assert isinstance(first, idempotency.Claimed)
    assert isinstance(claim(), idempotency.InProgress)
    assert isinstance(claim(fingerprint="other"), idempotency.Mismatch)


def test_the_stored_answer_is_replayed_and_never_overwritten() -> None:
    first = claim()
    assert isinstance(first, idempotency.Claimed)
    idempotency.store(first.record, 201, {"order": 7})
    with pytest.raises(idempotency.LeaseLost):
        idempotency.store(first.record, 201, {"order": 8})
    replay = claim()
    assert isinstance(replay, idempotency.Replay)
    assert (replay.status, replay.json()) == (201, {"order": 7})
    assert idempotency.answer("test", "k") == replay
    # Even after the lease ran out an answered key is replayed, not taken over.
    expire()
    assert claim() == replay


def test_a_lapsed_claim_is_taken_over_and_its_holder_can_no_longer_store() -> None:
    first = claim()
    assert isinstance(first, idempotency.Claimed)
    expire()
    second = claim()
    assert isinstance(second, idempotency.Claimed)
    # The first holder comes back: its answer (and, in its transaction, its effects) is
    # refused, the key's new holder stores.
    with pytest.raises(idempotency.LeaseLost), transaction.atomic():
        idempotency.store(first.record, 201, {"order": 1})
    idempotency.store(second.record, 201, {"order": 2})
    assert idempotency.answer("test", "k") == idempotency.Replay(201, '{"order": 2}')


def test_a_released_key_is_claimed_again_at_once_but_not_a_taken_over_one() -> None:
    first = claim()
    assert isinstance(first, idempotency.Claimed)
    idempotency.release(first.record)
    again = claim()
    assert isinstance(again, idempotency.Claimed)
    expire()
    taker = claim()
    assert isinstance(taker, idempotency.Claimed)
    idempotency.release(again.record)  # the old holder gives back what is no longer its
    assert isinstance(claim(), idempotency.InProgress)
    idempotency.store(taker.record, 200, "{}")
    assert isinstance(claim(), idempotency.Replay)


def test_an_api_request_that_outlived_its_lease_is_undone_and_the_key_gives_the_takers_answer(
    actors: Actors, sandbox_direct: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API's run_once on the same rule: the first request stalls (asking the payment
    provider) until its lease runs out, a duplicate takes the key over and places the order;
    the first, going on, is refused its answer and its order is rolled back."""
    token, _customer = make_customer("+8613700000042")
    body = {"device": actors.device.iccid, "plan": "day-1g", "payment_method": "card"}
    key = {"Idempotency-Key": "stalled-1"}
    real_prepare = checkout.prepare_order
    calls: list[str] = []
    duplicate: list[Any] = []

    def stalled_past_the_lease(*args: Any, **kwargs: Any) -> Any:
        prepared = real_prepare(*args, **kwargs)
        calls.append("asked the provider")
        if len(calls) == 1:
            expire("stalled-1")
            duplicate.append(post_json(app(token), "/api/v1/orders", body, **key))
        return prepared

    monkeypatch.setattr(checkout, "prepare_order", stalled_past_the_lease)
    first = post_json(app(token), "/api/v1/orders", body, **key)
    assert len(calls) == 2  # the duplicate did take the key over
    assert duplicate[0].status_code == 201
    assert first.status_code == 409
    assert first.json()["code"] == "request_in_progress"
    order = Order.objects.get()
    assert duplicate[0].json()["id"] == order.pk
    replay = post_json(app(token), "/api/v1/orders", body, **key)
    assert replay.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json() == duplicate[0].json()
    assert Order.objects.count() == 1


def test_the_janitor_forgets_keys_past_their_retention_only(settings: Any) -> None:
    from simtopup.ops.janitor import run_janitor

    settings.IDEMPOTENCY_RETENTION_HOURS = 24
    assert isinstance(claim("old"), idempotency.Claimed)
    assert isinstance(claim("new"), idempotency.Claimed)
    IdempotencyRecord.objects.filter(key="old").update(
        created_at=timezone.now() - timedelta(hours=25)
    )
    assert run_janitor()["idempotency_pruned"] == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]
