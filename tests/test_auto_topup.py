"""Automatic top-up (自动充值): usage below the threshold buys the chosen pass from the card's
credit — at most one in flight, at most 3 a day, the customer told either way."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection
from django.test import Client, TestCase
from django.utils import timezone

from simtopup.accounts.models import Customer
from simtopup.devices.models import Device
from simtopup.ledger.audit import audit
from simtopup.notifications.backends import memory
from simtopup.orders.models import Channel, Order, OrderStatus
from simtopup.usage import autotopup
from simtopup.usage.bundles import remaining_bytes
from simtopup.usage.models import AlertSettings, AutoTopupRule
from tests.customer_support import app_client, login_customer
from tests.payments_support import bind
from tests.support import GB, MB, Actors, network_post, post_json, run_worker

THRESHOLD = 200 * MB


@pytest.fixture(autouse=True)
def _memory_senders(settings: Any) -> None:
    settings.SMS_SENDER = "memory"
    settings.EMAIL_SENDER = "memory"
    memory.outbox.clear()


def topup(alice: Client, device: Device, plan: str) -> None:
    response = post_json(
        alice,
        "/reseller/v1/topups",
        {"device": device.iccid, "plan": plan, "reference": f"{plan}-{Order.objects.count()}"},
    )
    assert response.status_code == 201, response.content


def use(device: Device, size: int, rid: str) -> None:
    now = timezone.now().isoformat()
    record = {"id": rid, "iccid": device.iccid, "bytes": size, "started_at": now, "ended_at": now}
    # Run what the batch scheduled for after its commit (the auto top-up task's enqueue).
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = network_post(Client(), "/network/v1/usage", {"records": [record]})
    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == 1


def credit_of(device: Device) -> int:
    device.credit_account.refresh_from_db()
    return device.credit_account.balance


def auto_orders(device: Device) -> list[Order]:
    return list(Order.objects.filter(device=device, channel=Channel.AUTO).order_by("pk"))


def set_rule(client: Client, device: Device, **body: Any) -> Any:
    payload = {"enabled": True, "threshold_bytes": THRESHOLD, "plan": "day-1g", **body}
    with TestCase.captureOnCommitCallbacks(execute=True):
        return client.put(
            f"/api/v1/devices/{device.pk}/auto-topup",
            data=payload,
            content_type="application/json",
        )


@pytest.fixture
def owner(actors: Actors, alice: Client) -> tuple[Client, Customer]:
    """The card's owner, with ¥50 credit and a 1 GB daily pass on it."""
    token, customer = login_customer("+8613900139000")
    Customer.objects.filter(pk=customer.pk).update(language="en")  # messages checked in English
    customer.refresh_from_db()
    bind(actors.device, customer)
    topup(alice, actors.device, "credit-50")
    topup(alice, actors.device, "day-1g")
    memory.outbox.clear()  # the login code
    # Usage alerts (tests/test_alerts.py) off: the messages counted here are the top-up's.
    AlertSettings.objects.create(device=actors.device, sms=False, email=False, push=False)
    return app_client(token), customer


def test_usage_below_the_threshold_buys_the_pass_from_credit(
    actors: Actors, owner: tuple[Client, Customer]
) -> None:
    client, customer = owner
    device = actors.device
    response = set_rule(client, device)
    assert response.status_code == 200, response.content
    assert response.json()["enabled"] is True
    assert response.json()["plan"] == "day-1g"
    run_worker()
    assert auto_orders(device) == []  # 1 GB left: above the threshold, nothing bought

    use(device, GB - 100 * MB, "u1")  # 100 MB left: below 200 MB
    run_worker()
    [order] = auto_orders(device)
    assert order.status == OrderStatus.FULFILLED
    assert order.payment_method == "balance"
    assert order.customer == customer
    assert credit_of(device) == 5000 - 500
    assert remaining_bytes(device) == 100 * MB + GB
    [message] = memory.outbox
    assert message.recipient == "+8613900139000"
    assert "¥5.00" in message.body
    assert audit() == []

    # Above the threshold again: further usage batches buy nothing more.
    use(device, 10 * MB, "u2")
    run_worker()
    assert len(auto_orders(device)) == 1


