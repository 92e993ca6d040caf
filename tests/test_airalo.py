"""The Airalo adapter (network/airalo.py) against a fake Airalo Partner API that follows their
published requests and answers (tests/fake_upstream.py): top-ups through the official SDK,
their refusals in our words, 429 with Retry-After, a late answer after a timeout found by our
reference instead of bought twice, refunds when Airalo finally refuses, and the catalogue
sync that makes their packages our (inactive) plans."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from simtopup.audit.models import AuditEntry
from simtopup.catalog.models import Plan
from simtopup.ledger.audit import audit
from simtopup.network.models import UpstreamCard, UpstreamPackage
from simtopup.ops.janitor import run_janitor
from simtopup.ops.upstream_usage import sync_usage
from simtopup.orders.actions import fulfil_pending
from simtopup.orders.models import Order, OrderStatus
from simtopup.usage.models import Alert, Bundle, UsageRecord
from tests.fake_upstream import FakeAiralo, link_plans
from tests.payments_support import (
    app,
    assert_ledger_clean,
    bind,
    credit_of,
    give_credit,
    make_customer,
    run_tasks,
)
from tests.support import GB, MB, Actors, float_of, post_json, reseller_client
from tests.test_balance_payment import pay_with_credit

pytestmark = pytest.mark.django_db


@pytest.fixture
def airalo(settings: Any, actors: Actors) -> Iterator[FakeAiralo]:
    with FakeAiralo() as fake:
        fake.configure(settings)
        link_plans(**{"day-1g": "fake-1gb-1d-topup"})
        settings.FULFILMENT_BACKOFF = [1, 1]
        yield fake


def place(actors: Actors, plan: str = "day-1g", reference: str = "a-1") -> Order:
    response = post_json(
        reseller_client(actors.alice_key),
        "/reseller/v1/topups",
        {"device": actors.device.iccid, "plan": plan, "reference": reference},
    )
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "processing"
    return Order.objects.get(pk=response.json()["id"])


def due_now(order: Order) -> None:
    """Let the next attempt run now instead of after its backoff."""
    Order.objects.filter(pk=order.pk).update(next_attempt_at=timezone.now())


def test_a_topup_is_airalos_topup_of_the_linked_package(actors: Actors, airalo: FakeAiralo) -> None:
    order = place(actors)
    assert fulfil_pending(order.pk) == "fulfilled"

    key = f"simtopup-order-{order.pk}"
    [call] = airalo.calls_for(key)  # signed as the SDK signs (the fake checks airalo-signature)
    assert call.body == {
        "package_id": "fake-1gb-1d-topup",
        "iccid": actors.device.iccid,
        "description": key,
    }
    assert airalo.lookups == 0  # a first attempt has nothing to look up
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED
    bundle = Bundle.objects.get(order=order)
    assert bundle.granted_bytes == 1 * GB
    assert bundle.expires_at - bundle.starts_at == timedelta(hours=24)
    assert float_of(actors.alice) == 100000 - 460
    # The card is now one whose usage is read from Airalo.
    card = UpstreamCard.objects.get(device=actors.device)
    assert card.provider == "airalo"
    assert audit() == []


def test_429_waits_at_least_the_retry_after_then_succeeds(
    actors: Actors, airalo: FakeAiralo
) -> None:
    airalo.throttle, airalo.retry_after = 1, 30
    order = place(actors)
    before = timezone.now()
    assert fulfil_pending(order.pk) == "retry"
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID
    assert order.failure_detail == "airalo answered 429"
    assert order.next_attempt_at is not None
    # The backoff says 1 s; Airalo said 30 s: we wait 30.
    assert order.next_attempt_at >= before + timedelta(seconds=30)
    assert fulfil_pending(order.pk) == "not_claimable"
    due_now(order)
    assert fulfil_pending(order.pk) == "fulfilled"
    # The retry looked for a top-up the 429 might have made, found none, and ordered once.
    assert airalo.lookups == 1
    assert dict(airalo.granted) == {f"simtopup-order-{order.pk}": 1}


@pytest.mark.parametrize(
    ("code", "ours"),
    [
        (14, "invalid_iccid"),
        (33, "out_of_stock"),
        (34, "out_of_stock"),
        (73, "iccid_recycled"),
        (23, "topup_disabled"),
        (43, "upstream_refused"),
    ],
)
def test_a_final_refusal_fails_the_order_in_our_words_and_refunds(
    actors: Actors, airalo: FakeAiralo, code: int, ours: str
) -> None:
    airalo.fail_with = (422, {"code": code, "reason": f"refused with {code}"})
    order = place(actors)
    assert fulfil_pending(order.pk) == "failed"
    order.refresh_from_db()
    assert (order.status, order.failure_code) == (OrderStatus.FAILED, ours)
    assert order.failure_detail == f"airalo refused ({code}): refused with {code}"
    assert float_of(actors.alice) == 100000
    assert not Bundle.objects.filter(order=order).exists()
    assert audit() == []


def test_insufficient_airalo_credit_is_retried_then_refunded(
    actors: Actors, airalo: FakeAiralo
) -> None:
    airalo.fail_with = (422, {"code": 11, "reason": "Insufficient Airalo Credit: 3.50"})
    order = place(actors)
    assert fulfil_pending(order.pk) == "retry"  # the operator may refill the Airalo balance
    order.refresh_from_db()
    assert float_of(actors.alice) == 100000 - 460  # held meanwhile
    for outcome in ("retry", "failed"):
        due_now(order)
        assert fulfil_pending(order.pk) == outcome
    order.refresh_from_db()
    assert (order.status, order.failure_code) == (
        OrderStatus.FAILED,
        "upstream_insufficient_credit",
    )
    assert float_of(actors.alice) == 100000
    assert len(airalo.calls_for(f"simtopup-order-{order.pk}")) == 3


def test_a_refused_parameter_is_a_final_refusal(actors: Actors, airalo: FakeAiralo) -> None:
    link_plans(**{"day-1g": "no-such-package"})
    order = place(actors)
    assert fulfil_pending(order.pk) == "failed"
    order.refresh_from_db()
    assert order.failure_code == "upstream_refused"
    assert "package_id" in order.failure_detail
    assert float_of(actors.alice) == 100000


def test_a_plan_without_an_airalo_package_is_refunded_without_calling_airalo(
    actors: Actors, airalo: FakeAiralo
) -> None:
    order = place(actors, plan="month-20g")
    assert fulfil_pending(order.pk) == "failed"
    order.refresh_from_db()
    assert order.failure_code == "not_offered"
    assert airalo.calls == []
    assert float_of(actors.alice) == 100000


def test_a_late_answer_after_our_timeout_is_found_by_reference_not_bought_twice(
    actors: Actors, airalo: FakeAiralo, settings: Any
) -> None:
    settings.UPSTREAM_TIMEOUT_SECONDS = 1
    airalo.hold_timeout = 3  # Airalo answers after 3 s; we stop waiting after 1 s
    airalo.hold()
    order = place(actors)
    assert fulfil_pending(order.pk) == "retry"
    key = f"simtopup-order-{order.pk}"
    assert airalo.granted[key] == 1  # made upstream; its answer came too late for us
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID
    airalo.release()
    due_now(order)
    assert fulfil_pending(order.pk) == "fulfilled"
    assert airalo.lookups == 1
    assert len(airalo.calls_for(key)) == 1
    assert dict(airalo.granted) == {key: 1}
    bundle = Bundle.objects.get(order=order)
    assert bundle.starts_at.strftime("%Y-%m-%d %H:%M:%S") == airalo.topup_for(key)["created_at"]
    assert float_of(actors.alice) == 100000 - 460
    assert audit() == []


def test_airalo_unreachable_is_retried(actors: Actors, airalo: FakeAiralo, settings: Any) -> None:
    settings.AIRALO_URL = "http://127.0.0.1:9/v2/"  # nothing listens there
    order = place(actors)
    assert fulfil_pending(order.pk) == "retry"
    order.refresh_from_db()
    assert order.failure_detail.startswith("airalo token:")


def test_wrong_credentials_are_retried_not_refunded(
    actors: Actors, airalo: FakeAiralo, settings: Any
) -> None:
    settings.AIRALO_CLIENT_SECRET = "not-the-secret"
    order = place(actors)
    assert fulfil_pending(order.pk) == "retry"
    assert airalo.calls == []
    assert float_of(actors.alice) == 100000 - 460


# --- the catalogue ------------------------------------------------------------------------


def sync(margin: int = 2500, *options: str) -> dict[str, Any]:
    out = io.StringIO()
    options = options or ("--currency", "USD")
    call_command("network", "sync-catalogue", "--margin-bps", str(margin), *options, stdout=out)
    return json.loads(out.getvalue())


def test_sync_catalogue_imports_every_page_as_inactive_plans_at_the_margin(
    actors: Actors, airalo: FakeAiralo
) -> None:
    UpstreamPackage.objects.all().delete()  # no plan of ours is linked yet
    result = sync()
    assert sorted(result["created"]) == [
        "airalo-fake-10gb-30d-topup",
        "airalo-fake-1gb-1d-topup",
        "airalo-fake-3gb-30d-topup",
    ]  # three packages on two pages
    plan = Plan.objects.get(code="airalo-fake-3gb-30d-topup")
    assert plan.active is False
    assert (plan.currency, plan.price) == ("USD", 907)  # 725 × 1.25 = 906.25, rounded up
    assert (plan.data_bytes, plan.validity_hours, plan.kind) == (3 * GB, 720, "monthly")
    link = UpstreamPackage.objects.get(plan=plan)
    assert (link.provider, link.package_id, link.net_price) == ("airalo", "fake-3gb-30d-topup", 725)
    assert Plan.objects.get(code="airalo-fake-1gb-1d-topup").kind == "daily"
    assert AuditEntry.objects.filter(action="plan.change").count() == 3

    # Again: nothing new, nothing changed.
    assert sync() == {
        "provider": "airalo",
        "created": [],
        "updated": [],
        "unlisted": [],
        "below_cost": [],
        "skipped": [],
    }

    # Airalo raises a net price: the inactive plan follows, the active one keeps its price and
    # is reported when it now sells below cost; a package no longer listed switches its plan off.
    Plan.objects.filter(code="airalo-fake-10gb-30d-topup").update(active=True)
    airalo.packages[1]["net_price"] = 8.00
    airalo.packages[2]["net_price"] = 30.00
    del airalo.packages[0]
    result = sync()
    assert result["updated"] == ["airalo-fake-3gb-30d-topup"]
    assert result["below_cost"] == ["airalo-fake-10gb-30d-topup"]
    assert result["unlisted"] == ["airalo-fake-1gb-1d-topup"]
    assert Plan.objects.get(code="airalo-fake-3gb-30d-topup").price == 1000
    assert Plan.objects.get(code="airalo-fake-10gb-30d-topup").price == 2250  # 18.00 × 1.25
    assert UpstreamPackage.objects.get(package_id="fake-10gb-30d-topup").net_price == 3000
    assert Plan.objects.get(code="airalo-fake-1gb-1d-topup").active is False


def test_a_synced_plan_once_turned_on_sells_through_airalo(
    actors: Actors, airalo: FakeAiralo
) -> None:
    UpstreamPackage.objects.all().delete()
    sync(0, "--rate", "7.2")  # CNY (the operator's currency) per USD
    plan = Plan.objects.get(code="airalo-fake-1gb-1d-topup")
    assert (plan.currency, plan.price) == ("CNY", 2520)  # 3.50 USD × 7.2 = 25.20 CNY
    Plan.objects.filter(pk=plan.pk).update(active=True)
    order = place(actors, plan="airalo-fake-1gb-1d-topup")
    assert fulfil_pending(order.pk) == "fulfilled"
    assert [c.body["package_id"] for c in airalo.calls] == ["fake-1gb-1d-topup"]


def test_sync_catalogue_needs_a_rate_between_currencies(actors: Actors, airalo: FakeAiralo) -> None:
    with pytest.raises(CommandError, match=r"airalo prices in USD: give --rate \(CNY"):
        sync(2000, "--currency", "CNY")
    with pytest.raises(CommandError, match="--rate: a positive number"):
        sync(2000, "--rate", "-1")
    assert not Plan.objects.filter(code__startswith="airalo-").exists()


def test_sync_catalogue_refuses_without_a_provider(settings: Any) -> None:
    settings.NETWORK_ADAPTER = "builtin"
    with pytest.raises(Exception, match="has no catalogue to sync"):
        sync()


# --- usage --------------------------------------------------------------------------------


def topped_up(actors: Actors, airalo: FakeAiralo) -> Bundle:
    order = place(actors)
    assert fulfil_pending(order.pk) == "fulfilled"
    return Bundle.objects.select_related("account").get(order=order)


def balance(bundle: Bundle) -> int:
    bundle.account.refresh_from_db()
    return bundle.account.balance


def test_usage_read_from_airalo_drains_the_bundle_and_raises_alerts(
    actors: Actors, airalo: FakeAiralo, settings: Any
) -> None:
    settings.UPSTREAM_USAGE_INTERVAL_SECONDS = 60
    bundle = topped_up(actors, airalo)
    iccid = actors.device.iccid
    now = timezone.now()
    assert sync_usage(now=now) == {"unchanged": 1}  # nothing used yet

    airalo.use(iccid, 300)
    assert sync_usage(now=now + timedelta(seconds=30)) == {}  # not due: once a minute
    assert sync_usage(now=now + timedelta(seconds=61)) == {"records": 1}
    assert balance(bundle) == 1 * GB - 300 * MB
    record = UsageRecord.objects.get()
    assert (record.record_id, record.bytes) == (f"airalo:{iccid}:1", 300 * MB)

    airalo.use(iccid, 600)  # 900 of 1,024 MB: the 80 % alert, as for our own network
    assert sync_usage(now=now + timedelta(seconds=122)) == {"records": 1}
    assert balance(bundle) == 1 * GB - 900 * MB
    assert list(Alert.objects.filter(bundle=bundle).values_list("kind", flat=True)) == ["used_80"]
    card = UpstreamCard.objects.get(device=actors.device)
    assert (card.used_bytes, card.sequence) == (900 * MB, 2)
    assert card.next_read_at == now + timedelta(seconds=182)
    assert airalo.usage_reads[iccid] == 3
    assert audit() == []


def test_a_read_that_died_before_saving_is_not_rated_twice(
    actors: Actors, airalo: FakeAiralo
) -> None:
    bundle = topped_up(actors, airalo)
    airalo.use(actors.device.iccid, 100)
    card = UpstreamCard.objects.get(device=actors.device)
    assert sync_usage() == {"records": 1}
    # The pass died after rating, before saving the read: the card is as it was.
    UpstreamCard.objects.filter(pk=card.pk).update(
        used_bytes=card.used_bytes, sequence=card.sequence, next_read_at=card.next_read_at
    )
    # Read again: the same record id, refused by rating as a duplicate; the read is saved.
    assert sync_usage() == {"duplicates": 1}
    card.refresh_from_db()
    assert (card.used_bytes, card.sequence) == (100 * MB, 1)
    assert UsageRecord.objects.count() == 1
    assert balance(bundle) == 1 * GB - 100 * MB


def test_usage_reads_keep_within_airalos_limit_and_honour_retry_after(
    actors: Actors, airalo: FakeAiralo, settings: Any
) -> None:
    settings.UPSTREAM_USAGE_INTERVAL_SECONDS = 0  # as often as possible: Airalo's 6 s still hold
    topped_up(actors, airalo)
    iccid = actors.device.iccid
    now = timezone.now()
    assert sync_usage(now=now) == {"unchanged": 1}
    card = UpstreamCard.objects.get(device=actors.device)
    assert card.next_read_at == now + timedelta(seconds=6)  # 10 requests / minute / ICCID
    assert sync_usage(now=now + timedelta(seconds=5)) == {}

    # Someone else (the operator's own tools) used up this minute's reads: Airalo answers 429.
    airalo.usage[iccid].reads.extend([time.monotonic()] * 10)
    later = now + timedelta(seconds=6)
    assert sync_usage(now=later) == {"rate_limited": 1}
    card.refresh_from_db()
    assert card.next_read_at >= later + timedelta(seconds=59)  # its Retry-After
    assert airalo.usage_reads[iccid] == 1


def test_the_janitor_reads_upstream_usage(actors: Actors, airalo: FakeAiralo) -> None:
    topped_up(actors, airalo)
    airalo.use(actors.device.iccid, 10)
    assert run_janitor()["upstream_usage"] == {"records": 1}


def test_no_usage_is_read_with_the_builtin_network(settings: Any, actors: Actors) -> None:
    settings.NETWORK_ADAPTER = "builtin"
    assert sync_usage() == {}


def test_a_customer_paying_from_the_cards_credit_is_refunded_when_airalo_refuses(
    actors: Actors, airalo: FakeAiralo
) -> None:
    airalo.fail_with = (422, {"code": 73, "reason": f"{actors.device.iccid}"})
    token, owner = make_customer("+8613600000077")
    bind(actors.device, owner)
    give_credit(actors.device, 500, "test:credit:airalo")
    response = pay_with_credit(token, actors.device.iccid)
    assert response.status_code == 201
    assert credit_of(actors.device) == 0
    assert run_tasks() == ["failed"]  # the worker's attempt: Airalo says the eSIM is recycled
    order = Order.objects.get()
    assert (order.status, order.failure_code) == (OrderStatus.REFUNDED, "iccid_recycled")
    assert credit_of(actors.device) == 500
    body = app(token).get(f"/api/v1/orders/{order.pk}").json()
    assert (body["status"], body["failure_code"]) == ("refunded", "iccid_recycled")
    assert len(airalo.calls) == 1
    assert_ledger_clean()
