"""Defects found reviewing the operator console's money paths (issue 14), each pinned here:

1. a provider refund marked ``failed`` after its retries (the provider kept answering
   "pending") that the provider then confirms by notification is settled — not ignored as
   already applied, which let customer service send the same money to the card's credit a
   second time;
2. what staff may still refund of an order, and the dashboard's revenue net of refunds, count
   only the refunds of the payment that paid it (or to the card's credit): the automatic
   refund of an earlier attempt whose money arrived late (another payment of the same order)
   is not part of what was paid for the order, and never came out of revenue;
3. a statement of December 9999 is not found (404), not a server error;
4. an amount larger than the books can hold (a deposit, a goodwill credit) is refused on
   the form, not a server error when the database refuses the number.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client, TestCase
from django.urls import reverse
from django.utils import timezone

from simtopup.core.errors import DomainError
from simtopup.core.money import MAX_MINOR, to_minor
from simtopup.devices.models import GoodwillCredit
from simtopup.ledger.models import Transfer
from simtopup.notifications.backends import memory
from simtopup.orders.models import Order, OrderStatus
from simtopup.payments import reports as payments_reports
from simtopup.payments.models import (
    EventOutcome,
    Payment,
    PaymentEvent,
    PaymentStatus,
    Refund,
    RefundStatus,
    SandboxCharge,
    SandboxChargeStatus,
)
from simtopup.payments.staff_refunds import failed_refund_to_credit, refundable
from simtopup.resellers.models import ResellerDeposit
from simtopup.resellers.statements import statement
from tests.payments_support import (
    assert_ledger_clean,
    pay_on_page,
    post_notification,
    run_tasks,
    sandbox_direct,
    sandbox_notification,
)
from tests.staff_support import console_client, make_staff
from tests.support import Actors
from tests.test_desk_refunds import ACTOR, paid_by_card, refund
from tests.test_payment_retry import IPHONE, declined, retry_buttons
from tests.web_support import browser

pytestmark = pytest.mark.usefixtures("sandbox_direct")
__all__ = ["sandbox_direct"]


@pytest.fixture(autouse=True)
def _memory_senders(settings: Any) -> None:
    settings.SMS_SENDER = "memory"
    settings.EMAIL_SENDER = "memory"
    memory.outbox.clear()


# --- 1. a failed refund the provider made after all ------------------------------------------


def test_a_refund_confirmed_after_it_failed_is_settled_and_not_sent_to_the_credit_again(
    actors: Actors, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from simtopup.payments import registry
    from tests.test_payment_checks import MERCHANT

    order = paid_by_card(actors, "+8613500000091")
    # The provider takes the refund but answers "pending"; with no retries left it is failed.
    monkeypatch.setitem(
        registry.PROVIDER_CLASSES, "sandbox", "tests.test_payment_checks.ProcessingRefunds"
    )
    settings.PAYMENT_REFUND_BACKOFF = []
    made = refund(order, 500)
    assert "failed" in run_tasks()
    made.refresh_from_db()
    assert made.status == RefundStatus.FAILED
    payment = Payment.objects.get(order=order)

    # Then the provider says it made it.
    data = {
        "payment": payment.provider_ref,
        "reference": payment.reference,
        "amount": made.amount,
        "currency": "CNY",
        "merchant": MERCHANT,
        "method": payment.method,
        "status": "refunded",
        "failure_code": None,
        "refund": made.provider_refund_ref,
        "refund_reference": made.reference,
    }
    headers, body = sandbox_notification(data, kind="refund.succeeded", event_id="evt_late_rf")
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert post_notification(Client(), headers, body).status_code == 200
    assert PaymentEvent.objects.get(event_id="evt_late_rf").outcome == EventOutcome.APPLIED
    made.refresh_from_db()
    assert made.status == RefundStatus.SUCCEEDED
    assert Payment.objects.get(pk=payment.pk).status == PaymentStatus.REFUNDED
    assert any("We refunded" in m.body for m in memory.outbox)

    # Customer service can no longer send the same money to the card's credit.
    transfers = Transfer.objects.count()
    with pytest.raises(DomainError) as refused:
        failed_refund_to_credit(made, "the provider failed", ACTOR)
    assert refused.value.code == "refund_not_failed"
    assert Transfer.objects.count() == transfers
    assert_ledger_clean()


# --- 2. the refunds of another attempt of the same order ------------------------------------


def test_a_late_attempt_s_refund_does_not_use_up_what_staff_may_refund(actors: Actors) -> None:
    client = browser()
    assert actors.device.iccid is not None
    order, status_url = declined(client, actors.device.iccid)
    card_url = dict((m, u) for u, m in retry_buttons(client, status_url))["card"]
    second = client.post(card_url, headers={"User-Agent": IPHONE})
    pay_on_page(second["Location"])
    run_tasks()
    first, _current = Payment.objects.filter(order=order).order_by("pk")
    # The first attempt's money arrives late: it goes back by itself.
    SandboxCharge.objects.filter(reference=first.reference).update(
        status=SandboxChargeStatus.SUCCEEDED
    )
    data = {
        "payment": first.provider_ref,
        "reference": first.reference,
        "amount": first.amount,
        "currency": first.currency,
        "merchant": "simtopup-sandbox",
    }
    headers, body = sandbox_notification(data, event_id="evt_review_late")
    assert post_notification(Client(), headers, body).status_code == 200
    run_tasks()
    order = Order.objects.get(pk=order.pk)
    assert order.status == OrderStatus.FULFILLED
    assert Refund.objects.filter(payment=first).count() == 1

    # That refund never came out of revenue: the dashboard's revenue does not take it off.
    for field in ("channel", "payment_method"):
        rows = payments_reports.revenue_by(field, order.created_at, timezone.now())
        assert [(r.count, r.sold, r.refunded, r.refunds) for r in rows] == [(1, order.amount, 0, 0)]

    # The order itself was paid once and never refunded: all of it can still go back.
    state = refundable(order)
    assert (state.paid, state.refunded, state.remaining) == (order.amount, 0, order.amount)
    made = refund(order, order.amount)
    assert made.amount == order.amount
    run_tasks()
    assert Payment.objects.get(current_for=order).status == PaymentStatus.REFUNDED
    assert_ledger_clean()


# --- 3. the last month there is -------------------------------------------------------------


def test_the_statement_of_the_last_month_there_is_is_not_found(actors: Actors) -> None:
    reseller = actors.alice
    with pytest.raises(DomainError) as refused:
        statement(reseller, 9999, 12)
    assert refused.value.code == "invalid_month"


# --- 4. an amount no column can hold ---------------------------------------------------------


@pytest.mark.parametrize("amount", ["99999999999999999999", "1e30"])
def test_a_deposit_too_large_for_the_books_is_a_form_error(actors: Actors, amount: str) -> None:
    finance = console_client(make_staff("fin", "finance"))
    form = {
        "reseller": actors.bob.pk,
        "amount": amount,
        "bank_reference": "R-HUGE",
        "received_on": "2026-12-01",
        "reason": "wire",
    }
    page = finance.post("/admin/finance/deposits/", form)
    assert page.status_code == 400
    assert "too large" in page.content.decode()
    assert not ResellerDeposit.objects.exists()


def test_a_goodwill_credit_too_large_for_the_books_is_a_form_error(actors: Actors) -> None:
    sam = make_staff("sam", "support")
    page = console_client(sam).post(
        reverse("admin:desk-goodwill", args=[actors.device.pk]),
        {"amount": "99999999999999999999", "reason": "outage"},
    )
    assert page.status_code == 200  # the form again, with its error (the desk's habit)
    assert "too large" in page.content.decode()
    assert not GoodwillCredit.objects.exists()


def test_to_minor_refuses_what_the_books_cannot_hold() -> None:
    assert to_minor("10000000000000.00", "CNY") == MAX_MINOR
    with pytest.raises(DomainError) as refused:
        to_minor("10000000000000.01", "CNY")
    assert refused.value.code == "amount_too_large"


# --- follow-ups: a refund the provider took; the customer's view of a late attempt ---------


def test_a_refund_the_provider_took_is_never_also_sent_to_the_credit(
    actors: Actors, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The provider answered "pending" with its refund id until the retries ran out: it may
    still pay, so the desk offers only a retry, and the domain refuses the credit."""
    from simtopup.payments import registry

    order = paid_by_card(actors, "+8613500000092")
    monkeypatch.setitem(
        registry.PROVIDER_CLASSES, "sandbox", "tests.test_payment_checks.ProcessingRefunds"
    )
    settings.PAYMENT_REFUND_BACKOFF = []
    made = refund(order, 500)
    assert "failed" in run_tasks()
    made.refresh_from_db()
    assert made.status == RefundStatus.FAILED
    assert made.provider_refund_ref
    transfers = Transfer.objects.count()
    with pytest.raises(DomainError) as refused:
        failed_refund_to_credit(made, "the provider failed", ACTOR)
    assert refused.value.code == "refund_at_provider"
    assert Transfer.objects.count() == transfers
    page = console_client(make_staff("fin-took", "finance")).get(
        reverse("admin:desk-refund", args=[order.pk])
    )
    html = page.content.decode()
    assert 'name="action" value="retry"' in html
    assert 'name="action" value="credit"' not in html


