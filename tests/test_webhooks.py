"""Outgoing reseller webhooks: signed, delivered once per event, retried with backoff."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from simtopup.core.errors import DomainError
from simtopup.core.signing import verify
from simtopup.orders.models import Order
from simtopup.resellers.models import DeliveryStatus, Reseller, WebhookDelivery
from simtopup.resellers.webhooks import deliver, deliver_due, queue_event
from tests.support import Actors, post_json

SECRET = "whsec_test_secret"


class Receiver:
    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append(({k: v for k, v in self.headers.items()}, body))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(timeout=5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def fulfilled_order(actors: Actors, alice, receiver: Receiver, settings) -> Order:
    # The receiver is plain http on loopback: a test installation's setting allows it.
    settings.WEBHOOK_ALLOW_PRIVATE = True
    Reseller.objects.filter(pk=actors.alice.pk).update(
        webhook_url=receiver.url, webhook_secret=SECRET
    )
    response = post_json(
        alice,
        "/reseller/v1/topups",
        {"device": actors.device.iccid, "plan": "day-1g", "reference": "w1"},
    )
    assert response.status_code == 201
    return Order.objects.get(pk=response.json()["id"])


def test_it_delivers_a_signed_event_once(fulfilled_order: Order, receiver: Receiver) -> None:
    queue_event(fulfilled_order, "topup.fulfilled")
    queue_event(fulfilled_order, "topup.fulfilled")  # a retry of the same fact
    assert WebhookDelivery.objects.count() == 1
    delivery = WebhookDelivery.objects.get()
    assert deliver(delivery.pk) == "delivered"
    assert deliver(delivery.pk) == "not_due"
    assert len(receiver.calls) == 1
    headers, body = receiver.calls[0]
    verify(SECRET, headers["X-Simtopup-Signature"], body)  # raises if wrong
    with pytest.raises(DomainError):
        verify("another secret", headers["X-Simtopup-Signature"], body)
    event = json.loads(body)
    assert event["type"] == "topup.fulfilled"
    assert event["data"]["id"] == fulfilled_order.pk
    assert event["data"]["status"] == "fulfilled"
    assert event["data"]["reference"] == "w1"
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED


def test_it_retries_with_backoff_then_gives_up(
    fulfilled_order: Order, receiver: Receiver, settings
) -> None:
    settings.WEBHOOK_BACKOFF = [10, 60]
    receiver.status = 503
    queue_event(fulfilled_order, "topup.fulfilled")
    delivery = WebhookDelivery.objects.get()
    before = timezone.now()
    assert deliver(delivery.pk) == "retry"
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.last_error == "HTTP 503"
    assert delivery.next_attempt_at >= before + timedelta(seconds=10)
    assert deliver(delivery.pk) == "not_due"  # not before its time
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    assert deliver(delivery.pk) == "retry"
    delivery.refresh_from_db()
    assert delivery.next_attempt_at >= before + timedelta(seconds=60)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    assert deliver(delivery.pk) == "failed"
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert len(receiver.calls) == 3


def test_the_reconciler_delivers_what_is_due(fulfilled_order: Order, receiver: Receiver) -> None:
    receiver.status = 500
    queue_event(fulfilled_order, "topup.fulfilled")
    delivery = WebhookDelivery.objects.get()
    assert deliver(delivery.pk) == "retry"
    receiver.status = 204
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    assert deliver_due() == 1
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED


def test_no_url_no_delivery(actors: Actors, alice) -> None:
    response = post_json(
        alice,
        "/reseller/v1/topups",
        {"device": actors.device.iccid, "plan": "day-1g", "reference": "w2"},
    )
    queue_event(Order.objects.get(pk=response.json()["id"]), "topup.fulfilled")
    assert WebhookDelivery.objects.count() == 0


def test_unreachable_receiver_is_retried(fulfilled_order: Order, receiver: Receiver) -> None:
    receiver.close()
    queue_event(fulfilled_order, "topup.fulfilled")
    delivery = WebhookDelivery.objects.get()
    assert deliver(delivery.pk) == "retry"
    delivery.refresh_from_db()
    assert delivery.last_error