def test_at_most_three_automatic_top_ups_a_day(
    actors: Actors, owner: tuple[Client, Customer], settings: Any
) -> None:
    settings.AUTO_TOPUP_RETRY_SECONDS = 0  # let every batch try again
    client, _customer = owner
    device = actors.device
    assert set_rule(client, device).status_code == 200
    for n in range(5):
        # Drain exactly what is left each time (more would be charged per MB from credit).
        use(device, remaining_bytes(device), f"drain-{n}")
        run_worker()
    orders = auto_orders(device)
    assert len(orders) == 3
    assert all(o.status == OrderStatus.FULFILLED for o in orders)
    assert credit_of(device) == 5000 - 3 * 500
    rule = AutoTopupRule.objects.get(device=device)
    assert rule.last_outcome == "daily_limit"
    bodies = [m.body for m in memory.outbox]
    # Three "done" messages and one (not two) about the limit.
    assert len(bodies) == 4
    assert sum("3" in b and "limit" in b for b in bodies) == 1


def test_too_little_credit_places_no_order_and_tells_the_customer(
    actors: Actors, alice: Client
) -> None:
    token, customer = login_customer("+8613700137000")
    device = actors.devices[1]
    bind(device, customer)
    AlertSettings.objects.create(device=device, sms=False, email=False, push=False)
    topup(alice, device, "day-1g")  # a pass, but no credit at all
    client = app_client(token)
    memory.outbox.clear()  # the login code
    assert set_rule(client, device).status_code == 200
    use(device, GB, "all")
    run_worker()
    assert auto_orders(device) == []
    rule = AutoTopupRule.objects.get(device=device)
    assert rule.last_outcome == "insufficient_balance"
    [message] = memory.outbox
    assert message.recipient == "+8613700137000"
    # The pause after a failure: the next batch does not try (nor notify) again.
    use(device, 1, "more")
    run_worker()
    assert len(memory.outbox) == 1
    assert audit() == []


def test_only_the_owner_sets_a_rule_and_bad_rules_are_refused(
    actors: Actors, owner: tuple[Client, Customer]
) -> None:
    client, _customer = owner
    device = actors.device
    stranger_token, _stranger = login_customer("+8613600136000")
    stranger = app_client(stranger_token)
    response = set_rule(stranger, device)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert stranger.get(f"/api/v1/devices/{device.pk}/auto-topup").status_code == 404

    cases = [
        ({"plan": "credit-50"}, "plan_not_allowed"),
        ({"plan": "no-such-plan"}, "unknown_plan"),
        ({"threshold_bytes": -1}, "validation_error"),
        ({"threshold_bytes": "100"}, "validation_error"),
        ({"enabled": "yes"}, "validation_error"),
        ({"surprise": 1}, "validation_error"),
    ]
    for body, code in cases:
        response = set_rule(client, device, **body)
        assert response.status_code == 422, (body, response.content)
        assert response["Content-Type"].startswith("application/problem+json")
        assert response.json()["code"] == code, body
    assert not AutoTopupRule.objects.exists()
    assert client.get(f"/api/v1/devices/{device.pk}/auto-topup").json()["enabled"] is False
    assert Client().get(f"/api/v1/devices/{device.pk}/auto-topup").status_code == 401


def test_a_disabled_rule_buys_nothing(actors: Actors, owner: tuple[Client, Customer]) -> None:
    client, _customer = owner
    device = actors.device
    assert set_rule(client, device).status_code == 200
    assert set_rule(client, device, enabled=False).json()["enabled"] is False
    use(device, GB, "all")
    run_worker()
    assert auto_orders(device) == []
    assert autotopup.run(device.pk) == "no_rule"


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_concurrent_triggers_place_one_order(actors: Actors, alice: Client) -> None:
    _token, customer = login_customer("+8613500135000")
    device = actors.device
    bind(device, customer)
    topup(alice, device, "credit-50")
    AutoTopupRule.objects.create(
        device=device, customer=customer, threshold_bytes=THRESHOLD, plan=actors.plans["day-1g"]
    )
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def trigger() -> None:
        try:
            barrier.wait()
            outcomes.append(autotopup.run(device.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=trigger) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("placed") == 1
    assert set(outcomes) <= {"placed", "above_threshold"}
    assert len(auto_orders(device)) == 1
    assert credit_of(device) == 5000 - 500
    assert audit() == []
