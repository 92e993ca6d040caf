"""Real concurrency on payments: threads with their own connections, committed data only,
so the database's locks and unique constraints decide (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from simtopup.ledger.models import Transfer
from simtopup.orders.models import Order, OrderStatus
from simtopup.payments.actions import check_payment
from simtopup.payments.models import Payment, PaymentEvent, PaymentStatus, SandboxCharge
from simtopup.payments.providers import sandbox
from simtopup.usage.models import Bundle
from tests.payments_support import (
    app,
    assert_ledger_clean,
    make_customer,
    post_json,
    post_notification,
    run_tasks,
    sandbox_direct,
    sandbox_notification,
)
from tests.support import Actors
from tests.test_concurrency import run_concurrently

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.usefixtures("sandbox_direct"),
]
__all__ = ["sandbox_direct"]


def place(actors: Actors, phone: str, device_index: int = 0) -> tuple[str, dict[str, Any]]:
    token, _c = make_customer(phone)
    response = post_json(
        app(token),
        "/api/v1/orders",
        {
            "device": actors.devices[device_index].iccid,
            "plan": "day-1g",
            "payment_method": "card",
        },
    )
    assert response.status_code == 201, response.content
    return token, response.json()


def success_data(payment: Payment) -> dict[str, Any]:
    return {
        "payment": payment.provider_ref,
        "reference": payment.reference,
        "amount": payment.amount,
        "currency": payment.currency,
        "merchant": "simtopup-sandbox",
        "status": "succeeded",
    }


def test_the_same_webhook_five_times_at_once_fulfils_once() -> None:
    actors = Actors()
    _token, order = place(actors, "+8613500000001")
    payment = Payment.objects.get()
    charge = SandboxCharge.objects.get()
    assert sandbox.settle(charge, "succeed")
    headers, body = sandbox_notification(success_data(payment), event_id="evt_same")

    def deliver() -> int:
        return int(post_notification(Client(), headers, body).status_code)

    assert run_concurrently([deliver] * 5, threads=5) == [200] * 5
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.FULFILLED
    assert Bundle.objects.filter(order_id=order["id"]).count() == 1
    assert PaymentEvent.objects.count() == 1
    assert (
        Transfer.objects.filter(idempotency_key__startswith=f"payment:{payment.pk}:").count() == 1
    )
    assert Transfer.objects.filter(idempotency_key__startswith=f"order:{order['id']}:").count() == 2
    assert_ledger_clean()


def test_different_events_and_the_janitor_racing_credit_once() -> None:
    """A gateway may send several distinct events for one capture (Stripe sends both
    ``payment_intent.succeeded`` and ``charge.succeeded``), while the janitor asks too."""
    actors = Actors()
    _token, order = place(actors, "+8613500000002")
    payment = Payment.objects.get()
    assert sandbox.settle(SandboxCharge.objects.get(), "succeed")
    notifications = [
        sandbox_notification(success_data(payment), event_id=f"evt_{i}") for i in range(4)
    ]

    def deliver(i: int) -> Any:
        return lambda: int(post_notification(Client(), *notifications[i]).status_code)

    def janitor() -> str:
        Payment.objects.filter(pk=payment.pk).update(next_check_at=payment.created_at)
        return check_payment(payment.pk)

    results = run_concurrently([deliver(i) for i in range(4)] + [janitor], threads=5)
    assert results[:4] == [200] * 4
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.FULFILLED
    assert Bundle.objects.count() == 1
    outcomes = sorted(PaymentEvent.objects.values_list("outcome", flat=True))
    applied_by_events = outcomes.count("applied")
    assert applied_by_events + (results[4] == "applied") == 1
    assert Transfer.objects.filter(idempotency_key=f"payment:{payment.pk}:capture").count() == 1
    assert_ledger_clean()


def test_cancel_racing_the_payment_ends_fulfilled_or_refunded_never_both() -> None:
    actors = Actors()
    rounds = []
    for i in range(4):
        token, order = place(actors, f"+861350000010{i}", device_index=i)
        payment = Payment.objects.get(order_id=order["id"])
        assert sandbox.settle(SandboxCharge.objects.get(reference=payment.reference), "succeed")
        headers, body = sandbox_notification(success_data(payment), event_id=f"evt_race_{i}")

        def cancel(token: str = token, order_id: int = order["id"]) -> int:
            return int(post_json(app(token), f"/api/v1/orders/{order_id}/cancel", {}).status_code)

        def notify(headers: dict[str, str] = headers, body: bytes = body) -> int:
            return int(post_notification(Client(), headers, body).status_code)

        statuses = run_concurrently([cancel, notify], threads=2)
        rounds.append((order["id"], payment.pk, statuses))
    run_tasks()  # refunds of payments that lost the race
    for order_id, payment_id, (cancel_status, notify_status) in rounds:
        assert notify_status == 200
        order = Order.objects.get(pk=order_id)
        payment = Payment.objects.get(pk=payment_id)
        if cancel_status == 200:
            assert order.status == OrderStatus.CANCELLED
            assert payment.status == PaymentStatus.REFUNDED
            assert not Bundle.objects.filter(order_id=order_id).exists()
        else:
            assert cancel_status == 409
            assert order.status == OrderStatus.FULFILLED
            assert payment.status == PaymentStatus.SUCCEEDED
            assert Bundle.objects.filter(order_id=order_id).count() == 1
    assert_ledger_clean()


def test_the_sandbox_delivers_its_webhook_over_http(live_server: Any, settings: Any) -> None:
    """The production path: the worker POSTs the signed notification to our notify URL."""
    settings.SITE_URL = live_server.url
    settings.SANDBOX_WEBHOOK_DELIVERY = "http"
    actors = Actors()
    token, order = place(actors, "+8613500000201")
    checkout_url = order["payment"]["checkout_url"]
    assert checkout_url.startswith(live_server.url + "/sandbox/checkout/sbx_")
    from tests.payments_support import pay_on_page

    pay_on_page(checkout_url)
    assert run_tasks() == ["delivered"]
    assert app(token).get(f"/api/v1/orders/{order['id']}").json()["status"] == "fulfilled"
    assert PaymentEvent.objects.get().outcome == "applied"
    assert_ledger_clean()


def test_a_refused_http_delivery_is_retried_later(live_server: Any, settings: Any) -> None:
    settings.SITE_URL = live_server.url
    settings.SANDBOX_WEBHOOK_DELIVERY = "http"
    settings.SANDBOX_WEBHOOK_BACKOFF = [30]
    actors = Actors()
    _token, order = place(actors, "+8613500000202")
    # Our endpoint is down (503) when the gateway calls: the gateway retries later.
    from simtopup.payments import views
    from simtopup.payments.providers.base import Ack

    real_receive = views.receive
    views.receive = lambda *args: Ack(503, body=b"busy")
    try:
        assert sandbox.settle(SandboxCharge.objects.get(), "succeed")
        assert run_tasks() == ["retry (HTTP 503)"]
    finally:
        views.receive = real_receive
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.AWAITING_PAYMENT
    from django.utils import timezone
    from django_tasks_db.models import DBTaskResult

    DBTaskResult.objects.filter(status="READY").update(run_after=timezone.now())
    assert run_tasks() == ["delivered"]
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.FULFILLED
    assert_ledger_clean()


class WatchedSandbox(sandbox.SandboxProvider):
    """Records whether a database transaction was open while the provider was asked."""

    in_transaction: list[bool] = []

    def create_payment(self, request: Any) -> Any:
        from django.db import connection

        type(self).in_transaction.append(connection.in_atomic_block)
        return super().create_payment(request)


@pytest.mark.parametrize("key", [None, "watched-1"])
def test_the_provider_is_asked_outside_any_transaction(
    monkeypatch: pytest.MonkeyPatch, key: str | None
) -> None:
    from simtopup.payments import registry

    monkeypatch.setitem(
        registry.PROVIDER_CLASSES, "sandbox", "tests.test_payments_concurrency.WatchedSandbox"
    )
    WatchedSandbox.in_transaction = []
    actors = Actors()
    token, _c = make_customer("+8613500000301")
    headers = {"Idempotency-Key": key} if key else {}
    body = {"device": actors.device.iccid, "plan": "day-1g", "payment_method": "card"}
    response = post_json(app(token), "/api/v1/orders", body, **headers)
    assert response.status_code == 201, response.content
    assert WatchedSandbox.in_transaction == [False]
    assert Payment.objects.get().reference == SandboxCharge.objects.get().reference
    if key:  # a replay asks nobody
        again = post_json(app(token), "/api/v1/orders", body, **headers)
        assert again.json() == response.json()
        assert WatchedSandbox.in_transaction == [False]
        assert SandboxCharge.objects.count() == 1
