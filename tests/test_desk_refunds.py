"""Refunds by customer service (payments/staff_refunds.py, backoffice/desk_refunds.py): any
part of a fulfilled order, through the payment's provider or to the card's credit, several
refunds never more than was paid — not even when two staff members refund at once — each
with its reason on the audit log and the ledger clean after it."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client, TestCase
from django.urls import reverse
from django.utils import timezone

from simtopup.audit.log import staff_actor
from simtopup.audit.models import Action, AuditEntry
from simtopup.core.errors import DomainError
from simtopup.ledger.actions import balance, system_account
from simtopup.ledger.models import Transfer
from simtopup.network.adapters import AdapterError, Grant
from simtopup.notifications.backends import memory
from simtopup.orders.models import Order, OrderStatus
from simtopup.payments.actions import execute_refund, gateway_clearing_expected, sweep
from simtopup.payments.models import (
    EventOutcome,
    Payment,
    PaymentEvent,
    PaymentStatus,
    Refund,
    RefundDestination,
    RefundStatus,
    SandboxCharge,
    SandboxRefund,
)
from simtopup.payments.providers.base import ProviderError, RefundResult
from simtopup.payments.providers.sandbox import SandboxProvider
from simtopup.payments.staff_refunds import refund_by_staff, refundable
from tests.payments_support import (
    app,
    assert_ledger_clean,
    bind,
    credit_of,
    give_credit,
    make_customer,
    pay_on_page,
    post_json,
    post_notification,
    run_tasks,
    sandbox_direct,
    sandbox_notification,
)
from tests.staff_support import console_client, make_staff
from tests.support import Actors
from tests.test_concurrency import run_concurrently

pytestmark = pytest.mark.usefixtures("sandbox_direct")
__all__ = ["sandbox_direct"]

ACTOR = "staff:1:alice"


@pytest.fixture(autouse=True)
def _memory_senders(settings: Any) -> None:
    settings.SMS_SENDER = "memory"
    settings.EMAIL_SENDER = "memory"
    memory.outbox.clear()


def paid_by_card(actors: Actors, phone: str) -> Order:
    """A day pass (¥5.00) paid on the sandbox's page and fulfilled."""
    token, _customer = make_customer(phone)
    response = post_json(
        app(token),
        "/api/v1/orders",
        {"device": actors.device.iccid, "plan": "day-1g", "payment_method": "card"},
    )
    assert response.status_code == 201, response.content
    pay_on_page(response.json()["payment"]["checkout_url"])
    run_tasks()
    order = Order.objects.get(pk=response.json()["id"])
    assert order.status == OrderStatus.FULFILLED
    return order


def paid_by_credit(actors: Actors, phone: str) -> Order:
    """A day pass (¥5.00) paid from the card's credit (¥12.00 before, ¥7.00 after)."""
    token, customer = make_customer(phone)
    bind(actors.device, customer)
    give_credit(actors.device, 1200, f"test:credit:{phone}")
    response = post_json(
        app(token),
        "/api/v1/orders",
        {"device": actors.device.iccid, "plan": "day-1g", "payment_method": "balance"},
    )
    assert response.status_code == 201, response.content
    order = Order.objects.get(pk=response.json()["id"])
    assert order.status == OrderStatus.FULFILLED
    return order


def refund(order: Order, amount: int, destination: str = "provider", **kw: Any) -> Refund:
    with TestCase.captureOnCommitCallbacks(execute=True):
        return refund_by_staff(
            order, amount, destination, kw.get("reason", "customer complained"), ACTOR, "10.0.0.9"
        )


def refused(order: Order, amount: Any, destination: str = "provider", reason: str = "why") -> str:
    before = (Refund.objects.count(), Transfer.objects.count(), AuditEntry.objects.count())
    with pytest.raises(DomainError) as caught:
        refund_by_staff(order, amount, destination, reason, ACTOR)
    after = (Refund.objects.count(), Transfer.objects.count(), AuditEntry.objects.count())
    assert after == before  # nothing changed
    return caught.value.code


