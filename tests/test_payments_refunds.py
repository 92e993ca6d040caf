"""Refunds through the provider and the ledger, and the janitor: payments left pending are
asked about on a schedule, unpaid orders expire, refunds the provider could not make yet are
retried."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from simtopup.ledger.actions import balance, system_account
from simtopup.ledger.models import Transfer
from simtopup.network.adapters import AdapterError, Grant
from simtopup.ops.janitor import run_janitor
from simtopup.orders.models import Order, OrderStatus
from simtopup.payments.actions import check_payment, execute_refund, sweep
from simtopup.payments.models import (
    Payment,
    PaymentEvent,
    PaymentStatus,
    Refund,
    RefundStatus,
    SandboxCharge,
    SandboxRefund,
)
from simtopup.payments.providers.base import ProviderError, RefundResult
from simtopup.payments.providers.sandbox import SandboxProvider
from simtopup.usage.models import Bundle
from tests.payments_support import (
    app,
    assert_ledger_clean,
    make_customer,
    pay_on_page,
    post_json,
    run_tasks,
    sandbox_direct,
)
from tests.support import Actors

pytestmark = pytest.mark.usefixtures("sandbox_direct")
__all__ = ["sandbox_direct"]


class RefusingUpstream:
    """An upstream that refuses every order for good (e.g. the card is unknown upstream)."""

    synchronous = False

    def apply(self, order: Order) -> Grant:
        raise AdapterError("upstream answered 422", permanent=True)


def place(actors: Actors, phone: str, method: str = "card") -> dict[str, Any]:
    token, _c = make_customer(phone)
    response = post_json(
        app(token),
        "/api/v1/orders",
        {"device": actors.device.iccid, "plan": "day-1g", "payment_method": method},
    )
    assert response.status_code == 201, response.content
    return response.json()


def test_a_fulfilment_failure_after_payment_refunds_through_the_provider(
    actors: Actors, settings: Any
) -> None:
    settings.NETWORK_ADAPTER = "tests.test_payments_refunds.RefusingUpstream"
    order = place(actors, "+8613900000001")
    pay_on_page(order["payment"]["checkout_url"])
    outcomes = run_tasks()
    # webhook delivered → fulfilment fails for good → refund asked → refund webhook delivered
    assert outcomes[0] == "delivered"
    assert "failed" in outcomes
    assert "refunded" in outcomes
    row = Order.objects.get(pk=order["id"])
    assert row.status == OrderStatus.REFUNDED
    assert row.failure_code == "fulfilment_failed"
    payment = Payment.objects.get()
    assert payment.status == PaymentStatus.REFUNDED
    assert payment.refunded_at is not None
    refund = Refund.objects.get()
    assert (refund.status, refund.amount, refund.reason) == (
        RefundStatus.SUCCEEDED,
        500,
        "fulfilment_failed",
    )
    # The gateway really refunded it, once.
    assert SandboxRefund.objects.get().refund_reference == refund.reference
    assert SandboxCharge.objects.get().status == "refunded"
    assert PaymentEvent.objects.get(kind="refund.succeeded").outcome == "already_applied"
    keys = set(Transfer.objects.values_list("idempotency_key", flat=True))
    assert {f"payment:{payment.pk}:capture", f"payment:{payment.pk}:refund"} <= keys
    assert f"order:{order['id']}:revenue" not in keys
    assert balance(system_account("gateway_clearing", "CNY")) == 0
    assert balance(system_account("order_clearing", "CNY")) == 0
    assert not Bundle.objects.exists()
    fetched = app_get(order)
    assert fetched["status"] == "refunded"
    assert fetched["payment"]["status"] == "refunded"
    assert_ledger_clean()


def app_get(order: dict[str, Any]) -> dict[str, Any]:
    row = Order.objects.select_related("customer").get(pk=order["id"])
    from simtopup.accounts.tokens import issue_token

    token, _t = issue_token(row.customer)
    return app(token).get(f"/api/v1/orders/{order['id']}").json()


class FlakyRefunds(SandboxProvider):
    calls = 0

    def refund(self, *args: Any, **kwargs: Any) -> RefundResult:
        type(self).calls += 1
        if type(self).calls < 3:
            raise ProviderError("provider_unavailable", "timeout", retryable=True)
        return super().refund(*args, **kwargs)


def test_a_refund_the_provider_cannot_make_yet_is_retried_by_the_janitor(
    actors: Actors, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.NETWORK_ADAPTER = "tests.test_payments_refunds.RefusingUpstream"
    settings.PAYMENT_REFUND_BACKOFF = [30, 300]
    monkeypatch.setitem(
        __import__("simtopup.payments.registry").payments.registry.PROVIDER_CLASSES,
        "sandbox",
        "tests.test_payments_refunds.FlakyRefunds",
    )
    FlakyRefunds.calls = 0
    order = place(actors, "+8613900000002")
    pay_on_page(order["payment"]["checkout_url"])
    assert "retry" in run_tasks()
    refund = Refund.objects.get()
    assert refund.status == RefundStatus.PENDING
    assert refund.last_error.startswith("provider_unavailable")
    assert refund.next_attempt_at > timezone.now() + timedelta(seconds=25)
    assert sweep() == {}  # not due yet
    Refund.objects.update(next_attempt_at=timezone.now())
    assert sweep() == {"retry": 1}
    Refund.objects.update(next_attempt_at=timezone.now())
    assert sweep() == {"refunded": 1}
    assert execute_refund(refund.pk) == "not_due"
    run_tasks()
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.REFUNDED
    assert Refund.objects.get().attempts == 3
    assert_ledger_clean()


def test_a_refund_that_never_works_is_marked_failed_for_an_operator(
    actors: Actors, settings: Any, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    settings.NETWORK_ADAPTER = "tests.test_payments_refunds.RefusingUpstream"
    settings.PAYMENT_REFUND_BACKOFF = [1]
    monkeypatch.setitem(
        __import__("simtopup.payments.registry").payments.registry.PROVIDER_CLASSES,
        "sandbox",
        "tests.test_payments_refunds.FlakyRefunds",
    )
    FlakyRefunds.calls = -100
    order = place(actors, "+8613900000003")
    pay_on_page(order["payment"]["checkout_url"])
    run_tasks()
    Refund.objects.update(next_attempt_at=timezone.now())
    assert sweep() == {"failed": 1}
    assert Refund.objects.get().status == RefundStatus.FAILED
    assert "needs an operator" in caplog.text
    # The money left order clearing when the refund was decided; the books still balance.
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.FAILED
    assert_ledger_clean()


# --- the janitor: pending payments and expiry ----------------------------------------------


def lose_webhooks() -> None:
    """The gateway's notifications never arrive (dropped on the way)."""
    DBTaskResult.objects.filter(task_path__endswith="deliver_sandbox_event_task").delete()


