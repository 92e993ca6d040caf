"""Business metrics on /metrics (web/metrics.py) follow the rows that hold the truth, and the
Grafana dashboard (deploy/grafana/simtopup.json) uses only what /metrics serves."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db.models import F
from django.test import Client
from django.utils import timezone

from simtopup.ledger.audit import record_audit
from simtopup.network.adapters import AdapterError, Grant, bundle_window
from simtopup.orders.models import Channel, Order, OrderStatus
from simtopup.resellers.fast_sale import fallback
from simtopup.resellers.models import DeliveryStatus, Reseller, WebhookDelivery
from simtopup.resellers.webhooks import queue_event
from tests.payments_support import (
    make_customer,
    post_notification,
    run_tasks,
    sandbox_direct,
    sandbox_notification,
)
from tests.support import Actors, post_json
from tests.test_payments_sandbox import order_card

__all__ = ["sandbox_direct"]

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "simtopup.json"


def scrape() -> tuple[str, dict[str, str]]:
    response = Client().get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _sep, value = line.rpartition(" ")
            samples[key] = value
    return text, samples


def sample(name: str, **labels: str) -> float:
    _text, samples = scrape()
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    key = f"{name}{{{inner}}}" if labels else name
    assert key in samples, (key, sorted(samples))
    return float(samples[key])


class SecondTimeLucky:
    """An asynchronous network that is busy the first time it sees an order."""

    synchronous = False
    seen: set[int] = set()

    def apply(self, order: Order) -> Grant:
        if order.pk not in self.seen:
            self.seen.add(order.pk)
            raise AdapterError("busy, try later", permanent=False)
        return bundle_window(order)


class AlwaysBusy:
    synchronous = False

    def apply(self, order: Order) -> Grant:
        raise AdapterError("busy, try later", permanent=False)


def topup(alice: Client, actors: Actors, n: int) -> int:
    response = post_json(
        alice,
        "/reseller/v1/topups",
        {"device": actors.devices[n % 5].iccid, "plan": "day-1g", "reference": f"metrics-{n}"},
    )
    assert response.status_code in (201, 202), response.content
    return int(response.json()["id"])


def test_top_ups_and_fulfilment_retries_follow_the_orders(
    actors: Actors, alice: Client, settings: Any
) -> None:
    text, samples = scrape()
    for channel in Channel.values:  # every series exists from the start, at 0
        for outcome in ("fulfilled", "failed", "cancelled"):
            assert (
                samples[f'simtopup_topups_total{{channel="{channel}",outcome="{outcome}"}}'] == "0"
            )
        assert samples[f'simtopup_fulfilment_retries_total{{channel="{channel}"}}'] == "0"
    assert "# TYPE simtopup_topups_total counter" in text

    topup(alice, actors, 1)  # the builtin network: fulfilled in the sale, no worker attempt
    topup(alice, actors, 2)
    settings.FULFILMENT_BACKOFF = [0]
    settings.NETWORK_ADAPTER = "tests.test_metrics.SecondTimeLucky"
    lucky = topup(alice, actors, 3)  # refused once, fulfilled at the second attempt
    run_tasks()
    settings.NETWORK_ADAPTER = "tests.test_balance_payment.FlakyUpstream"
    refused = topup(alice, actors, 4)  # refused for good at the first attempt
    run_tasks()
    settings.NETWORK_ADAPTER = "tests.test_metrics.AlwaysBusy"
    busy = topup(alice, actors, 5)  # busy twice: the backoff's one retry, then failed
    run_tasks()

    orders = {o.pk: o for o in Order.objects.all()}
    assert orders[lucky].status == OrderStatus.FULFILLED
    assert orders[lucky].attempts == 2
    assert orders[refused].status == OrderStatus.FAILED
    assert orders[refused].attempts == 1
    assert orders[busy].status == OrderStatus.FAILED
    assert orders[busy].attempts == 2

    assert sample("simtopup_topups_total", channel="reseller", outcome="fulfilled") == 3
    assert sample("simtopup_topups_total", channel="reseller", outcome="failed") == 2
    assert sample("simtopup_topups_total", channel="reseller", outcome="cancelled") == 0
    assert sample("simtopup_topups_total", channel="app", outcome="fulfilled") == 0
    assert sample("simtopup_fulfilment_attempts_total", channel="reseller") == 5
    assert sample("simtopup_fulfilment_retries_total", channel="reseller") == 2
    assert sample("simtopup_orders", channel="reseller", status="fulfilled") == 3
    assert sample("simtopup_orders", channel="reseller", status="failed") == 2

    # A fulfilled top-up stays counted as fulfilled whatever its order becomes later: the
    # counter never goes down.
    Order.objects.filter(pk=lucky).update(status=OrderStatus.REFUNDED)
    assert sample("simtopup_topups_total", channel="reseller", outcome="fulfilled") == 3
    assert sample("simtopup_topups_total", channel="reseller", outcome="failed") == 2
    assert sample("simtopup_orders", channel="reseller", status="refunded") == 1


@pytest.mark.usefixtures("sandbox_direct")
def test_payment_notifications_by_provider_and_result(actors: Actors) -> None:
    text, samples = scrape()
    assert "# TYPE simtopup_payment_notifications_total counter" in text
    assert not [k for k in samples if k.startswith("simtopup_payment_notifications_total")]

    token, _customer = make_customer("+8613800138011")
    order_card(token, actors.device.iccid)
    from simtopup.payments.models import Payment

    payment = Payment.objects.get()
    data = {
        "payment": payment.provider_ref,
        "reference": payment.reference,
        "amount": payment.amount,
        "currency": payment.currency,
        "merchant": "simtopup-sandbox",
        "status": "succeeded",
    }
    headers, body = sandbox_notification(data, event_id="evt_m_1")
    assert post_notification(Client(), headers, body).status_code == 200
    # The same notification again (providers repeat themselves): stored once, counted once.
    assert post_notification(Client(), headers, body).status_code == 200
    unknown = {**data, "reference": "pay_nope", "payment": "sbx_nope"}
    headers, body = sandbox_notification(unknown, event_id="evt_m_2")
    assert post_notification(Client(), headers, body).status_code == 200
    headers, body = sandbox_notification(unknown, event_id="evt_m_3")
    assert post_notification(Client(), headers, body).status_code == 200

    assert sample("simtopup_payment_notifications_total", provider="sandbox", result="applied") == 1
    assert (
        sample("simtopup_payment_notifications_total", provider="sandbox", result="unknown_payment")
        == 2
    )
    assert sample("simtopup_payment_events_flagged") == 2
    assert sample("simtopup_topups_total", channel="app", outcome="fulfilled") == 1


def test_the_webhook_backlog(actors: Actors, alice: Client, settings: Any) -> None:
    assert sample("simtopup_webhooks_pending") == 0
    assert sample("simtopup_webhook_oldest_pending_age_seconds") == 0
    for status in DeliveryStatus.values:
        assert sample("simtopup_webhook_deliveries", status=status) == 0

    settings.WEBHOOK_ALLOW_PRIVATE = True
    Reseller.objects.filter(pk=actors.alice.pk).update(
        webhook_url="http://127.0.0.1:9/hooks", webhook_secret="whsec_x"
    )
    orders = [Order.objects.get(pk=topup(alice, actors, n)) for n in range(1, 5)]
    WebhookDelivery.objects.all().delete()  # a test-only clean slate (tasks are not run here)
    for order in orders:
        queue_event(order, "topup.fulfilled")
    deliveries = list(WebhookDelivery.objects.order_by("pk"))
    assert len(deliveries) == 4
    WebhookDelivery.objects.filter(pk=deliveries[0].pk).update(status=DeliveryStatus.DELIVERED)
    WebhookDelivery.objects.filter(pk=deliveries[1].pk).update(status=DeliveryStatus.FAILED)
    WebhookDelivery.objects.filter(pk=deliveries[2].pk).update(
        created_at=timezone.now() - timedelta(seconds=120)
    )
    # An older one already delivered is not the backlog's age.
    WebhookDelivery.objects.filter(pk=deliveries[0].pk).update(
        created_at=F("created_at") - timedelta(hours=5)
    )

    assert sample("simtopup_webhooks_pending") == 2
    assert sample("simtopup_webhook_deliveries", status="pending") == 2
    assert sample("simtopup_webhook_deliveries", status="delivered") == 1
    assert sample("simtopup_webhook_deliveries", status="failed") == 1
    assert 120 <= sample("simtopup_webhook_oldest_pending_age_seconds") < 180


# --- the dashboard --------------------------------------------------------------------------

NAME = re.compile(r"\bsimtopup_[a-z0-9_]+")
MATCHER = re.compile(r"(simtopup_[a-z0-9_]+)\{([^}]*)\}")
BY = re.compile(r"\bby \(([^)]*)\)\s*\((?:rate|increase)?\(?(simtopup_[a-z0-9_]+)")


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(exprs) >= 10
    return exprs


@pytest.mark.usefixtures("sandbox_direct")
def test_every_metric_of_the_dashboard_is_served(
    actors: Actors, alice: Client, settings: Any
) -> None:
    topup(alice, actors, 1)
    record_audit()  # every family has samples: their labels are checked too
    from simtopup.finance.actions import reconcile

    reconcile("sandbox", timezone.now().date() - timedelta(days=1))
    fallback("test_reason")
    headers, body = sandbox_notification({"reference": "pay_nope", "payment": "sbx_nope"})
    assert post_notification(Client(), headers, body).status_code == 200
    text, samples = scrape()
    served = set(re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE))
    labels_of: dict[str, set[str]] = {}
    for key in samples:
        name, _sep, rest = key.partition("{")
        labels_of.setdefault(name, set()).update(re.findall(r'(\w+)="', rest))
    used = set()
    for expr in dashboard_exprs():
        for name in NAME.findall(expr):
            assert name in served, (name, expr)
            used.add(name)
            assert name in labels_of, (name, "no sample")
        for name, matchers in MATCHER.findall(expr):
            for label in re.findall(r"(\w+)\s*=~?", matchers):
                assert label in labels_of.get(name, set()), (name, label, expr)
        for by, name in BY.findall(expr):
            for label in (b.strip() for b in by.split(",")):
                assert label in labels_of.get(name, set()), (name, label, expr)
    # The families are all on the dashboard.
    assert {
        "simtopup_topups_total",
        "simtopup_payment_notifications_total",
        "simtopup_webhook_deliveries",
        "simtopup_fulfilment_retries_total",
        "simtopup_ledger_violations",
    } <= used


def test_the_finance_desk_s_metrics(actors: Actors) -> None:
    """The latest reconciliation per provider, failed refunds and goodwill awaiting approval."""
    from simtopup.devices.models import GoodwillCredit
    from simtopup.finance.actions import reconcile
    from simtopup.finance.models import ReconciliationRun
    from tests.staff_support import make_staff

    day = timezone.now().date() - timedelta(days=2)
    reconcile("sandbox", day)
    assert sample("simtopup_reconciliation_ok", provider="sandbox") == 1
    assert sample("simtopup_reconciliation_unmatched", provider="sandbox") == 0
    run = ReconciliationRun.objects.get(provider="sandbox", day=day)
    assert sample("simtopup_reconciliation_timestamp_seconds", provider="sandbox") == round(
        run.finished_at.timestamp(), 3
    )
    # A later day's run with one amount mismatch and one line missing on our side counts 2.
    ReconciliationRun.objects.filter(pk=run.pk).update(day=day - timedelta(days=1))
    later = reconcile("sandbox", day)
    ReconciliationRun.objects.filter(pk=later.pk).update(amount_mismatch=1, missing_ours=1)
    assert sample("simtopup_reconciliation_unmatched", provider="sandbox") == 2
    assert sample("simtopup_goodwill_pending") == 0
    GoodwillCredit.objects.create(
        device=actors.device,
        amount=90_000,
        currency="CNY",
        reason="network outage",
        requested_by=make_staff("metrics-agent", "support"),
    )
    assert sample("simtopup_goodwill_pending") == 1
    assert sample("simtopup_refunds_failed") == 0
