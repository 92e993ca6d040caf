"""Provider reports checked both ways: a refund's notification must name our refund of the
payment it claims, with its amount and currency (and our merchant), before it confirms
anything — the same rule as a payment's. A report that does not match changes no money and
no order; it is flagged for an operator: listed in the console, counted in /metrics, logged
at ERROR once."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from simtopup.ledger.models import Transfer
from simtopup.orders.models import Order, OrderStatus
from simtopup.payments.actions import check_payment, record_event
from simtopup.payments.models import (
    EventOutcome,
    Payment,
    PaymentEvent,
    PaymentStatus,
    Refund,
    RefundStatus,
    SandboxCharge,
)
from simtopup.payments.providers.base import REFUND_FAILED, ProviderEvent, RefundResult
from simtopup.payments.providers.sandbox import SandboxProvider
from simtopup.usage.models import Bundle
from tests.payments_support import (
    app,
    assert_ledger_clean,
    make_customer,
    pay_on_page,
    post_json,
    post_notification,
    run_tasks,
    sandbox_direct,
    sandbox_notification,
)
from tests.staff_support import console_client
from tests.support import Actors

pytestmark = pytest.mark.usefixtures("sandbox_direct")
__all__ = ["sandbox_direct"]

MERCHANT = "simtopup-sandbox"


class RefusingUpstream:
    """Every order is refused upstream for good: paid orders are refunded."""

    synchronous = False

    def apply(self, order: Order) -> Any:
        from simtopup.network.adapters import AdapterError

        raise AdapterError("upstream answered 422", permanent=True)


class ProcessingRefunds(SandboxProvider):
    """A gateway that takes refunds and confirms them later, by notification only."""

    def refund(
        self,
        reference: str,
        provider_ref: str | None,
        amount: int,
        currency: str,
        refund_reference: str,
        total: int,
    ) -> RefundResult:
        return RefundResult("pending", f"sbxr_{refund_reference[-8:]}")


@pytest.fixture
def processing_refunds(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from simtopup.payments import registry

    settings.NETWORK_ADAPTER = "tests.test_payment_checks.RefusingUpstream"
    monkeypatch.setitem(
        registry.PROVIDER_CLASSES, "sandbox", "tests.test_payment_checks.ProcessingRefunds"
    )


def place(actors: Actors, phone: str, device: int = 0) -> dict[str, Any]:
    token, _c = make_customer(phone)
    response = post_json(
        app(token),
        "/api/v1/orders",
        {"device": actors.devices[device].iccid, "plan": "day-1g", "payment_method": "card"},
    )
    assert response.status_code == 201, response.content
    return response.json()


def refund_pending(actors: Actors, phone: str, device: int = 0) -> Refund:
    """A paid order upstream refused: its refund is decided, the gateway is processing it."""
    order = place(actors, phone, device)
    pay_on_page(order["payment"]["checkout_url"])
    assert "retry" in run_tasks()
    refund = Refund.objects.select_related("payment").get(payment__order_id=order["id"])
    assert refund.status == RefundStatus.PENDING
    assert refund.provider_refund_ref.startswith("sbxr_")
    assert refund.payment.status == PaymentStatus.REFUND_PENDING
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.FAILED
    return refund


def refund_data(row: Refund, **changes: Any) -> dict[str, Any]:
    """What the gateway's notification of the refund ``row`` carries (sandbox/providers/sandbox.py)."""
    payment = row.payment
    return {
        "payment": payment.provider_ref,
        "reference": payment.reference,
        "amount": row.amount,
        "currency": row.currency,
        "merchant": MERCHANT,
        "method": payment.method,
        "status": "refunded",
        "failure_code": None,
        "refund": row.provider_refund_ref,
        "refund_reference": row.reference,
        **changes,
    }


def notify(data: dict[str, Any], kind: str, event_id: str) -> PaymentEvent:
    headers, body = sandbox_notification(data, kind=kind, event_id=event_id)
    assert post_notification(Client(), headers, body).status_code == 200  # authentic: ack
    return PaymentEvent.objects.get(event_id=event_id)


def money_moves() -> list[str]:
    return sorted(Transfer.objects.values_list("idempotency_key", flat=True))


