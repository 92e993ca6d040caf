"""A reseller webhook carries the X-Request-Id of the request that caused it (core/requestid.py):
the top-up request's id goes with the fulfilment task, its retries, and the event they queue."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from simtopup.core.logformat import JsonFormatter
from simtopup.network.adapters import AdapterError, Grant, bundle_window
from simtopup.orders.models import Order, OrderStatus
from simtopup.resellers.models import Reseller, WebhookDelivery
from simtopup.resellers.webhooks import deliver, queue_event
from tests.payments_support import run_tasks
from tests.support import Actors, post_json
from tests.test_webhooks import SECRET, Receiver


class BusyOnce:
    """An asynchronous network that is busy the first time it sees an order."""

    synchronous = False
    seen: set[int] = set()

    def apply(self, order: Order) -> Grant:
        if order.pk not in self.seen:
            self.seen.add(order.pk)
            raise AdapterError("busy, try later", permanent=False)
        return bundle_window(order)


@pytest.fixture
def receiver(actors: Actors, settings: Any) -> Iterator[Receiver]:
    settings.WEBHOOK_ALLOW_PRIVATE = True
    r = Receiver()
    Reseller.objects.filter(pk=actors.alice.pk).update(webhook_url=r.url, webhook_secret=SECRET)
    yield r
    r.close()


@pytest.fixture
def worker_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


def test_the_top_up_request_s_id_reaches_its_webhook_through_a_retry(
    actors: Actors, alice: Client, receiver: Receiver, settings: Any, worker_log: io.StringIO
) -> None:
    settings.NETWORK_ADAPTER = "tests.test_webhook_request_id.BusyOnce"
    settings.FULFILMENT_BACKOFF = [0]
    response = post_json(
        alice,
        "/reseller/v1/topups",
        {"device": actors.device.iccid, "plan": "day-1g", "reference": "rid-hook"},
        **{"X-Request-Id": "topup-req-1"},
    )
    assert response.status_code in (201, 202), response.content
    assert response["X-Request-Id"] == "topup-req-1"
    run_tasks()  # busy, retried (a task queued by the task), fulfilled, webhook delivered
    order = Order.objects.get()
    assert order.status == OrderStatus.FULFILLED
    assert order.attempts == 2
    delivery = WebhookDelivery.objects.get()
    assert delivery.event == "topup.fulfilled"
    assert delivery.request_id == "topup-req-1"
    assert len(receiver.calls) == 1
    headers, body = receiver.calls[0]
    assert headers["X-Request-Id"] == "topup-req-1"
    assert json.loads(body)["data"]["id"] == order.pk
    # The worker's log line about the failed attempt names the request too.
    retry_lines = [
        json.loads(line)
        for line in worker_log.getvalue().splitlines()
        if "fulfilment attempt 1 failed" in line
    ]
    assert [line["request_id"] for line in retry_lines] == ["topup-req-1"]


def test_a_webhook_queued_outside_a_request_has_no_request_id(
    actors: Actors, alice: Client, receiver: Receiver
) -> None:
    response = post_json(
        alice,
        "/reseller/v1/topups",
        {"device": actors.device.iccid, "plan": "day-1g", "reference": "rid-none"},
    )
    assert response.status_code == 201
    order = Order.objects.get()
    queue_event(order, "topup.fulfilled")  # e.g. a command or the janitor
    delivery = WebhookDelivery.objects.get()
    assert delivery.request_id == ""
    assert deliver(delivery.pk) == "delivered"
    headers, _body = receiver.calls[0]
    assert "X-Request-Id" not in headers
    assert "X-Simtopup-Delivery" in headers