def test_the_customer_is_not_told_a_late_attempt_s_refund_refunded_the_top_up(
    actors: Actors,
) -> None:
    from simtopup.payments.customer_refunds import customer_refunds

    client = browser()
    assert actors.device.iccid is not None
    order, status_url = declined(client, actors.device.iccid)
    card_url = dict((m, u) for u, m in retry_buttons(client, status_url))["card"]
    pay_on_page(client.post(card_url, headers={"User-Agent": IPHONE})["Location"])
    run_tasks()
    first, _current = Payment.objects.filter(order=order).order_by("pk")
    SandboxCharge.objects.filter(reference=first.reference).update(
        status=SandboxChargeStatus.SUCCEEDED
    )
    data = {
        "payment": first.provider_ref,
        "reference": first.reference,
        "amount": first.amount,
        "currency": first.currency,
        "merchant": "simtopup-sandbox",
    }
    headers, body = sandbox_notification(data, event_id="evt_review_late_customer")
    assert post_notification(Client(), headers, body).status_code == 200
    run_tasks()
    order = Order.objects.get(pk=order.pk)
    assert order.status == OrderStatus.FULFILLED
    assert Refund.objects.filter(payment=first).count() == 1
    # The top-up was not refunded: nothing to tell; the same rule as what staff may refund.
    assert customer_refunds(order) == []
    assert refundable(order).refunded == 0
    made = refund(order, 200)  # a staff refund of the sale itself is told
    order = Order.objects.get(pk=order.pk)
    assert [r.amount for r in customer_refunds(order)] == [made.amount]