def test_a_payment_whose_webhook_was_lost_is_settled_by_the_janitor(
    actors: Actors, settings: Any
) -> None:
    settings.PAYMENT_QUERY_SCHEDULE = [60, 300, 3600]
    order = place(actors, "+8613900000004")
    payment = Payment.objects.get()
    assert payment.next_check_at == payment.created_at + timedelta(seconds=60)
    assert sweep() == {}  # nothing due yet
    # Asked at its 60 s slot while the payer is still on the page: still pending, and the
    # next slot of the schedule is set.
    Payment.objects.update(
        created_at=timezone.now() - timedelta(seconds=61), next_check_at=timezone.now()
    )
    assert check_payment(payment.pk) == "pending"
    payment.refresh_from_db()
    assert payment.checks == 1
    assert payment.next_check_at == payment.created_at + timedelta(seconds=300)
    pay_on_page(order["payment"]["checkout_url"])
    lose_webhooks()
    Payment.objects.update(next_check_at=timezone.now())
    result = run_janitor()
    assert result["payments"] == {"applied": 1}
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.FULFILLED
    assert Payment.objects.get().status == PaymentStatus.SUCCEEDED
    # The late webhook, if it ever comes, changes nothing.
    from simtopup.payments.providers.sandbox import queue_event

    queue_event(SandboxCharge.objects.get(), "payment.succeeded", event_id="evt_late")
    run_tasks()
    assert PaymentEvent.objects.get().outcome == "already_applied"
    assert Bundle.objects.count() == 1
    assert_ledger_clean()


