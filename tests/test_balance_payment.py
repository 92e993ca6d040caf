"""Paying a bundle from the card's credit (余额): owner only, settles at once, never below
zero — not even under concurrent orders — and refunded to the credit if fulfilment fails."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection, transaction

from simtopup.core.errors import DomainError
from simtopup.devices.binding import unbind_device
from simtopup.devices.models import Device, DeviceStatus
from simtopup.ledger.models import Transfer
from simtopup.network.adapters import AdapterError, Grant
from simtopup.orders.actions import fulfil_pending
from simtopup.orders.customer import place_balance_order
from simtopup.orders.models import Order, OrderStatus
from simtopup.payments.models import Payment
from simtopup.usage.bundles import remaining_bytes
from simtopup.usage.models import Bundle
from tests.payments_support import (
    app,
    assert_ledger_clean,
    bind,
    credit_of,
    give_credit,
    make_customer,
    post_json,
    run_tasks,
    sandbox_direct,
)
from tests.support import GB, Actors
from tests.test_concurrency import run_concurrently

pytestmark = pytest.mark.usefixtures("sandbox_direct")
__all__ = ["sandbox_direct"]


def pay_with_credit(token: str, device: str, plan: str = "day-1g", **headers: str) -> Any:
    return post_json(
        app(token),
        "/api/v1/orders",
        {"device": device, "plan": plan, "payment_method": "balance"},
        **headers,
    )


def test_the_owner_pays_from_the_cards_credit_at_once(actors: Actors) -> None:
    token, owner = make_customer("+8613600000001")
    bind(actors.device, owner)
    give_credit(actors.device, 1200, "test:credit:1")
    response = pay_with_credit(token, actors.device.iccid)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "fulfilled"
    assert body["receipt_no"].startswith("R")
    assert body["payment"] == {
        "provider": "balance",
        "method": "balance",
        "status": "succeeded",
        "checkout_url": None,
        "qr_data": None,
    }
    assert credit_of(actors.device) == 700
    assert remaining_bytes(actors.device) == 1 * GB
    assert not Payment.objects.exists()
    keys = set(Transfer.objects.values_list("idempotency_key", flat=True))
    assert f"order:{body['id']}:pay" in keys
    assert_ledger_clean()


def test_only_the_owner_may_spend_the_credit(actors: Actors) -> None:
    _owner_token, owner = make_customer("+8613600000002")
    stranger_token, _stranger = make_customer("+8613600000003")
    bind(actors.device, owner)
    give_credit(actors.device, 1200, "test:credit:2")
    response = pay_with_credit(stranger_token, actors.device.iccid)
    assert response.status_code == 403
    assert response.json()["code"] == "not_device_owner"
    # An unbound card's credit belongs to nobody who is logged in.
    unbound = pay_with_credit(stranger_token, actors.devices[1].iccid)
    assert unbound.status_code == 403
    assert credit_of(actors.device) == 1200
    assert not Order.objects.exists()


def test_credit_too_low_is_402_and_leaves_no_order(actors: Actors) -> None:
    token, owner = make_customer("+8613600000004")
    bind(actors.device, owner)
    give_credit(actors.device, 499, "test:credit:3")
    response = pay_with_credit(token, actors.device.iccid, **{"Idempotency-Key": "b-1"})
    assert response.status_code == 402
    assert response.json()["code"] == "insufficient_balance"
    assert not Order.objects.exists()
    assert not Bundle.objects.exists()
    assert credit_of(actors.device) == 499
    # The refusal is the stored answer for this key.
    again = pay_with_credit(token, actors.device.iccid, **{"Idempotency-Key": "b-1"})
    assert again.status_code == 402
    assert not Order.objects.exists()
    assert_ledger_clean()


def test_credit_cannot_buy_credit(actors: Actors) -> None:
    token, owner = make_customer("+8613600000005")
    bind(actors.device, owner)
    give_credit(actors.device, 10000, "test:credit:4")
    response = pay_with_credit(token, actors.device.iccid, plan="credit-50")
    assert response.status_code == 422
    assert response.json()["code"] == "payment_method_not_allowed"
    assert credit_of(actors.device) == 10000
    assert not Order.objects.exists()


def test_the_same_key_pays_once(actors: Actors) -> None:
    token, owner = make_customer("+8613600000006")
    bind(actors.device, owner)
    give_credit(actors.device, 5000, "test:credit:5")
    first = pay_with_credit(token, actors.device.iccid, **{"Idempotency-Key": "once"})
    second = pay_with_credit(token, actors.device.iccid, **{"Idempotency-Key": "once"})
    assert first.status_code == second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert first.json() == second.json()
    assert Order.objects.count() == 1
    assert credit_of(actors.device) == 4500


def test_place_balance_order_is_reusable_for_automatic_top_up(actors: Actors) -> None:
    _token, owner = make_customer("+8613600000007")
    bind(actors.device, owner)
    give_credit(actors.device, 600, "test:credit:6")
    plan = actors.plans["day-1g"]
    with transaction.atomic():
        order = place_balance_order(owner, actors.device, plan, channel="auto")
    assert (order.channel, order.status) == ("auto", OrderStatus.FULFILLED)
    # Not enough left: the caller's transaction goes on, without an order.
    with transaction.atomic():
        with pytest.raises(DomainError) as refused:
            place_balance_order(owner, actors.device, plan, channel="auto")
        assert Order.objects.count() == 1
    assert refused.value.code == "insufficient_balance"
    assert credit_of(actors.device) == 100
    assert_ledger_clean()


def test_an_unbinding_after_the_callers_read_stops_the_order(actors: Actors) -> None:
    """The door read the card (owner: Ann), then Ann unbound it, then the order runs with
    that read: the owner is checked again on the locked row, so nobody spends the credit."""
    _token, ann = make_customer("+8613600000010")
    bind(actors.device, ann)
    give_credit(actors.device, 1200, "test:credit:10")
    seen = Device.objects.select_related("credit_account").get(pk=actors.device.pk)
    assert seen.owner_id == ann.pk
    unbind_device(ann, seen.pk)
    with transaction.atomic(), pytest.raises(DomainError) as refused:
        place_balance_order(ann, seen, actors.plans["day-1g"])
    assert (refused.value.code, refused.value.status) == ("not_device_owner", 403)
    assert not Order.objects.exists()
    assert not Transfer.objects.filter(kind="order_payment").exists()
    assert credit_of(actors.device) == 1200


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_an_unbinding_waits_for_an_order_paid_from_the_credit(settings: Any) -> None:
    """The other interleaving, with committed data: an order paid from the credit holds the
    card's row, so an unbinding started meanwhile waits until the order commits — the owner
    who paid is the owner when the money moved. (An active card: the sale does not change
    it, so only the owner check takes that lock.)"""
    settings.PAYMENT_PROVIDER = "sandbox"
    actors = Actors()
    _token, ann = make_customer("+8613600000011")
    bind(actors.device, ann)
    Device.objects.filter(pk=actors.device.pk).update(status=DeviceStatus.ACTIVE)
    give_credit(actors.device, 1200, "test:credit:11")
    device = Device.objects.get(pk=actors.device.pk)
    ordered, commit = threading.Event(), threading.Event()
    unbound: list[float] = []

    def order() -> None:
        try:
            with transaction.atomic():
                place_balance_order(ann, device, actors.plans["day-1g"])
                ordered.set()
                assert commit.wait(30)
        finally:
            connection.close()

    def unbind() -> None:
        try:
            unbind_device(ann, device.pk)
            unbound.append(time.monotonic())
        finally:
            connection.close()

    buyer = threading.Thread(target=order, daemon=True)
    buyer.start()
    assert ordered.wait(30)
    unbinder = threading.Thread(target=unbind, daemon=True)
    unbinder.start()
    unbinder.join(1.0)
    assert unbinder.is_alive(), "the unbinding did not wait for the order's lock on the card"
    released = time.monotonic()
    commit.set()
    buyer.join(30)
    unbinder.join(30)
    assert not buyer.is_alive()
    assert not unbinder.is_alive()
    assert unbound
    assert unbound[0] >= released
    assert Order.objects.get().status == OrderStatus.FULFILLED
    assert credit_of(actors.device) == 700
    assert Device.objects.get(pk=device.pk).owner_id is None
    assert_ledger_clean()


class FlakyUpstream:
    synchronous = False

    def apply(self, order: Order) -> Grant:
        raise AdapterError("upstream refused", permanent=True)


def test_a_failed_fulfilment_returns_the_money_to_the_credit(actors: Actors, settings: Any) -> None:
    settings.NETWORK_ADAPTER = "tests.test_balance_payment.FlakyUpstream"
    token, owner = make_customer("+8613600000008")
    bind(actors.device, owner)
    give_credit(actors.device, 500, "test:credit:7")
    response = pay_with_credit(token, actors.device.iccid)
    assert response.status_code == 201
    assert response.json()["status"] == "paid"
    assert credit_of(actors.device) == 0
    assert run_tasks() == ["failed"]
    order = Order.objects.get()
    assert order.status == OrderStatus.REFUNDED
    assert credit_of(actors.device) == 500
    assert fulfil_pending(order.pk) == "not_claimable"
    body = app(token).get(f"/api/v1/orders/{order.pk}").json()
    assert body["status"] == "refunded"
    assert body["payment"]["status"] == "refunded"
    assert_ledger_clean()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_concurrent_orders_never_overdraw_the_credit(settings: Any) -> None:
    settings.PAYMENT_PROVIDER = "sandbox"
    actors = Actors()
    token, owner = make_customer("+8613600000009")
    bind(actors.device, owner)
    give_credit(actors.device, 1200, "test:credit:8")  # room for two ¥5 passes

    def job() -> int:
        return int(pay_with_credit(token, actors.device.iccid).status_code)

    statuses = run_concurrently([job] * 12, threads=6)
    assert sorted(statuses) == [201, 201] + [402] * 10
    assert credit_of(actors.device) == 200
    assert Order.objects.filter(status=OrderStatus.FULFILLED).count() == 2
    assert Order.objects.count() == 2
    assert Bundle.objects.count() == 2
    assert_ledger_clean()