def assert_still_pending(refund: Refund) -> None:
    row = Refund.objects.get(pk=refund.pk)
    assert (row.status, row.settled_at) == (RefundStatus.PENDING, None)
    assert row.last_error == refund.last_error == "provider answered pending"
    assert Payment.objects.get(pk=refund.payment_id).status == PaymentStatus.REFUND_PENDING
    assert Order.objects.get(pk=refund.payment.order_id).status == OrderStatus.FAILED


def assert_flagged(event: PaymentEvent, *words: str) -> None:
    assert event.outcome == EventOutcome.MISMATCH
    assert event.flagged_at is not None
    assert event.reviewed_at is None
    for word in words:
        assert word in event.detail, event.detail


# --- refund notifications -----------------------------------------------------------------


@pytest.mark.usefixtures("processing_refunds")
@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"amount": 1}, "amount 1 != 500"),
        ({"amount": 5000}, "amount 5000 != 500"),
        ({"amount": None}, "amount None != 500"),
        ({"currency": "USD"}, "currency USD != CNY"),
        ({"merchant": "someone-else"}, "merchant someone-else"),
        ({"refund_reference": "rf_pay_guessed", "refund": "sbxr_guessed"}, "refund rf_pay_guessed"),
        ({"refund_reference": None, "refund": None}, "no refund reference"),
    ],
)
def test_a_refund_notification_that_does_not_match_is_flagged_and_changes_nothing(
    actors: Actors, changes: dict[str, Any], why: str, caplog: Any
) -> None:
    refund = refund_pending(actors, "+8613700000001")
    before = money_moves()
    caplog.clear()
    event = notify(refund_data(refund, **changes), "refund.succeeded", "evt_refund_odd")
    assert_flagged(event, why)
    assert_still_pending(refund)
    assert money_moves() == before
    errors = [r for r in caplog.records if r.levelname == "ERROR" and "does not match" in r.message]
    assert len(errors) == 1
    # The same notification again (the gateway retries) is a duplicate: no second ERROR.
    caplog.clear()
    notify(refund_data(refund, **changes), "refund.succeeded", "evt_refund_odd")
    assert "does not match" not in caplog.text
    assert PaymentEvent.objects.filter(flagged_at__isnull=False).count() == 1
    assert_ledger_clean()


@pytest.mark.usefixtures("processing_refunds")
def test_a_notification_of_another_payment_s_refund_is_flagged(actors: Actors) -> None:
    first = refund_pending(actors, "+8613700000002", device=0)
    second = refund_pending(actors, "+8613700000003", device=1)
    before = money_moves()
    # It claims the first payment but names the second one's refund (same amount, currency).
    data = refund_data(first, refund_reference=second.reference, refund=second.provider_refund_ref)
    event = notify(data, "refund.succeeded", "evt_crossed")
    assert_flagged(event, f"refund {second.reference} != {first.reference}")
    assert event.payment_id == first.payment_id
    assert_still_pending(first)
    assert_still_pending(second)
    assert money_moves() == before
    assert_ledger_clean()


@pytest.mark.usefixtures("processing_refunds")
@pytest.mark.parametrize("named_by", ["our reference", "the provider's refund id"])
def test_a_matching_refund_notification_confirms_the_refund(actors: Actors, named_by: str) -> None:
    refund = refund_pending(actors, "+8613700000004")
    before = money_moves()
    if named_by == "our reference":
        data = refund_data(refund, refund=None)
    else:
        data = refund_data(refund, refund_reference=None)
    event = notify(data, "refund.succeeded", "evt_refund_ok")
    assert (event.outcome, event.flagged_at) == (EventOutcome.APPLIED, None)
    row = Refund.objects.get(pk=refund.pk)
    assert row.status == RefundStatus.SUCCEEDED
    assert row.settled_at is not None
    assert Payment.objects.get(pk=refund.payment_id).status == PaymentStatus.REFUNDED
    assert Order.objects.get(pk=refund.payment.order_id).status == OrderStatus.REFUNDED
    assert money_moves() == before  # the money moved when the refund was decided
    again = notify(data, "refund.succeeded", "evt_refund_ok_2")
    assert (again.outcome, again.flagged_at) == (EventOutcome.ALREADY_APPLIED, None)
    assert_ledger_clean()