# --- the domain -------------------------------------------------------------------------------


def test_a_fulfilled_card_order_is_refunded_in_parts_through_the_provider(
    actors: Actors,
) -> None:
    order = paid_by_card(actors, "+8613500000001")
    revenue = system_account("revenue", "CNY")
    revenue_before = balance(revenue)
    first = refund(order, 200)
    assert (first.amount, first.destination, first.status) == (200, "provider", "pending")
    assert first.requested_by == ACTOR
    assert first.reason == "customer complained"
    # Decided: the ledger moved (revenue → gateway clearing); the provider is asked next.
    assert balance(revenue) == revenue_before - 200
    assert gateway_clearing_expected()["system:gateway_clearing:CNY"] == -500 + 200
    assert_ledger_clean()
    payment = Payment.objects.get(order=order)
    assert payment.status == PaymentStatus.SUCCEEDED  # refunded in part
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert "refunded" in run_tasks()  # the worker's refund task, the sandbox's webhook
    first.refresh_from_db()
    assert first.status == RefundStatus.SUCCEEDED
    assert first.provider_refund_ref
    made = SandboxRefund.objects.get()
    assert (made.refund_reference, made.amount) == (first.reference, 200)
    assert SandboxCharge.objects.get().status == "succeeded"  # not yet in full
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert Order.objects.get(pk=order.pk).status == OrderStatus.FULFILLED
    [told] = memory.outbox
    assert "¥2.00" in told.body
    assert_ledger_clean()
    # The rest: the payment is refunded in full once the provider has made it.
    assert refundable(order).remaining == 300
    second = refund(order, 300)
    assert Payment.objects.get(pk=payment.pk).status == PaymentStatus.REFUND_PENDING
    run_tasks()
    second.refresh_from_db()
    assert second.status == RefundStatus.SUCCEEDED
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.REFUNDED
    assert payment.refunded_at is not None
    assert SandboxCharge.objects.get().status == "refunded"
    assert sorted(SandboxRefund.objects.values_list("amount", flat=True)) == [200, 300]
    assert balance(system_account("gateway_clearing", "CNY")) == 0
    assert refundable(order).remaining == 0
    assert refused(order, 1) == "refund_exceeds_paid"
    assert_ledger_clean()


def test_an_over_refund_is_refused_and_changes_nothing(actors: Actors) -> None:
    order = paid_by_card(actors, "+8613500000002")
    assert refused(order, 501) == "refund_exceeds_paid"
    refund(order, 450, "credit")
    assert refused(order, 51) == "refund_exceeds_paid"
    assert refused(order, 0) == "amount_invalid"
    assert refused(order, -5) == "amount_invalid"
    assert refused(order, "5") == "amount_invalid"
    assert refused(order, 10, reason="   ") == "reason_required"
    assert refused(order, 10, reason="x" * 501) == "reason_too_long"
    assert refused(order, 10, destination="cash") == "destination_invalid"
    refund(order, 50, "credit")
    assert refundable(order).remaining == 0
    assert_ledger_clean()


def test_a_card_order_refunded_to_the_card_s_credit_is_done_at_once(actors: Actors) -> None:
    order = paid_by_card(actors, "+8613500000003")
    credit_before = credit_of(actors.device)
    done = refund(order, 500, "credit", reason="goodwill: slow network all day")
    assert (done.status, done.destination, done.settled_at is not None) == (
        "succeeded",
        "credit",
        True,
    )
    assert credit_of(actors.device) == credit_before + 500
    transfer = Transfer.objects.get(idempotency_key=f"order:{order.pk}:refund:{done.reference}")
    assert (transfer.kind, transfer.source.code) == ("order_refund", "system:revenue:CNY")
    # Nothing for the provider to do; the payment is refunded in full.
    assert Payment.objects.get(order=order).status == PaymentStatus.REFUNDED
    assert not SandboxRefund.objects.exists()
    assert gateway_clearing_expected()["system:gateway_clearing:CNY"] == -500
    [told] = memory.outbox
    assert "¥5.00" in told.body
    assert_ledger_clean()


