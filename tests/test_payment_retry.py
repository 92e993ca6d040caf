"""Paying a declined order again another way, on the same order (issue 13, point 5).

A declined attempt (failed, nothing captured) stays with its order; the order goes back to
awaiting payment and a new attempt starts (payments.actions.retry_payment). At most one
attempt of an order is pending (a partial unique constraint), only the latest attempt pays
the order, and money for an earlier attempt that arrives late is refunded.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.test import Client

from simtopup.core.errors import DomainError
from simtopup.ledger.models import Transfer
from simtopup.orders.models import Order, OrderStatus
from simtopup.payments import checkout
from simtopup.payments.models import (
    EventOutcome,
    Payment,
    PaymentEvent,
    PaymentStatus,
    RefundStatus,
    SandboxCharge,
    SandboxChargeStatus,
)
from tests.payments_support import (
    assert_ledger_clean,
    pay_on_page,
    post_notification,
    run_tasks,
    sandbox_direct,  # noqa: F401  (fixture)
    sandbox_notification,
)
from tests.support import Actors
from tests.web_support import browser, query_of, text

pytestmark = pytest.mark.usefixtures("sandbox_direct")

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


def declined(client: Client, device: str, method: str = "card") -> tuple[Order, str]:
    """A web order whose payment the payer declined on the gateway's page."""
    response = client.post("/topup/device", {"plan": "day-1g", "device": device})
    assert response.status_code == 302, text(response)[:2000]
    token = query_of(response["Location"], "c")
    paid = client.post(
        "/topup/confirm",
        {"confirmation": token, "payment_method": method},
        headers={"User-Agent": IPHONE},
    )
    back = pay_on_page(paid["Location"], "decline")
    returned = client.get(back["Location"].split("127.0.0.1:8000")[-1])
    run_tasks()
    order = Order.objects.get()
    assert (order.status, order.payment.status) == (OrderStatus.FAILED, PaymentStatus.FAILED)
    return order, returned["Location"]


def retry_buttons(client: Client, status_url: str) -> list[tuple[str, str]]:
    page = text(client.get(status_url, headers={"User-Agent": IPHONE}))
    forms = re.findall(r'<form method="post" action="([^"]+)">.*?data-method="([^"]+)"', page, re.S)
    return [(url.replace("&amp;", "&"), method) for url, method in forms]


def test_declined_then_paid_another_way_on_the_same_order(actors: Actors) -> None:
    client = browser()
    order, status_url = declined(client, actors.device.iccid)
    buttons = retry_buttons(client, status_url)
    assert [m for _u, m in buttons] == ["alipay", "wechat_pay", "card"]

    # One tap: the same order, a second attempt, straight to its payment page.
    card_url = dict((m, u) for u, m in buttons)["card"]
    retried = client.post(card_url, headers={"User-Agent": IPHONE})
    assert retried.status_code == 302
    assert Order.objects.count() == 1
    order.refresh_from_db()
    assert (order.status, order.failure_code, order.closed_at) == (
        OrderStatus.AWAITING_PAYMENT,
        "",
        None,
    )
    attempts = list(Payment.objects.filter(order=order).order_by("pk"))
    assert [a.status for a in attempts] == [PaymentStatus.FAILED, PaymentStatus.PENDING]
    assert order.payment == attempts[1]
    assert attempts[0].reference != attempts[1].reference
    assert retried["Location"] == attempts[1].checkout_url

    # The status page shows the new attempt: awaiting payment, no retry buttons.
    assert retry_buttons(client, status_url) == []

    pay_on_page(retried["Location"])
    run_tasks()
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED
    assert Payment.objects.filter(order=order).count() == 2
    assert Payment.objects.get(pk=attempts[1].pk).status == PaymentStatus.SUCCEEDED
    # Credited once: one capture, the second attempt's; the declined one moved nothing.
    captures = Transfer.objects.filter(idempotency_key__startswith="payment:")
    assert list(captures.values_list("idempotency_key", flat=True)) == [
        f"payment:{attempts[1].pk}:capture"
    ]
    assert_ledger_clean()


def test_the_declined_page_lets_its_buttons_post_from_our_origin(actors: Actors) -> None:
    # no-referrer would make a browser send "Origin: null" with the buttons' POST, which the
    # CSRF check refuses (seen in tests/e2e/test_e2e_pay_surface.py); same-origin keeps the
    # signed link on this site and the Origin ours.
    client = browser()
    _order, status_url = declined(client, actors.device.iccid)
    page = client.get(status_url, headers={"User-Agent": IPHONE})
    assert page["Referrer-Policy"] == "same-origin"


def test_another_method_becomes_the_orders_method(actors: Actors) -> None:
    client = browser()
    order, status_url = declined(client, actors.device.iccid)
    alipay = dict((m, u) for u, m in retry_buttons(client, status_url))["alipay"]
    assert client.post(alipay, headers={"User-Agent": IPHONE}).status_code == 302
    order.refresh_from_db()
    assert (order.payment_method, order.payment.provider) == ("alipay", "sandbox")
    assert order.payment.method == "alipay"


