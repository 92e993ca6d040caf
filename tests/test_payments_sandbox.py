"""The customer's journey through the sandbox gateway, and what its webhooks may do: come
twice, come before the customer is back, decline, arrive out of order or late, be forged."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django_tasks_db.models import DBTaskResult

from simtopup.devices.binding import hash_pin
from simtopup.devices.models import Device
from simtopup.ledger.models import Transfer
from simtopup.orders.models import Order, OrderStatus
from simtopup.payments.models import (
    EventOutcome,
    Payment,
    PaymentEvent,
    PaymentStatus,
    SandboxCharge,
)
from simtopup.usage.bundles import remaining_bytes
from simtopup.usage.models import Bundle
from tests.customer_support import login_customer
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
from tests.support import GB, Actors

pytestmark = pytest.mark.usefixtures("sandbox_direct")
__all__ = ["sandbox_direct"]


def order_card(token: str, device: str, plan: str = "day-1g", method: str = "card") -> Any:
    response = post_json(
        app(token), "/api/v1/orders", {"device": device, "plan": plan, "payment_method": method}
    )
    assert response.status_code == 201, response.content
    return response.json()


def order_transfers(order_id: int) -> list[str]:
    payment = Payment.objects.filter(order_id=order_id).first()
    keys = [f"order:{order_id}:"]
    if payment:
        keys.append(f"payment:{payment.pk}:")
    return sorted(
        t.idempotency_key
        for t in Transfer.objects.all()
        if any(t.idempotency_key.startswith(k) for k in keys)
    )


def test_it_tops_up_a_card_through_the_sandbox_from_login_to_credited(actors: Actors) -> None:
    token, _customer = login_customer("+8613800138000")
    client = app(token)
    device = actors.device
    Device.objects.filter(pk=device.pk).update(pin_hash=hash_pin("482109"))  # printed with it
    bound = post_json(
        client, "/api/v1/devices", {"device": device.iccid, "proof": "482109", "nickname": "Mum"}
    )
    assert bound.status_code in (200, 201), bound.content

    quote = post_json(client, "/api/v1/quotes", {"device": device.iccid, "plan": "day-1g"})
    assert quote.status_code == 201, quote.content
    q = quote.json()
    assert q["device"] == device.masked
    assert device.iccid not in quote.content.decode()
    assert q["plan"]["code"] == "day-1g"
    assert q["price"] == {"amount": "5.00", "currency": "CNY"}
    assert q["expires_at"].endswith("Z")

    created = post_json(
        client,
        "/api/v1/orders",
        {"device": device.iccid, "plan": "day-1g", "payment_method": "card", "quote": q["id"]},
    )
    assert created.status_code == 201, created.content
    order = created.json()
    assert order["status"] == "awaiting_payment"
    assert order["channel"] == "app"
    assert order["device"] == device.masked
    assert order["amount"] == {"amount": "5.00", "currency": "CNY"}
    assert order["receipt_no"] is None
    assert order["fulfilled_at"] is None
    assert order["payment"]["provider"] == "sandbox"
    assert order["payment"]["method"] == "card"
    assert order["payment"]["status"] == "pending"
    checkout_url = order["payment"]["checkout_url"]
    assert "/sandbox/checkout/sbx_" in checkout_url

    page = Client().get(checkout_url.split("127.0.0.1:8000")[-1])
    assert page.status_code == 200
    text = page.content.decode()
    assert "¥5.00" in text
    assert device.masked in text
    assert device.iccid not in text

    submitted = pay_on_page(checkout_url, "succeed")
    assert submitted.status_code == 302
    assert submitted["Location"].endswith(f"/payments/return/{Payment.objects.get().reference}")
    # The gateway settled, but its webhook waits for the worker: not credited yet.
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.AWAITING_PAYMENT
    assert SandboxCharge.objects.get().status == "succeeded"

    assert run_tasks() == ["delivered"]

    fetched = client.get(f"/api/v1/orders/{order['id']}").json()
    assert fetched["status"] == "fulfilled"
    assert fetched["receipt_no"].startswith("R")
    assert fetched["fulfilled_at"] is not None
    assert fetched["payment"]["status"] == "succeeded"
    assert fetched["payment"]["checkout_url"] is None
    balance = client.get(f"/api/v1/devices/{bound.json()['id']}/balance")
    assert balance.status_code == 200, balance.content
    assert balance.json()["remaining_bytes"] == 1 * GB
    assert [b["plan"] for b in balance.json()["bundles"]] == ["day-1g"]
    bundle = Bundle.objects.get(order_id=order["id"])
    assert bundle.granted_bytes == 1 * GB
    assert remaining_bytes(device) == 1 * GB
    assert PaymentEvent.objects.get().outcome == EventOutcome.APPLIED
    assert order_transfers(order["id"]) == [
        f"order:{order['id']}:grant",
        f"order:{order['id']}:revenue",
        f"payment:{Payment.objects.get().pk}:capture",
    ]
    back = Client().get(submitted["Location"].split("127.0.0.1:8000")[-1])
    assert back.status_code == 200
    assert "Credited" in back.content.decode()
    receipt = client.get(f"/api/v1/orders/{order['id']}/receipt.pdf")
    assert receipt.status_code == 200
    assert receipt["Content-Type"] == "application/pdf"
    assert receipt.content.startswith(b"%PDF")
    listed = client.get("/api/v1/orders").json()
    assert [o["id"] for o in listed["items"]] == [order["id"]]
    assert_ledger_clean()


def test_the_webhook_may_arrive_before_the_customer_returns(actors: Actors) -> None:
    token, _c = make_customer("+8613800138001")
    order = order_card(token, actors.device.iccid, method="alipay")
    pay_on_page(order["payment"]["checkout_url"])
    run_tasks()  # the notification is processed while the browser is still on its way back
    reference = Payment.objects.get().reference
    back = Client().get(f"/payments/return/{reference}")
    assert "Credited" in back.content.decode()
    assert app(token).get(f"/api/v1/orders/{order['id']}").json()["status"] == "fulfilled"
    assert_ledger_clean()


def test_wechat_pay_gets_a_qr_code(actors: Actors) -> None:
    token, _c = make_customer("+8613800138002")
    order = order_card(token, actors.device.iccid, method="wechat_pay")
    assert order["payment"]["qr_data"] == order["payment"]["checkout_url"]
    assert order["payment"]["qr_data"].startswith("http")


def test_the_same_notification_five_times_credits_once(actors: Actors, settings: Any) -> None:
    settings.SANDBOX_WEBHOOK_COPIES = 5
    token, _c = make_customer("+8613800138003")
    order = order_card(token, actors.device.iccid)
    pay_on_page(order["payment"]["checkout_url"])
    assert run_tasks() == ["delivered"] * 5
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.FULFILLED
    assert Bundle.objects.filter(order_id=order["id"]).count() == 1
    assert PaymentEvent.objects.count() == 1  # stored once; four duplicates acknowledged
    assert len(order_transfers(order["id"])) == 3
    assert_ledger_clean()


def test_events_out_of_order_change_nothing_twice(actors: Actors, settings: Any) -> None:
    settings.SANDBOX_OUT_OF_ORDER = True
    settings.SANDBOX_WEBHOOK_COPIES = 2
    token, _c = make_customer("+8613800138004")
    order = order_card(token, actors.device.iccid)
    pay_on_page(order["payment"]["checkout_url"])
    run_tasks()
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.FULFILLED
    outcomes = dict(PaymentEvent.objects.values_list("kind", "outcome"))
    # The stale "pending" arrived after the success: stored, ignored.
    assert outcomes == {"payment.succeeded": "applied", "payment.pending": "ignored"}
    assert Payment.objects.get().status == PaymentStatus.SUCCEEDED
    assert_ledger_clean()


def test_a_delayed_webhook_waits_for_its_time(actors: Actors, settings: Any) -> None:
    settings.SANDBOX_WEBHOOK_DELAY_SECONDS = 60
    token, _c = make_customer("+8613800138005")
    order = order_card(token, actors.device.iccid)
    pay_on_page(order["payment"]["checkout_url"])
    assert run_tasks() == []
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.AWAITING_PAYMENT
    from django.utils import timezone

    DBTaskResult.objects.update(run_after=timezone.now())
    assert run_tasks() == ["delivered"]
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.FULFILLED


@pytest.mark.parametrize("decline_all", [False, True])
def test_a_declined_payment_fails_the_order_and_credits_nothing(
    actors: Actors, settings: Any, decline_all: bool
) -> None:
    settings.SANDBOX_DECLINE_ALL = decline_all
    token, _c = make_customer("+8613800138006")
    order = order_card(token, actors.device.iccid)
    pay_on_page(order["payment"]["checkout_url"], "succeed" if decline_all else "decline")
    run_tasks()
    fetched = app(token).get(f"/api/v1/orders/{order['id']}").json()
    assert fetched["status"] == "failed"
    assert fetched["failure_code"] == "payment_failed"
    assert fetched["payment"]["status"] == "failed"
    assert order_transfers(order["id"]) == []
    assert not Bundle.objects.exists()
    assert remaining_bytes(actors.device) == 0
    assert_ledger_clean()


def test_a_payment_after_the_order_was_cancelled_is_refunded(actors: Actors) -> None:
    token, _c = make_customer("+8613800138007")
    order = order_card(token, actors.device.iccid)
    cancelled = post_json(app(token), f"/api/v1/orders/{order['id']}/cancel", {})
    assert cancelled.status_code == 200, cancelled.content
    assert cancelled.json()["status"] == "cancelled"
    again = post_json(app(token), f"/api/v1/orders/{order['id']}/cancel", {})
    assert again.status_code == 409
    assert again.json()["code"] == "order_not_cancellable"
    # The payer still had the page open and pays anyway.
    pay_on_page(order["payment"]["checkout_url"])
    run_tasks()
    payment = Payment.objects.get()
    assert payment.status == PaymentStatus.REFUNDED
    assert payment.refund.status == "succeeded"
    assert SandboxCharge.objects.get().status == "refunded"
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.CANCELLED
    assert PaymentEvent.objects.get(kind="payment.succeeded").outcome == "late_refunded"
    assert not Bundle.objects.exists()
    assert order_transfers(order["id"]) == [
        f"payment:{payment.pk}:capture",
        f"payment:{payment.pk}:refund",
    ]
    assert_ledger_clean()


# --- forged, tampered, stale, mismatched ---------------------------------------------------


@pytest.fixture
def awaiting(actors: Actors) -> tuple[Payment, dict[str, Any]]:
    token, _c = make_customer("+8613800138008")
    order_card(token, actors.device.iccid)
    payment = Payment.objects.get()
    data = {
        "payment": payment.provider_ref,
        "reference": payment.reference,
        "amount": payment.amount,
        "currency": payment.currency,
        "merchant": "simtopup-sandbox",
        "status": "succeeded",
    }
    return payment, data


def assert_untouched(payment: Payment) -> None:
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.PENDING
    assert payment.order.status == OrderStatus.AWAITING_PAYMENT
    assert not Transfer.objects.filter(idempotency_key__startswith="payment:").exists()
    assert not Bundle.objects.exists()
    assert_ledger_clean()


def test_a_valid_signed_notification_is_accepted(awaiting: tuple[Payment, dict]) -> None:
    payment, data = awaiting
    headers, body = sandbox_notification(data)
    assert post_notification(Client(), headers, body).status_code == 200
    payment.refresh_from_db()
    assert payment.order.status == OrderStatus.FULFILLED


@pytest.mark.parametrize("forgery", ["tampered", "wrong_secret", "stale", "future", "unsigned"])
def test_forged_notifications_change_nothing(
    awaiting: tuple[Payment, dict], forgery: str, caplog: Any
) -> None:
    import time

    payment, data = awaiting
    if forgery == "wrong_secret":
        headers, body = sandbox_notification(data, secret="whsec_guess")
    elif forgery == "stale":
        headers, body = sandbox_notification(data, timestamp=int(time.time()) - 301)
    elif forgery == "future":
        headers, body = sandbox_notification(data, timestamp=int(time.time()) + 400)
    else:
        headers, body = sandbox_notification(data)
        if forgery == "tampered":
            body = body.replace(b'"amount":500', b'"amount":5')
            assert b'"amount":5,' in body
        else:
            headers = {}
    response = post_notification(Client(), headers, body)
    assert response.status_code == 400
    assert not PaymentEvent.objects.exists()
    assert "refused a sandbox notification" in caplog.text
    assert_untouched(payment)


@pytest.mark.parametrize(
    ("field", "value"),
    [("amount", 1), ("currency", "USD"), ("merchant", "someone-else")],
)
def test_a_mismatched_notification_credits_nothing(
    awaiting: tuple[Payment, dict], field: str, value: Any, caplog: Any
) -> None:
    payment, data = awaiting
    headers, body = sandbox_notification({**data, field: value})
    assert post_notification(Client(), headers, body).status_code == 200  # authentic: ack
    event = PaymentEvent.objects.get()
    assert event.outcome == EventOutcome.MISMATCH
    assert field in event.detail
    assert "does not match" in caplog.text
    assert_untouched(payment)


def test_a_notification_for_an_unknown_payment_is_stored_and_ignored(
    awaiting: tuple[Payment, dict],
) -> None:
    payment, data = awaiting
    headers, body = sandbox_notification({**data, "reference": "pay_nope", "payment": "sbx_x"})
    assert post_notification(Client(), headers, body).status_code == 200
    assert PaymentEvent.objects.get().outcome == EventOutcome.UNKNOWN_PAYMENT
    assert_untouched(payment)


def test_a_malformed_but_signed_notification_is_refused(awaiting: tuple[Payment, dict]) -> None:
    from simtopup.core.signing import sign_body
    from simtopup.payments.providers.sandbox import SIGNATURE_HEADER, webhook_secret

    payment, _data = awaiting
    body = b'{"id": "evt_1", "type": "payment.succeeded"}'
    headers = {SIGNATURE_HEADER: sign_body(webhook_secret(), body)}
    assert post_notification(Client(), headers, body).status_code == 400
    assert_untouched(payment)


def test_the_sandbox_pages_exist_only_when_it_is_enabled(
    awaiting: tuple[Payment, dict], settings: Any
) -> None:
    payment, data = awaiting
    assert Client().get("/sandbox/checkout/sbx_unknown").status_code == 404
    path = f"/sandbox/checkout/{payment.provider_ref}"
    assert Client().get(path).status_code == 200
    assert Client().post(path, {"outcome": "maybe"}).status_code == 400
    settings.PAYMENT_PROVIDER = "stripe"
    assert Client().get(path).status_code == 404
    headers, body = sandbox_notification(data, kind="payment.pending")
    # Switched off, but it still has an open payment: its notifications are still heard…
    assert post_notification(Client(), headers, body).status_code == 200
    assert (
        Client()
        .post("/payments/webhooks/paypal", data=b"{}", content_type="application/json")
        .status_code
        == 404
    )
    assert_untouched(payment)
    # …until nothing of it is open any more.
    Payment.objects.update(status=PaymentStatus.REFUNDED)
    assert post_notification(Client(), headers, body).status_code == 404


def test_a_failure_arriving_after_the_success_changes_nothing(actors: Actors) -> None:
    token, _c = make_customer("+8613800138009")
    order = order_card(token, actors.device.iccid)
    pay_on_page(order["payment"]["checkout_url"])
    run_tasks()
    payment = Payment.objects.get()
    headers, body = sandbox_notification(
        {
            "payment": payment.provider_ref,
            "reference": payment.reference,
            "amount": payment.amount,
            "currency": payment.currency,
            "merchant": "simtopup-sandbox",
            "failure_code": "card_declined",
        },
        kind="payment.failed",
        event_id="evt_stale_failure",
    )
    assert post_notification(Client(), headers, body).status_code == 200
    assert PaymentEvent.objects.get(event_id="evt_stale_failure").outcome == "already_applied"
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.FULFILLED
    assert Payment.objects.get().status == PaymentStatus.SUCCEEDED
    assert_ledger_clean()
