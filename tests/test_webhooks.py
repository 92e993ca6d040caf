"""Outgoing reseller webhooks: signed, delivered once per event, retried with backoff."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
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
        self.paths: list[str] = []  # the request target of each call, as received
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append(({k: v for k, v in self.headers.items()}, body))
                receiver.paths.append(self.path)
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


def test_a_receiver_checks_the_v2_signature_by_the_documented_recipe(
    fulfilled_order: Order, receiver: Receiver
) -> None:
    """docs/api.md's receiver recipe, written out here (not core.signing): v2 over POST, the
    path with query the receiver was called on, the timestamp and the body; v1 still sent."""
    Reseller.objects.filter(pk=fulfilled_order.reseller_id).update(
        webhook_url=receiver.url + "?tenant=7&x=a%20b"
    )
    queue_event(fulfilled_order, "topup.fulfilled")
    assert deliver(WebhookDelivery.objects.get().pk) == "delivered"
    [(headers, body)] = receiver.calls
    [path] = receiver.paths
    assert path == "/hooks?tenant=7&x=a%20b"
    items = [item.split("=", 1) for item in headers["X-Simtopup-Signature"].split(",")]
    assert [key for key, _value in items] == ["t", "v1", "v2"]
    fields = dict(items)
    t = fields["t"]
    assert abs(int(t) - time.time()) < 60
    key = SECRET.encode()
    v2 = hmac.new(key, f"{t}.POST.{path}.".encode() + body, hashlib.sha256).hexdigest()
    v1 = hmac.new(key, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(fields["v2"], v2)
    assert hmac.compare_digest(fields["v1"], v1)  # deprecated, for one release
    other = hmac.new(key, f"{t}.POST./hooks.".encode() + body, hashlib.sha256).hexdigest()
    assert fields["v2"] != other  # the query is signed


def test_it_delivers_a_signed_event_once(fulfilled_order: Order, receiver: Receiver) -> None:
    queue_event(fulfilled_order, "topup.fulfilled")
    queue_event(fulfilled_order, "topup.fulfilled")  # a retry of the same fact
    assert WebhookDelivery.objects.count() == 1
    delivery = WebhookDelivery.objects.get()
    assert deliver(delivery.pk) == "delivered"
    assert deliver(delivery.pk) == "not_due"
    assert len(receiver.calls) == 1
    headers, body = receiver.calls[0]
    assert receiver.paths == ["/hooks"]
    verify(SECRET, headers["X-Simtopup-Signature"], "POST", "/hooks", body)  # raises if wrong
    with pytest.raises(DomainError):
        verify("another secret", headers["X-Simtopup-Signature"], "POST", "/hooks", body)
    fields = dict(item.split("=", 1) for item in headers["X-Simtopup-Signature"].split(","))
    v2_only = f"t={fields['t']},v2={fields['v2']}"
    verify(SECRET, v2_only, "POST", "/hooks", body)
    with pytest.raises(DomainError):  # v2 binds the receiver's path
        verify(SECRET, v2_only, "POST", "/other", body)
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
