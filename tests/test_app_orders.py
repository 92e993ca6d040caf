"""App API orders and quotes: validation, price locking, idempotency, and customers never
seeing or touching each other's orders."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from simtopup.catalog.models import Plan
from simtopup.devices.models import Device, DeviceStatus
from simtopup.orders.models import Order, OrderStatus, Quote
from simtopup.payments.models import Payment, PaymentStatus, SandboxCharge
from simtopup.payments.providers.base import ProviderError
from simtopup.payments.providers.sandbox import SandboxProvider
from tests.payments_support import (
    app,
    assert_ledger_clean,
    bind,
    make_customer,
    pay_on_page,
    post_json,
    run_tasks,
    sandbox_direct,
)
from tests.support import Actors

pytestmark = pytest.mark.usefixtures("sandbox_direct")
__all__ = ["sandbox_direct"]


@pytest.fixture
def ann(actors: Actors) -> tuple[str, Any]:
    return make_customer("+8613700000001")


@pytest.fixture
def ben(actors: Actors) -> tuple[str, Any]:
    return make_customer("+8613700000002")


def order(token: str, body: dict[str, Any], **headers: str) -> Any:
    return post_json(app(token), "/api/v1/orders", body, **headers)


def test_orders_need_a_token(actors: Actors) -> None:
    body = {"device": actors.device.iccid, "plan": "day-1g", "payment_method": "card"}
    response = post_json(Client(), "/api/v1/orders", body)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"
    assert Client().get("/api/v1/orders").status_code == 401
    assert post_json(Client(), "/api/v1/quotes", {"device": "x", "plan": "y"}).status_code == 401
    assert not Order.objects.exists()


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"plan": "day-1g", "payment_method": "card"}, 422, "validation_error"),
        ({"device": "123", "plan": "day-1g", "payment_method": "card"}, 422, "invalid_identifier"),
        (
            {"device": "89860100000000000019", "plan": "day-1g", "payment_method": "card"},
            422,
            "check_digit_mismatch",
        ),
        ({"device": "DEVICE", "plan": "nope", "payment_method": "card"}, 422, "unknown_plan"),
        (
            {"device": "DEVICE", "plan": "day-1g", "payment_method": "paypal"},
            422,
            "payment_method_unavailable",
        ),
        (
            {"device": "DEVICE", "plan": "day-1g", "payment_method": "card", "quote": "1"},
            422,
            "validation_error",
        ),
        (
            {"device": "DEVICE", "plan": "day-1g", "payment_method": "card", "extra": 1},
            422,
            "validation_error",
        ),
        (
            {"device": "DEVICE", "plan": "day-1g", "payment_method": "card", "quote": 999},
            422,
            "unknown_quote",
        ),
    ],
)
def test_bad_orders_are_refused_and_change_nothing(
    actors: Actors, ann: tuple[str, Any], body: dict[str, Any], status: int, code: str
) -> None:
    if body.get("device") == "DEVICE":
        body = {**body, "device": actors.device.iccid}
    response = order(ann[0], body)
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == code
    assert not Order.objects.exists()
    assert not Payment.objects.exists()
    assert not SandboxCharge.objects.exists()


def test_a_suspended_card_cannot_be_topped_up(actors: Actors, ann: tuple[str, Any]) -> None:
    Device.objects.filter(pk=actors.device.pk).update(status=DeviceStatus.SUSPENDED)
    for path, body in [
        ("/api/v1/quotes", {"device": actors.device.iccid, "plan": "day-1g"}),
        (
            "/api/v1/orders",
            {"device": actors.device.iccid, "plan": "day-1g", "payment_method": "card"},
        ),
    ]:
        response = post_json(app(ann[0]), path, body)
        assert response.status_code == 422
        assert response.json()["code"] == "device_not_rechargeable"
    assert not Order.objects.exists()


def test_anyone_may_top_up_any_card_and_sees_only_the_masked_id(
    actors: Actors, ann: tuple[str, Any], ben: tuple[str, Any]
) -> None:
    bind(actors.device, ann[1])  # Ann's card; Ben (her father) pays for it
    quote = post_json(
        app(ben[0]), "/api/v1/quotes", {"device": actors.device.iccid, "plan": "month-20g"}
    )
    assert quote.status_code == 201
    text = quote.content.decode()
    assert actors.device.iccid not in text
    assert "+8613700000001" not in text
    response = order(
        ben[0], {"device": actors.device.iccid, "plan": "month-20g", "payment_method": "alipay"}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["device"] == actors.device.masked
    assert "+8613700000001" not in response.content.decode()
    pay_on_page(body["payment"]["checkout_url"])
    run_tasks()
    assert Order.objects.get(pk=body["id"]).status == OrderStatus.FULFILLED
    # The order is Ben's: Ann does not see it in her history.
    assert app(ann[0]).get("/api/v1/orders").json()["items"] == []
    assert app(ben[0]).get(f"/api/v1/orders/{body['id']}").status_code == 200
    assert_ledger_clean()


def test_a_customer_cannot_read_or_cancel_anothers_order(
    actors: Actors, ann: tuple[str, Any], ben: tuple[str, Any]
) -> None:
    placed = order(
        ann[0], {"device": actors.device.iccid, "plan": "day-1g", "payment_method": "card"}
    )
    order_id = placed.json()["id"]
    for response in (
        app(ben[0]).get(f"/api/v1/orders/{order_id}"),
        post_json(app(ben[0]), f"/api/v1/orders/{order_id}/cancel", {}),
        app(ben[0]).get("/api/v1/orders/999999"),
    ):
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
    assert app(ben[0]).get("/api/v1/orders").json() == {"items": [], "next_cursor": None}
    row = Order.objects.get(pk=order_id)
    assert row.status == OrderStatus.AWAITING_PAYMENT
    assert Payment.objects.get().status == PaymentStatus.PENDING
    # …while Ann can.
    assert app(ann[0]).get(f"/api/v1/orders/{order_id}").json()["status"] == "awaiting_payment"


def test_the_order_list_pages_with_a_cursor(actors: Actors, ann: tuple[str, Any]) -> None:
    ids = [
        order(
            ann[0], {"device": actors.devices[i].iccid, "plan": "day-1g", "payment_method": "card"}
        ).json()["id"]
        for i in range(5)
    ]
    client = app(ann[0])
    first = client.get("/api/v1/orders?limit=2").json()
    assert [o["id"] for o in first["items"]] == ids[::-1][:2]
    second = client.get(f"/api/v1/orders?limit=2&cursor={first['next_cursor']}").json()
    assert [o["id"] for o in second["items"]] == ids[::-1][2:4]
    third = client.get(f"/api/v1/orders?limit=2&cursor={second['next_cursor']}").json()
    assert [o["id"] for o in third["items"]] == ids[:1]
    assert third["next_cursor"] is None
    bad = client.get("/api/v1/orders?cursor=!!!")
    assert bad.status_code == 422
    assert bad.json()["code"] == "invalid_cursor"


def test_a_quote_locks_the_price(actors: Actors, ann: tuple[str, Any]) -> None:
    q = post_json(
        app(ann[0]), "/api/v1/quotes", {"device": actors.device.iccid, "plan": "day-1g"}
    ).json()
    Plan.objects.filter(code="day-1g").update(price=800)  # the operator raises the price
    placed = order(
        ann[0],
        {
            "device": actors.device.iccid,
            "plan": "day-1g",
            "payment_method": "card",
            "quote": q["id"],
        },
    ).json()
    assert placed["amount"]["amount"] == "5.00"
    assert Payment.objects.get().amount == 500
    unquoted = order(
        ann[0], {"device": actors.device.iccid, "plan": "day-1g", "payment_method": "card"}
    )
    assert unquoted.json()["amount"]["amount"] == "8.00"
    pay_on_page(placed["payment"]["checkout_url"])
    run_tasks()
    assert Order.objects.get(pk=placed["id"]).status == OrderStatus.FULFILLED
    assert_ledger_clean()


def test_an_expired_or_foreign_quote_is_refused(
    actors: Actors, ann: tuple[str, Any], ben: tuple[str, Any]
) -> None:
    q = post_json(
        app(ann[0]), "/api/v1/quotes", {"device": actors.device.iccid, "plan": "day-1g"}
    ).json()
    base = {
        "device": actors.device.iccid,
        "plan": "day-1g",
        "payment_method": "card",
        "quote": q["id"],
    }
    other_plan = order(ann[0], {**base, "plan": "month-20g"})
    assert other_plan.status_code == 422
    assert other_plan.json()["code"] == "quote_mismatch"
    other_device = order(ann[0], {**base, "device": actors.devices[1].iccid})
    assert other_device.json()["code"] == "quote_mismatch"
    assert order(ben[0], base).json()["code"] == "unknown_quote"  # Ann's quote, not Ben's
    Quote.objects.filter(pk=q["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    expired = order(ann[0], base)
    assert expired.status_code == 422
    assert expired.json()["code"] == "quote_expired"
    assert expired.json()["errors"][0]["field"] == "quote"
    assert not Order.objects.exists()


def test_post_orders_is_idempotent(actors: Actors, ann: tuple[str, Any]) -> None:
    body = {"device": actors.device.iccid, "plan": "day-1g", "payment_method": "card"}
    first = order(ann[0], body, **{"Idempotency-Key": "k-1"})
    again = order(ann[0], body, **{"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Order.objects.count() == Payment.objects.count() == SandboxCharge.objects.count() == 1
    reused = order(ann[0], {**body, "plan": "month-20g"}, **{"Idempotency-Key": "k-1"})
    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency_key_reused"
    # Keys are scoped to the customer: Ben's "k-1" is his own.
    ben_token, _ben = make_customer("+8613700000003")
    assert order(ben_token, body, **{"Idempotency-Key": "k-1"}).status_code == 201
    assert Order.objects.count() == 2


def test_an_order_can_be_cancelled_while_awaiting_payment(
    actors: Actors, ann: tuple[str, Any]
) -> None:
    placed = order(
        ann[0], {"device": actors.device.iccid, "plan": "day-1g", "payment_method": "card"}
    ).json()
    response = post_json(app(ann[0]), f"/api/v1/orders/{placed['id']}/cancel", {})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "cancelled"
    assert body["payment"]["status"] == "cancelled"
    assert body["payment"]["checkout_url"] is None
    # A fulfilled order cannot be cancelled.
    paid = order(
        ann[0], {"device": actors.device.iccid, "plan": "day-1g", "payment_method": "card"}
    ).json()
    pay_on_page(paid["payment"]["checkout_url"])
    run_tasks()
    refused = post_json(app(ann[0]), f"/api/v1/orders/{paid['id']}/cancel", {})
    assert refused.status_code == 409
    assert refused.json()["code"] == "order_not_cancellable"
    assert Order.objects.get(pk=paid["id"]).status == OrderStatus.FULFILLED
    assert_ledger_clean()


def test_a_payg_plan_can_be_bought_by_card(actors: Actors, ann: tuple[str, Any]) -> None:
    from tests.payments_support import credit_of

    placed = order(
        ann[0], {"device": actors.device.iccid, "plan": "credit-50", "payment_method": "wechat_pay"}
    ).json()
    pay_on_page(placed["payment"]["checkout_url"])
    run_tasks()
    assert Order.objects.get(pk=placed["id"]).status == OrderStatus.FULFILLED
    assert credit_of(actors.device) == 5000
    actors.device.refresh_from_db()
    assert actors.device.payg
    assert_ledger_clean()


class DownProvider(SandboxProvider):
    retryable = True

    def create_payment(self, request: Any) -> Any:
        raise ProviderError("provider_unavailable", "timeout", retryable=type(self).retryable)


@pytest.mark.parametrize(
    ("retryable", "status", "code"),
    [(True, 503, "provider_unavailable"), (False, 422, "payment_refused")],
)
def test_a_provider_that_refuses_leaves_no_order(
    actors: Actors,
    ann: tuple[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    retryable: bool,
    status: int,
    code: str,
) -> None:
    from simtopup.payments import registry

    monkeypatch.setitem(registry.PROVIDER_CLASSES, "sandbox", "tests.test_app_orders.DownProvider")
    monkeypatch.setattr(DownProvider, "retryable", retryable)
    response = order(
        ann[0],
        {"device": actors.device.iccid, "plan": "day-1g", "payment_method": "card"},
        **{"Idempotency-Key": "down-1"},
    )
    assert response.status_code == status
    assert response.json()["code"] == code
    if retryable:
        assert response["Retry-After"] == "5"
    assert not Order.objects.exists()
    assert not Payment.objects.exists()
    # The provider is back; the same request with the same key is tried again only if the
    # first answer said to retry.
    monkeypatch.setitem(
        registry.PROVIDER_CLASSES, "sandbox", "simtopup.payments.providers.sandbox.SandboxProvider"
    )
    again = order(
        ann[0],
        {"device": actors.device.iccid, "plan": "day-1g", "payment_method": "card"},
        **{"Idempotency-Key": "down-1"},
    )
    assert again.status_code == (201 if retryable else status)
    assert Order.objects.count() == (1 if retryable else 0)


def test_a_route_to_a_provider_without_the_method_is_refused(
    actors: Actors, ann: tuple[str, Any], settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SandboxProvider, "methods", frozenset({"card"}))
    response = order(
        ann[0], {"device": actors.device.iccid, "plan": "day-1g", "payment_method": "alipay"}
    )
    assert response.status_code == 422
    assert response.json()["code"] == "payment_method_unavailable"
    assert not Order.objects.exists()
