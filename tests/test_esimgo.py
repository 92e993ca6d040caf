"""The eSIM Go adapter (network/esimgo.py) against a fake eSIM Go API v2.4 in their published
shapes (tests/fake_esimgo.py): validate before transaction, a bundle processing until a poll
or their signed callback says it is done, a lost answer found on the card instead of bought
twice, their refusals in our words, 429 with Retry-After, usage into our bundles, the catalogue
sync; and both providers' webhooks (signature, duplicates)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from airalo.helpers.signature import Signature
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from simtopup.ledger.audit import audit
from simtopup.network.models import UpstreamCard, UpstreamEvent, UpstreamOrder, UpstreamPackage
from simtopup.ops.upstream_usage import sync_usage
from simtopup.orders.actions import fulfil_pending
from simtopup.orders.models import Order, OrderStatus
from simtopup.usage.models import Bundle
from tests.fake_esimgo import FakeEsimGo
from tests.fake_upstream import FakeAiralo, link_plans
from tests.support import GB, Actors, float_of, post_json, reseller_client

pytestmark = pytest.mark.django_db

WEBHOOK = "/network/upstream/{}/webhook"


@pytest.fixture
def esimgo(settings: Any, actors: Actors) -> Iterator[FakeEsimGo]:
    with FakeEsimGo() as fake:
        fake.configure(settings)
        link_plans("esimgo", **{"day-1g": "esim_1GB_1D_GL_V2"})
        settings.FULFILMENT_BACKOFF = [1, 1, 1]
        yield fake


def place(actors: Actors, plan: str = "day-1g") -> Order:
    response = post_json(
        reseller_client(actors.alice_key),
        "/reseller/v1/topups",
        {"device": actors.device.iccid, "plan": plan, "reference": "e-1"},
    )
    assert response.status_code == 201, response.content
    return Order.objects.get(pk=response.json()["id"])


def due_now(order: Order) -> None:
    Order.objects.filter(pk=order.pk).update(next_attempt_at=timezone.now())


def fulfil_tasks(order: Order) -> int:
    return sum(
        1
        for t in DBTaskResult.objects.filter(task_path__endswith="fulfil_order_task")
        if t.args_kwargs["args"] == [order.pk]
    )


def test_validate_then_transaction_then_the_bundle_is_ours(
    actors: Actors, esimgo: FakeEsimGo
) -> None:
    order = place(actors)
    assert fulfil_pending(order.pk) == "fulfilled"
    assert esimgo.kinds() == ["validate", "transaction"]
    transaction = esimgo.calls[1].body
    assert transaction == {
        "type": "transaction",
        "assign": True,
        "order": [
            {
                "type": "bundle",
                "quantity": 1,
                "item": "esim_1GB_1D_GL_V2",
                "iccids": [actors.device.iccid],
                "allowReassign": False,
            }
        ],
    }
    made = UpstreamOrder.objects.get(order_id=order.pk)
    [row] = esimgo.assignments[actors.device.iccid]["esim_1GB_1D_GL_V2"]
    assert row["assignmentReference"] == made.reference + "-0"
    bundle = Bundle.objects.get(order=order)
    assert bundle.granted_bytes == 1 * GB
    assert float_of(actors.alice) == 100000 - 460
    assert audit() == []


def test_a_processing_bundle_keeps_the_order_processing_until_a_poll_says_done(
    actors: Actors, esimgo: FakeEsimGo
) -> None:
    esimgo.initial_state = "processing"
    order = place(actors)
    before = timezone.now()
    assert fulfil_pending(order.pk) == "retry"
    order.refresh_from_db()
    assert (order.status, order.failure_detail) == (OrderStatus.PAID, "esimgo bundle processing")
    assert order.next_attempt_at is not None
    assert order.next_attempt_at >= before + timedelta(seconds=30)
    # Still processing at the next poll: no second order, just another look.
    due_now(order)
    assert fulfil_pending(order.pk) == "retry"
    esimgo.settle()
    due_now(order)
    assert fulfil_pending(order.pk) == "fulfilled"
    assert esimgo.kinds() == ["validate", "transaction"]
    assert esimgo.orders[actors.device.iccid] == 1


def test_a_lost_answer_is_found_on_the_card_not_bought_twice(
    actors: Actors, esimgo: FakeEsimGo, settings: Any
) -> None:
    settings.UPSTREAM_TIMEOUT_SECONDS = 1
    esimgo.hold_timeout = 3
    esimgo.hold(frozenset({"transaction"}))  # eSIM Go orders, then answers after our timeout
    order = place(actors)
    assert fulfil_pending(order.pk) == "retry"
    iccid = actors.device.iccid
    assert esimgo.orders[iccid] == 1
    assert not UpstreamOrder.objects.filter(order_id=order.pk).exists()  # no answer reached us
    esimgo.release()
    due_now(order)
    assert fulfil_pending(order.pk) == "fulfilled"
    assert esimgo.kinds() == ["validate", "transaction"]  # found on the card, not bought again
    assert esimgo.orders[iccid] == 1
    [row] = esimgo.assignments[iccid]["esim_1GB_1D_GL_V2"]
    assert UpstreamOrder.objects.get(order_id=order.pk).reference == row["assignmentReference"]
    assert float_of(actors.alice) == 100000 - 460
    assert audit() == []


def test_an_assignment_another_order_claimed_is_not_taken(
    actors: Actors, esimgo: FakeEsimGo, settings: Any
) -> None:
    first = place(actors)
    assert fulfil_pending(first.pk) == "fulfilled"
    settings.UPSTREAM_TIMEOUT_SECONDS = 1
    esimgo.hold_timeout = 3
    response = post_json(
        reseller_client(actors.alice_key),
        "/reseller/v1/topups",
        {"device": actors.device.iccid, "plan": "day-1g", "reference": "e-2"},
    )
    second = Order.objects.get(pk=response.json()["id"])
    # A failed first attempt that reached nobody (validate refused for now) ...
    esimgo.throttle = 1
    assert fulfil_pending(second.pk) == "retry"
    due_now(second)
    # ... then the next attempt: the card's only assignment is the first order's.
    assert fulfil_pending(second.pk) == "fulfilled"
    assert esimgo.orders[actors.device.iccid] == 2
    refs = set(UpstreamOrder.objects.values_list("reference", flat=True))
    assert len(refs) == 2


@pytest.mark.parametrize(
    ("phase", "message", "ours"),
    [
        ("validate", "ICCID 8986 does not belong to your organisation", "invalid_iccid"),
        ("validate", "Bundle is out of stock", "out_of_stock"),
        ("validate", "eSIM has been deactivated", "iccid_recycled"),
        ("validate", "Bundle esim_X not found", "upstream_refused"),
        ("transaction", "eSIM is not compatible with this bundle", "invalid_iccid"),
    ],
)
def test_a_final_refusal_is_refunded_in_our_words(
    actors: Actors, esimgo: FakeEsimGo, phase: str, message: str, ours: str
) -> None:
    esimgo.fail_with = (phase, 400, {"message": message})
    order = place(actors)
    assert fulfil_pending(order.pk) == "failed"
    order.refresh_from_db()
    assert (order.status, order.failure_code) == (OrderStatus.FAILED, ours)
    assert float_of(actors.alice) == 100000
    # A refusal at validate spends nothing: no transaction was sent.
    assert esimgo.kinds() == (["validate"] if phase == "validate" else ["validate", "transaction"])


def test_insufficient_balance_waits_then_refunds(actors: Actors, esimgo: FakeEsimGo) -> None:
    esimgo.fail_with = ("validate", 400, {"message": "Insufficient balance to complete order"})
    order = place(actors)
    outcomes = []
    for _ in range(4):
        outcomes.append(fulfil_pending(order.pk))
        due_now(order)
    assert outcomes == ["retry", "retry", "retry", "failed"]
    order.refresh_from_db()
    assert order.failure_code == "upstream_insufficient_credit"
    assert float_of(actors.alice) == 100000


def test_429_waits_for_retry_after(actors: Actors, esimgo: FakeEsimGo) -> None:
    esimgo.throttle, esimgo.retry_after = 1, 20
    order = place(actors)
    before = timezone.now()
    assert fulfil_pending(order.pk) == "retry"
    order.refresh_from_db()
    assert order.next_attempt_at is not None
    assert order.next_attempt_at >= before + timedelta(seconds=20)
    due_now(order)
    assert fulfil_pending(order.pk) == "fulfilled"


def test_usage_from_esimgo_drains_the_bundle(actors: Actors, esimgo: FakeEsimGo) -> None:
    order = place(actors)
    assert fulfil_pending(order.pk) == "fulfilled"
    esimgo.use(actors.device.iccid, 250_000_000)
    assert sync_usage() == {"records": 1}
    bundle = Bundle.objects.select_related("account").get(order=order)
    assert bundle.account.balance == 1 * GB - 250_000_000


def test_sync_catalogue_from_esimgo(actors: Actors, esimgo: FakeEsimGo) -> None:
    UpstreamPackage.objects.all().delete()
    out = io.StringIO()
    call_command(
        "network", "sync-catalogue", "--margin-bps", "1000", "--currency", "USD", stdout=out
    )
    result = json.loads(out.getvalue())
    assert result["provider"] == "esimgo"
    assert len(result["created"]) == 3  # two pages
    link = UpstreamPackage.objects.select_related("plan").get(package_id="esim_3GB_30D_GL_V2")
    assert (link.net_price, link.plan.price, link.plan.active) == (650, 715, False)


# --- webhooks -----------------------------------------------------------------------------


def test_esimgo_callback_verified_pokes_the_processing_order_once(
    actors: Actors, esimgo: FakeEsimGo
) -> None:
    esimgo.initial_state = "processing"
    order = place(actors)
    assert fulfil_pending(order.pk) == "retry"
    esimgo.settle()
    iccid = actors.device.iccid
    body = json.dumps(
        {
            "iccid": iccid,
            "alertType": "Utilisation",
            "bundle": {
                "name": "esim_1GB_1D_GL_V2",
                "initialQuantity": 1000000000,
                "remainingQuantity": 1000000000,
                "unlimited": False,
            },
        }
    ).encode()
    client = Client()
    url = WEBHOOK.format("esimgo")
    tasks = fulfil_tasks(order)

    bad = client.post(
        url,
        body,
        content_type="application/json",
        headers=esimgo.callback_headers(body, key="not-the-key"),
    )
    assert bad.status_code == 401
    assert bad.json()["code"] == "invalid_signature"

    first = client.post(
        url, body, content_type="application/json", headers=esimgo.callback_headers(body)
    )
    assert first.status_code == 200
    assert first.json() == {"status": "accepted", "cards": 1, "orders": 1}
    order.refresh_from_db()
    assert order.next_attempt_at is not None
    assert order.next_attempt_at <= timezone.now()
    assert fulfil_tasks(order) == tasks + 1
    card = UpstreamCard.objects.get(device=actors.device)
    assert card.next_read_at <= timezone.now()

    again = client.post(
        url, body, content_type="application/json", headers=esimgo.callback_headers(body)
    )
    assert again.json() == {"status": "duplicate"}
    assert fulfil_tasks(order) == tasks + 1
    assert UpstreamEvent.objects.count() == 1
    # The attempt the callback called for completes the order (a poll says done).
    assert fulfil_pending(order.pk) == "fulfilled"


def test_a_webhook_for_another_provider_is_not_found(esimgo: FakeEsimGo) -> None:
    response = Client().post(WEBHOOK.format("airalo"), b"{}", content_type="application/json")
    assert response.status_code == 404


def test_airalo_low_data_notice_is_verified_and_makes_the_card_due(
    actors: Actors, settings: Any
) -> None:
    with FakeAiralo() as airalo:
        airalo.configure(settings)
        link_plans(**{"day-1g": "fake-1gb-1d-topup"})
        order = place(actors)
        assert fulfil_pending(order.pk) == "fulfilled"
        card = UpstreamCard.objects.get(device=actors.device)
        later = timezone.now() + timedelta(minutes=5)
        UpstreamCard.objects.filter(pk=card.pk).update(next_read_at=later, read_at=None)
        text = json.dumps(
            {
                "level": "75%",
                "package_name": "fake-1gb-1d-topup",
                "remaining_percentage": 25,
                "iccid": actors.device.iccid,
            }
        )
        signature = Signature(airalo.client_secret).get_signature(text)
        url = WEBHOOK.format("airalo")
        client = Client()
        unsigned = client.post(url, text, content_type="application/json")
        assert unsigned.status_code == 401
        accepted = client.post(
            url, text, content_type="application/json", headers={"airalo-signature": signature}
        )
        assert accepted.json() == {"status": "accepted", "cards": 1, "orders": 0}
        card.refresh_from_db()
        assert card.next_read_at <= timezone.now() + timedelta(seconds=6)
        duplicate = client.post(
            url, text, content_type="application/json", headers={"airalo-signature": signature}
        )
        assert duplicate.json() == {"status": "duplicate"}
        malformed = client.post(
            url,
            "[1]",
            content_type="application/json",
            headers={"airalo-signature": Signature(airalo.client_secret).get_signature("[1]")},
        )
        assert malformed.status_code == 400


def test_old_webhook_deliveries_are_forgotten(esimgo: FakeEsimGo, monkeypatch: Any) -> None:
    from simtopup.ops import upstream_usage

    old = UpstreamEvent.objects.create(provider="esimgo", key="a" * 64)
    UpstreamEvent.objects.filter(pk=old.pk).update(received_at=timezone.now() - timedelta(days=31))
    UpstreamEvent.objects.create(provider="esimgo", key="b" * 64)
    monkeypatch.setattr(upstream_usage, "_prune_due_at", 0.0)
    assert sync_usage() == {"events_pruned": 1}
    assert list(UpstreamEvent.objects.values_list("key", flat=True)) == ["b" * 64]
    assert sync_usage() == {}  # not again within the hour


def test_airalo_order_webhook_with_our_reference_tries_the_order_now(
    actors: Actors, settings: Any
) -> None:
    with FakeAiralo() as airalo:
        airalo.configure(settings)
        link_plans(**{"day-1g": "fake-1gb-1d-topup"})
        airalo.throttle, airalo.retry_after = 1, 600
        order = place(actors)
        assert fulfil_pending(order.pk) == "retry"  # 429: next attempt in 10 minutes
        tasks = fulfil_tasks(order)
        text = json.dumps({"data": {"id": 9001, "description": f"simtopup-order-{order.pk}"}})
        signature = Signature(airalo.client_secret).get_signature(text)
        response = Client().post(
            WEBHOOK.format("airalo"),
            text,
            content_type="application/json",
            headers={"airalo-signature": signature},
        )
        assert response.json() == {"status": "accepted", "cards": 0, "orders": 1}
        assert fulfil_tasks(order) == tasks + 1
        assert fulfil_pending(order.pk) == "fulfilled"
        # A description that is not ours changes nothing.
        other = json.dumps({"data": {"id": 9002, "description": "simtopup-order-x1"}})
        response = Client().post(
            WEBHOOK.format("airalo"),
            other,
            content_type="application/json",
            headers={"airalo-signature": Signature(airalo.client_secret).get_signature(other)},
        )
        assert response.json() == {"status": "accepted", "cards": 0, "orders": 0}