@pytest.mark.usefixtures("processing_refunds")
def test_a_refund_failure_report_is_checked_too(actors: Actors) -> None:
    refund = refund_pending(actors, "+8613700000005")
    provider = SandboxProvider()

    def failure(event_id: str, **changes: Any) -> PaymentEvent:
        fields: dict[str, Any] = {
            "event_id": event_id,
            "kind": REFUND_FAILED,
            "reference": refund.payment.reference,
            "provider_ref": refund.payment.provider_ref,
            "amount": refund.amount,
            "currency": refund.currency,
            "merchant": MERCHANT,
            "failure_code": "insufficient_funds",
            "refund_reference": refund.reference,
            **changes,
        }
        record_event(provider, ProviderEvent(**fields))
        return PaymentEvent.objects.get(event_id=event_id)

    assert_flagged(failure("evt_f1", amount=499), "amount 499 != 500")
    assert_flagged(failure("evt_f2", refund_reference="rf_not_ours"), "refund rf_not_ours")
    assert_still_pending(refund)
    matching = failure("evt_f3")
    assert (matching.outcome, matching.flagged_at) == (EventOutcome.APPLIED, None)
    assert Refund.objects.get(pk=refund.pk).last_error == "insufficient_funds"


def test_a_refund_we_never_made_is_flagged(actors: Actors) -> None:
    order = place(actors, "+8613700000006")
    pay_on_page(order["payment"]["checkout_url"])
    run_tasks()
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.FULFILLED
    payment = Payment.objects.get()
    before = money_moves()
    data = {
        "payment": payment.provider_ref,
        "reference": payment.reference,
        "amount": payment.amount,
        "currency": payment.currency,
        "merchant": MERCHANT,
        "refund": "sbxr_dashboard",
        "refund_reference": "rf_dashboard",
    }
    event = notify(data, "refund.succeeded", "evt_dashboard_refund")
    assert_flagged(event, "refund rf_dashboard was not made here")
    assert not Refund.objects.exists()
    assert Payment.objects.get().status == PaymentStatus.SUCCEEDED
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.FULFILLED
    assert money_moves() == before
    assert Bundle.objects.count() == 1
    assert_ledger_clean()


# --- payment notifications: flagged, listed, counted ----------------------------------------


def operator() -> Client:
    user = User.objects.create_superuser("operator-h9", "op-h9@example.com", "pw-not-used")
    return console_client(user)


def flagged_gauge() -> int:
    body = Client().get("/metrics").content.decode()
    [line] = [x for x in body.splitlines() if x.startswith("simtopup_payment_events_flagged ")]
    return int(line.split()[1])


@pytest.mark.parametrize(
    ("field", "value"), [("merchant", "someone-else"), ("amount", 50), ("currency", "HKD")]
)
def test_a_payment_notification_that_does_not_match_is_listed_for_review(
    actors: Actors, field: str, value: Any
) -> None:
    order = place(actors, "+8613700000007")
    payment = Payment.objects.get()
    data = {
        "payment": payment.provider_ref,
        "reference": payment.reference,
        "amount": payment.amount,
        "currency": payment.currency,
        "merchant": MERCHANT,
        "status": "succeeded",
    }
    assert flagged_gauge() == 0
    fine = notify({**data, "status": "pending"}, "payment.pending", "evt_fine")
    odd = notify({**data, field: value}, "payment.succeeded", "evt_odd_payment")
    assert_flagged(odd, field)
    assert fine.flagged_at is None
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.PENDING
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.AWAITING_PAYMENT
    assert not Transfer.objects.filter(idempotency_key__startswith="payment:").exists()

    console = operator()
    listed = console.get("/admin/payments/paymentevent/?review=needed").content.decode()
    assert "evt_odd_payment" in listed
    assert "evt_fine" not in listed
    assert flagged_gauge() == 1

    # The operator looked into it: reviewed, no longer waiting, nothing else changed.
    done = console.post(
        "/admin/payments/paymentevent/",
        {"action": "mark_reviewed", "_selected_action": [odd.pk, fine.pk]},
        follow=True,
    )
    assert "1 notification marked reviewed." in done.content.decode()
    odd.refresh_from_db()
    assert odd.reviewed_at is not None
    assert odd.reviewed_by == "operator-h9"
    assert PaymentEvent.objects.get(pk=fine.pk).reviewed_at is None
    assert flagged_gauge() == 0
    assert (
        "evt_odd_payment"
        not in console.get("/admin/payments/paymentevent/?review=needed").content.decode()
    )
    assert (
        "evt_odd_payment"
        in console.get("/admin/payments/paymentevent/?review=done").content.decode()
    )
    assert Payment.objects.get().status == PaymentStatus.PENDING
    assert_ledger_clean()