def test_a_credit_paid_order_always_goes_back_to_the_card_s_credit(actors: Actors) -> None:
    order = paid_by_credit(actors, "+8613500000004")
    assert credit_of(actors.device) == 700
    state = refundable(order)
    assert (state.payment, state.destinations, state.remaining) == (None, ("credit",), 500)
    done = refund(order, 120, "provider")  # asked for the provider: the card's credit it is
    assert (done.destination, done.status, done.payment_id) == ("credit", "succeeded", None)
    assert credit_of(actors.device) == 820
    refund(order, 380, "credit")
    assert credit_of(actors.device) == 1200
    assert refused(order, 1, "credit") == "refund_exceeds_paid"
    assert_ledger_clean()


def test_each_refund_writes_its_audit_row_with_its_reason(actors: Actors) -> None:
    order = paid_by_card(actors, "+8613500000005")
    done = refund(order, 125, "credit", reason="charged twice, says the customer")
    entry = AuditEntry.objects.get(action=Action.REFUND)
    assert (entry.actor, entry.ip, entry.object_type, entry.object_id) == (
        ACTOR,
        "10.0.0.9",
        "orders.order",
        str(order.pk),
    )
    assert entry.reason == "charged twice, says the customer"
    assert entry.before == {"refunded": 0, "remaining": 500, "payment_status": "succeeded"}
    assert entry.after is not None
    assert entry.after["refund"] == done.reference
    assert (entry.after["amount"], entry.after["destination"], entry.after["remaining"]) == (
        125,
        "credit",
        375,
    )


class RefusingUpstream:
    synchronous = False

    def apply(self, order: Order) -> Grant:
        raise AdapterError("upstream answered 422", permanent=True)


def test_a_failed_order_was_refunded_already_and_its_refund_keeps_working(
    actors: Actors, settings: Any
) -> None:
    settings.NETWORK_ADAPTER = "tests.test_desk_refunds.RefusingUpstream"
    token, _c = make_customer("+8613500000006")
    response = post_json(
        app(token),
        "/api/v1/orders",
        {"device": actors.device.iccid, "plan": "day-1g", "payment_method": "card"},
    )
    pay_on_page(response.json()["payment"]["checkout_url"])
    run_tasks()
    order = Order.objects.get(pk=response.json()["id"])
    assert order.status == OrderStatus.REFUNDED
    automatic = Refund.objects.get()
    assert (automatic.order_id, automatic.amount, automatic.requested_by) == (order.pk, 500, "")
    assert automatic.destination == RefundDestination.PROVIDER
    assert refused(order, 100) == "order_already_refunded"
    assert refundable(order).remaining == 0
    assert_ledger_clean()


def test_orders_not_paid_or_not_done_are_refused(actors: Actors) -> None:
    token, _c = make_customer("+8613500000007")
    response = post_json(
        app(token),
        "/api/v1/orders",
        {"device": actors.device.iccid, "plan": "day-1g", "payment_method": "card"},
    )
    order = Order.objects.get(pk=response.json()["id"])
    assert refused(order, 100) == "order_not_paid"
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.PAID, paid_at=timezone.now())
    assert refused(Order.objects.get(pk=order.pk), 100) == "order_not_settled"


class FlakyRefunds(SandboxProvider):
    calls = 0

    def refund(self, *args: Any, **kwargs: Any) -> RefundResult:
        type(self).calls += 1
        if type(self).calls < 2:
            raise ProviderError("provider_unavailable", "timeout", retryable=True)
        return super().refund(*args, **kwargs)