def test_a_declined_payment_whose_webhook_was_lost_fails_via_the_janitor(
    actors: Actors,
) -> None:
    order = place(actors, "+8613900000005")
    pay_on_page(order["payment"]["checkout_url"], "decline")
    lose_webhooks()
    Payment.objects.update(next_check_at=timezone.now())
    assert sweep() == {"failed:applied": 1}
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.FAILED
    assert_ledger_clean()


def test_unpaid_orders_expire_and_a_late_payment_is_refunded(actors: Actors, settings: Any) -> None:
    settings.PAYMENT_EXPIRY_SECONDS = 1800
    order = place(actors, "+8613900000006")
    Order.objects.filter(pk=order["id"]).update(created_at=timezone.now() - timedelta(seconds=1801))
    Payment.objects.update(next_check_at=timezone.now() + timedelta(hours=1))
    assert sweep() == {"expired": 1}
    row = Order.objects.get(pk=order["id"])
    assert row.status == OrderStatus.CANCELLED
    assert row.failure_code == "expired"
    assert Payment.objects.get().status == PaymentStatus.CANCELLED
    # The payer comes back to the open page and pays anyway; the webhook is lost too.
    pay_on_page(order["payment"]["checkout_url"])
    lose_webhooks()
    Payment.objects.update(next_check_at=timezone.now())
    assert sweep() == {"late_refunded": 1}
    run_tasks()
    assert Payment.objects.get().status == PaymentStatus.REFUNDED
    assert SandboxCharge.objects.get().status == "refunded"
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.CANCELLED
    assert_ledger_clean()


def test_an_expiring_order_that_was_paid_is_settled_not_cancelled(actors: Actors) -> None:
    order = place(actors, "+8613900000007")
    pay_on_page(order["payment"]["checkout_url"])
    lose_webhooks()
    Order.objects.filter(pk=order["id"]).update(created_at=timezone.now() - timedelta(hours=1))
    Payment.objects.update(next_check_at=timezone.now() + timedelta(hours=1))
    assert sweep() == {"applied": 1}
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.FULFILLED
    assert_ledger_clean()


def test_the_query_schedule_ends(actors: Actors, settings: Any) -> None:
    settings.PAYMENT_QUERY_SCHEDULE = [60, 300]
    place(actors, "+8613900000008")
    payment = Payment.objects.get()
    Payment.objects.update(created_at=timezone.now() - timedelta(seconds=400))
    Payment.objects.update(next_check_at=timezone.now())
    assert check_payment(payment.pk) == "pending"
    payment.refresh_from_db()
    assert payment.next_check_at is None
    assert sweep() == {}


def test_check_ledger_sees_payments_and_gateway_money_that_do_not_add_up(
    actors: Actors,
) -> None:
    from django.db import transaction

    from simtopup.ledger.actions import Posting, post
    from simtopup.ledger.audit import audit

    order = place(actors, "+8613900000009")
    pay_on_page(order["payment"]["checkout_url"])
    run_tasks()
    assert audit() == []
    # Money leaves the gateway clearing account with no capture or refund to explain it.
    with transaction.atomic():
        post(
            [
                Posting(
                    system_account("gateway_clearing", "CNY"),
                    system_account("revenue", "CNY"),
                    100,
                    "adjustment",
                    "test:stray",
                )
            ]
        )
    assert any("gateway_clearing:CNY holds -600" in p for p in audit())
    # An order marked cancelled although its payment was captured and never refunded.
    Order.objects.filter(pk=order["id"]).update(status=OrderStatus.CANCELLED)
    reference = Payment.objects.get().reference
    assert any(f"payment {reference} was captured" in p for p in audit())