def test_a_failure_for_another_merchant_fails_nothing_and_is_flagged(actors: Actors) -> None:
    order = place(actors, "+8613700000008")
    payment = Payment.objects.get()
    data = {
        "payment": payment.provider_ref,
        "reference": payment.reference,
        "amount": payment.amount,
        "currency": payment.currency,
        "merchant": "someone-else",
        "status": "failed",
        "failure_code": "card_declined",
    }
    assert_flagged(notify(data, "payment.failed", "evt_foreign_failure"), "merchant")
    assert Payment.objects.get().status == PaymentStatus.PENDING
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.AWAITING_PAYMENT


def test_money_for_a_payment_we_do_not_know_is_flagged_a_failure_is_not(actors: Actors) -> None:
    data = {"payment": "sbx_x", "reference": "pay_nope", "amount": 500, "currency": "CNY"}
    paid = notify({**data, "merchant": MERCHANT}, "payment.succeeded", "evt_unknown_paid")
    failed = notify({**data, "merchant": MERCHANT}, "payment.failed", "evt_unknown_failed")
    assert paid.outcome == failed.outcome == EventOutcome.UNKNOWN_PAYMENT
    assert paid.flagged_at is not None
    assert failed.flagged_at is None
    assert flagged_gauge() == 1


def test_a_query_answer_that_does_not_match_is_flagged_once(actors: Actors) -> None:
    """The janitor's answer from the provider is held to the same rule as a notification."""
    from django_tasks_db.models import DBTaskResult

    order = place(actors, "+8613700000009")
    pay_on_page(order["payment"]["checkout_url"])
    DBTaskResult.objects.filter(task_path__endswith="deliver_sandbox_event_task").delete()
    SandboxCharge.objects.update(amount=1)  # the gateway says it took 0.01
    for _slot in range(2):
        Payment.objects.update(next_check_at=timezone.now())
        assert check_payment(Payment.objects.get().pk) == EventOutcome.MISMATCH
    event = PaymentEvent.objects.get()
    assert_flagged(event, "amount 1 != 500")
    assert event.event_id.startswith("query:")
    assert Payment.objects.get().status == PaymentStatus.PENDING
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.AWAITING_PAYMENT
    assert flagged_gauge() == 1


def test_mismatches_stored_before_flags_existed_are_flagged_by_the_migration(db: None) -> None:
    from importlib import import_module

    from django.apps import apps

    migration = import_module("simtopup.payments.migrations.0002_event_flagged_for_review")
    for event_id, kind, outcome in [
        ("old_mismatch", "payment.succeeded", EventOutcome.MISMATCH),
        ("old_unknown_paid", "payment.succeeded", EventOutcome.UNKNOWN_PAYMENT),
        ("old_unknown_failed", "payment.failed", EventOutcome.UNKNOWN_PAYMENT),
        ("old_applied", "payment.succeeded", EventOutcome.APPLIED),
    ]:
        PaymentEvent.objects.create(
            provider="sandbox", event_id=event_id, kind=kind, outcome=outcome
        )
    migration.flag_earlier_mismatches(apps, None)
    flagged = PaymentEvent.objects.filter(flagged_at__isnull=False)
    assert sorted(flagged.values_list("event_id", flat=True)) == [
        "old_mismatch",
        "old_unknown_paid",
    ]
    for event in flagged:
        assert event.flagged_at == event.received_at