def test_a_staff_refund_the_provider_cannot_make_yet_is_retried(
    actors: Actors, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = paid_by_card(actors, "+8613500000008")
    settings.PAYMENT_REFUND_BACKOFF = [30, 300]
    monkeypatch.setitem(
        __import__("simtopup.payments.registry").payments.registry.PROVIDER_CLASSES,
        "sandbox",
        "tests.test_desk_refunds.FlakyRefunds",
    )
    FlakyRefunds.calls = 0
    done = refund(order, 250)
    assert "retry" in run_tasks()
    done.refresh_from_db()
    assert done.status == RefundStatus.PENDING
    assert done.last_error.startswith("provider_")
    Refund.objects.update(next_attempt_at=timezone.now())
    assert sweep() == {"refunded": 1}
    assert execute_refund(done.pk) == "not_due"
    run_tasks()
    done.refresh_from_db()
    assert (done.status, done.attempts) == (RefundStatus.SUCCEEDED, 2)
    assert SandboxRefund.objects.get().amount == 250
    assert Payment.objects.get(order=order).status == PaymentStatus.SUCCEEDED
    assert_ledger_clean()


def test_each_notification_confirms_the_refund_it_names(
    actors: Actors, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two refunds of one payment, confirmed by the provider's notifications only (in the
    other order): each confirms its own; the payment is refunded once both are made."""
    from simtopup.payments import registry
    from tests.test_payment_checks import MERCHANT

    order = paid_by_card(actors, "+8613500000015")
    monkeypatch.setitem(
        registry.PROVIDER_CLASSES, "sandbox", "tests.test_payment_checks.ProcessingRefunds"
    )
    first, second = refund(order, 100), refund(order, 400)
    run_tasks()  # the provider takes both, to confirm later
    payment = Payment.objects.get(order=order)
    assert payment.status == PaymentStatus.REFUND_PENDING

    def notify(row: Refund, event_id: str) -> PaymentEvent:
        row.refresh_from_db()
        data = {
            "payment": payment.provider_ref,
            "reference": payment.reference,
            "amount": row.amount,
            "currency": "CNY",
            "merchant": MERCHANT,
            "method": payment.method,
            "status": "refunded",
            "failure_code": None,
            "refund": row.provider_refund_ref,
            "refund_reference": row.reference,
        }
        headers, body = sandbox_notification(data, kind="refund.succeeded", event_id=event_id)
        with TestCase.captureOnCommitCallbacks(execute=True):
            assert post_notification(Client(), headers, body).status_code == 200
        return PaymentEvent.objects.get(event_id=event_id)

    assert notify(second, "evt_second").outcome == EventOutcome.APPLIED
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == (RefundStatus.PENDING, RefundStatus.SUCCEEDED)
    assert Payment.objects.get(pk=payment.pk).status == PaymentStatus.REFUND_PENDING
    assert notify(first, "evt_first").outcome == EventOutcome.APPLIED
    assert Refund.objects.get(pk=first.pk).status == RefundStatus.SUCCEEDED
    assert Payment.objects.get(pk=payment.pk).status == PaymentStatus.REFUNDED
    assert not PaymentEvent.objects.filter(flagged_at__isnull=False).exists()
    told = sorted(m.body for m in memory.outbox if "We refunded" in m.body)
    assert len(told) == 2
    assert "¥1.00" in told[0]  # each message names its own refund's amount
    assert "¥4.00" in told[1]
    assert_ledger_clean()


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_existing_refunds_their_order(actors: Actors) -> None:
    """0004 fills in the order of refunds made before it (all automatic, by provider)."""
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.migrate([("payments", "0003_payment_attempts")])
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO orders_order (channel, status, device_id, plan_id, payment_method,"
                " amount, retail_amount, currency, attempts, failure_code, failure_detail,"
                " created_at) VALUES ('app', 'refunded', %s, %s, 'card', 500, 500, 'CNY', 0,"
                " '', '', %s)",
                [actors.device.pk, actors.plans["day-1g"].pk, timezone.now()],
            )
            cursor.execute("SELECT max(id) FROM orders_order")
            (order_id,) = cursor.fetchone()
            cursor.execute(
                "INSERT INTO payments_payment (order_id, provider, method, status, amount,"
                " currency, reference, provider_ref, checkout_url, qr_data, checks,"
                " failure_code, created_at) VALUES (%s, 'sandbox', 'card', 'refunded', 500,"
                " 'CNY', 'pay_old', '', '', '', 0, '', %s)",
                [order_id, timezone.now()],
            )
            cursor.execute("SELECT max(id) FROM payments_payment")
            (payment_id,) = cursor.fetchone()
            cursor.execute(
                "INSERT INTO payments_refund (payment_id, reference, amount, currency, reason,"
                " status, provider_refund_ref, attempts, last_error, created_at) VALUES"
                " (%s, 'rf_pay_old', 500, 'CNY', 'fulfilment_failed', 'succeeded', '', 1, '',"
                " %s)",
                [payment_id, timezone.now()],
            )
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
    old = Refund.objects.get(reference="rf_pay_old")
    assert (old.order_id, old.payment_id, old.destination, old.requested_by) == (
        order_id,
        payment_id,
        "provider",
        "",
    )


# --- concurrency (PostgreSQL: real row locks) ------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif("connection.vendor != 'postgresql'")
@pytest.mark.parametrize("destination", ["provider", "credit"])
def test_two_staff_refunding_at_once_never_exceed_what_was_paid(
    actors: Actors, destination: str
) -> None:
    order = paid_by_card(actors, "+8613500000009")

    def staff(amount: int) -> Any:
        def job() -> str:
            try:
                refund_by_staff(order, amount, destination, "both at once", ACTOR)
            except DomainError as exc:
                return exc.code
            return "refunded"

        return job

    # Three refunds of ¥3.00 of a ¥5.00 order, all at once: one wins, the others see it.
    outcomes = run_concurrently([staff(300), staff(300), staff(300)], threads=3)
    assert sorted(outcomes) == ["refund_exceeds_paid", "refund_exceeds_paid", "refunded"]
    # Then ¥2.00 twice at once: exactly one fits.
    outcomes = run_concurrently([staff(200), staff(200)], threads=2)
    assert sorted(outcomes) == ["refund_exceeds_paid", "refunded"]
    total = sum(Refund.objects.filter(order=order).values_list("amount", flat=True))
    assert total == 500
    assert AuditEntry.objects.filter(action=Action.REFUND).count() == 2
    assert_ledger_clean()


# --- the console page -------------------------------------------------------------------------


def refund_url(order: Order, **query: str) -> str:
    url = reverse("admin:desk-refund", args=[order.pk])
    if query:
        url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
    return url


PAGE_WORDS = {
    "en": ("Can still be refunded", "To the card&#x27;s credit", "Reason"),
    "zh-hans": ("还可退款", "退到卡内余额", "原因"),
    "zh-hant": ("尚可退款", "退到卡內餘額", "原因"),
}


@pytest.mark.parametrize("language", ["en", "zh-hans", "zh-hant"])
def test_the_page_shows_the_order_its_refunds_and_the_form(actors: Actors, language: str) -> None:
    order = paid_by_card(actors, "+8613500000010")
    refund(order, 100, "credit", reason="first refund reason")
    agent = make_staff("sam", "support")
    page = console_client(agent, HTTP_ACCEPT_LANGUAGE=language).get(
        refund_url(order), headers={"accept-language": language}
    )
    assert page.status_code == 200
    body = page.content.decode()
    for word in PAGE_WORDS[language]:
        assert word in body, (language, word)
    assert 'name="amount" value="4.00"' in body  # what is left, in yuan
    assert "¥1.00" in body
    assert "first refund reason" in body
    assert 'value="provider"' in body
    assert 'value="credit"' in body
    assert actors.device.masked in body


def test_a_refund_from_the_page_goes_back_to_next_with_a_message(actors: Actors) -> None:
    order = paid_by_card(actors, "+8613500000011")
    agent = make_staff("sam", "support")
    browser = console_client(agent)
    here = "/admin/desk/devices/1/"
    with TestCase.captureOnCommitCallbacks(execute=True):
        done = browser.post(
            refund_url(order, next=here),
            {"amount": "1.50", "destination": "credit", "reason": "network down", "next": here},
        )
    assert done.status_code == 302
    assert done["Location"] == here
    made = Refund.objects.get()
    assert (made.amount, made.destination, made.requested_by) == (
        150,
        "credit",
        staff_actor(agent),
    )
    assert AuditEntry.objects.get(action=Action.REFUND).reason == "network down"
    # The success message shows on the next console page.
    shown = browser.get(reverse("admin:orders_order_change", args=[order.pk]))
    assert "¥1.50 went back to the card&#x27;s credit." in shown.content.decode()
    # The order's and the payment's console pages list the refund (amount, destination).
    payment = Payment.objects.get(order=order)
    for page in (shown, browser.get(reverse("admin:payments_payment_change", args=[payment.pk]))):
        assert page.status_code == 200
        body = page.content.decode()
        assert made.reference in body
        assert "1.50 CNY" in body
        assert "network down" in body
    # Without a safe next: the order's console page.
    elsewhere = browser.post(
        refund_url(order, next="https://evil.example/"),
        {"amount": "1.00", "destination": "provider", "reason": "again"},
    )
    assert elsewhere["Location"] == reverse("admin:orders_order_change", args=[order.pk])
    assert_ledger_clean()


def test_errors_show_on_the_form_and_change_nothing(actors: Actors) -> None:
    order = paid_by_card(actors, "+8613500000012")
    browser = console_client(make_staff("sam", "support"))
    for data, words in (
        ({"amount": "5.01", "destination": "provider", "reason": "x"}, "At most ¥5.00"),
        ({"amount": "1.234", "destination": "provider", "reason": "x"}, "decimals"),
        ({"amount": "abc", "destination": "provider", "reason": "x"}, "decimal number"),
        ({"amount": "1.00", "destination": "provider", "reason": ""}, "required"),
        ({"amount": "1.00", "destination": "cash", "reason": "x"}, "valid choice"),
    ):
        page = browser.post(refund_url(order), data)
        assert page.status_code in (400, 409), data
        assert words in page.content.decode(), (data, words)
    assert not Refund.objects.exists()
    assert not AuditEntry.objects.filter(action=Action.REFUND).exists()


def test_a_failed_order_s_page_says_why_it_cannot_be_refunded(
    actors: Actors, settings: Any
) -> None:
    settings.NETWORK_ADAPTER = "tests.test_desk_refunds.RefusingUpstream"
    token, _c = make_customer("+8613500000013")
    response = post_json(
        app(token),
        "/api/v1/orders",
        {"device": actors.device.iccid, "plan": "day-1g", "payment_method": "card"},
    )
    pay_on_page(response.json()["payment"]["checkout_url"])
    run_tasks()
    order = Order.objects.get(pk=response.json()["id"])
    browser = console_client(make_staff("sam", "support"))
    page = browser.get(refund_url(order))
    body = page.content.decode()
    assert "already went back in full" in body
    assert 'name="amount"' not in body
    assert "Back through the payment" in body  # the automatic refund, listed
    posted = browser.post(refund_url(order), {"amount": "1.00", "destination": "provider"})
    assert posted.status_code == 200
    assert Refund.objects.count() == 1


def test_staff_without_the_permission_are_refused(actors: Actors) -> None:
    order = paid_by_card(actors, "+8613500000014")
    nobody = User.objects.create_user("noone", "noone@example.com", "pw-x-Rz4k", is_staff=True)
    browser = console_client(nobody)
    assert browser.get(refund_url(order)).status_code == 403
    posted = browser.post(
        refund_url(order), {"amount": "1.00", "destination": "credit", "reason": "x"}
    )
    assert posted.status_code == 403
    assert not Refund.objects.exists()
    # Not signed in to the console at all: the login page.
    assert Client().get(refund_url(order)).status_code == 302


def test_support_and_finance_may_refund(db: None) -> None:
    assert make_staff("sam", "support").has_perm("payments.issue_refund")
    assert make_staff("fin", "finance").has_perm("payments.issue_refund")