def test_a_retry_is_refused_while_an_attempt_is_live_and_once_paid(actors: Actors) -> None:
    client = browser()
    order, status_url = declined(client, actors.device.iccid)
    card_url = dict((m, u) for u, m in retry_buttons(client, status_url))["card"]
    first = client.post(card_url, headers={"User-Agent": IPHONE})
    assert first.status_code == 302

    # A second press while the new attempt is pending: refused, nothing changed.
    again = client.post(card_url, headers={"User-Agent": IPHONE}, follow=True)
    assert "This order can no longer be paid another way." in text(again)
    assert Payment.objects.filter(order=order).count() == 2
    order.refresh_from_db()
    assert order.status == OrderStatus.AWAITING_PAYMENT
    with pytest.raises(DomainError) as refused, transaction.atomic():
        checkout.retry_order(order, "alipay")
    assert refused.value.code == "order_not_retryable"

    pay_on_page(first["Location"])
    run_tasks()
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED
    paid_again = client.post(card_url, headers={"User-Agent": IPHONE}, follow=True)
    assert "This order can no longer be paid another way." in text(paid_again)
    assert Payment.objects.filter(order=order).count() == 2
    assert_ledger_clean()


def test_the_cards_credit_is_not_a_retry_of_the_same_order(actors: Actors) -> None:
    client = browser()
    order, _status_url = declined(client, actors.device.iccid)
    with pytest.raises(DomainError) as refused, transaction.atomic():
        checkout.retry_order(order, "balance")
    assert refused.value.code == "payment_method_not_retryable"
    order.refresh_from_db()
    assert order.status == OrderStatus.FAILED
    assert Payment.objects.filter(order=order).count() == 1


def test_a_late_success_of_the_declined_attempt_is_refunded(actors: Actors) -> None:
    client = browser()
    order, status_url = declined(client, actors.device.iccid)
    card_url = dict((m, u) for u, m in retry_buttons(client, status_url))["card"]
    second = client.post(card_url, headers={"User-Agent": IPHONE})
    pay_on_page(second["Location"])
    run_tasks()
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED
    first, current = Payment.objects.filter(order=order).order_by("pk")

    # The gateway takes the first attempt's money after all, and says so.
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
    headers, body = sandbox_notification(data, event_id="evt_late_first")
    assert post_notification(Client(), headers, body).status_code == 200
    event = PaymentEvent.objects.get(event_id="evt_late_first")
    assert (event.payment_id, event.outcome) == (first.pk, EventOutcome.LATE_REFUNDED)
    run_tasks()
    first.refresh_from_db()
    assert first.status == PaymentStatus.REFUNDED
    assert first.refunds.get().status == RefundStatus.SUCCEEDED
    current.refresh_from_db()
    assert current.status == PaymentStatus.SUCCEEDED
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED
    assert order.payment == current
    assert_ledger_clean()


def test_the_database_keeps_one_pending_attempt_per_order(actors: Actors) -> None:
    client = browser()
    order, _status_url = declined(client, actors.device.iccid)
    first = order.payment
    Payment.objects.create(
        order=order,
        provider="sandbox",
        method="card",
        amount=order.amount,
        currency=order.currency,
        reference="pay_second_attempt",
    )
    # A second pending attempt of the same order: the database refuses it.
    with pytest.raises(IntegrityError), transaction.atomic():
        Payment.objects.filter(pk=first.pk).update(status=PaymentStatus.PENDING)
    # An attempt is the current one of its own order only.
    with pytest.raises(IntegrityError), transaction.atomic():
        Payment.objects.filter(pk=first.pk).update(current_for=actors_other_order(actors))


def actors_other_order(actors: Actors) -> Order:
    other = Order.objects.get()
    clone = Order.objects.get(pk=other.pk)
    clone.pk = None
    clone.save()
    return clone


@pytest.mark.skipif("connection.vendor != 'postgresql'")
@pytest.mark.django_db(transaction=True)
def test_two_retries_at_once_start_one_attempt(actors: Actors) -> None:
    client = browser()
    order, _status_url = declined(client, actors.device.iccid)
    prepared = [checkout.prepare_retry(order, m) for m in ("card", "alipay")]
    barrier = threading.Barrier(2)
    outcomes: list[Any] = []

    def press(i: int) -> None:
        try:
            barrier.wait()
            with transaction.atomic(durable=True):
                checkout.retry_order(order, ("card", "alipay")[i], prepared=prepared[i])
            outcomes.append("placed")
        except DomainError as exc:
            outcomes.append(exc.code)
        except IntegrityError:
            outcomes.append("integrity")
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=press, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) in (["order_not_retryable", "placed"], ["integrity", "placed"])
    assert Payment.objects.filter(order=order).count() == 2
    assert Payment.objects.filter(order=order, status=PaymentStatus.PENDING).count() == 1
    order.refresh_from_db()
    assert order.status == OrderStatus.AWAITING_PAYMENT


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_each_payment_as_its_orders_attempt(actors: Actors) -> None:
    from django.db.migrations.executor import MigrationExecutor

    client = browser()
    order, _status_url = declined(client, actors.device.iccid)
    payment = order.payment
    executor = MigrationExecutor(connection)
    executor.migrate([("payments", "0002_event_flagged_for_review")])
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, order_id FROM payments_payment")
        assert cursor.fetchall() == [(payment.pk, order.pk)]
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([("payments", "0003_payment_attempts")])
    # Back to the newest schema, for the tests that run after this one.
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    row = Payment.objects.get()
    assert (row.pk, row.order_id, row.current_for_id) == (payment.pk, order.pk, order.pk)
    assert Order.objects.get(pk=order.pk).payment == row
