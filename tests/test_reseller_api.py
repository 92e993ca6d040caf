from __future__ import annotations

import pytest
from django.core.management import call_command

from simtopup.catalog.models import Plan
from simtopup.ledger.audit import audit
from simtopup.orders.models import Order, OrderStatus
from simtopup.resellers.actions import create_reseller, credit_float, wholesale_price
from simtopup.resellers.models import Reseller
from simtopup.usage.models import Bundle
from tests.support import GB, Actors, float_of, iccid, post_json, reseller_client


def topup(client, device: str, plan: str = "day-1g", reference: str = "ref-1", **headers: str):
    return post_json(
        client,
        "/reseller/v1/topups",
        {"device": device, "plan": plan, "reference": reference},
        **headers,
    )


def test_it_tops_up_a_device_from_the_float(actors: Actors, alice) -> None:
    response = topup(alice, actors.device.iccid)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "fulfilled"
    assert body["charged"] == {"amount": "4.60", "currency": "CNY"}  # 5.00 less 8 %
    assert body["float_balance"] == {"amount": "995.40", "currency": "CNY"}
    assert body["device"].startswith("8986")
    assert "•" in body["device"]
    assert body["receipt_no"].startswith("R")
    assert float_of(actors.alice) == 100000 - 460
    bundle = Bundle.objects.get(order_id=body["id"])
    assert bundle.granted_bytes == 1 * GB
    assert bundle.account.balance == 1 * GB
    assert audit() == []


def test_it_credits_pay_per_use_credit_at_face_value(actors: Actors, alice) -> None:
    response = topup(alice, actors.device.iccid, plan="credit-50")
    assert response.status_code == 201, response.content
    device = actors.device
    device.refresh_from_db()
    device.credit_account.refresh_from_db()
    assert device.payg is True
    assert device.credit_account.balance == 5000  # the card gets ¥50 …
    assert float_of(actors.alice) == 100000 - 4600  # … the agent pays ¥46
    assert audit() == []


def test_it_replays_the_same_idempotency_key(actors: Actors, alice) -> None:
    first = topup(alice, actors.device.iccid, **{"Idempotency-Key": "k1"})
    second = topup(alice, actors.device.iccid, **{"Idempotency-Key": "k1"})
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert Order.objects.count() == 1
    assert float_of(actors.alice) == 100000 - 460


def test_it_refuses_a_reused_key_with_another_body(actors: Actors, alice) -> None:
    topup(alice, actors.device.iccid, **{"Idempotency-Key": "k1"})
    other = topup(alice, actors.devices[1].iccid, reference="ref-2", **{"Idempotency-Key": "k1"})
    assert other.status_code == 422
    assert other.headers["Content-Type"] == "application/problem+json"
    assert other.json()["code"] == "idempotency_key_reused"
    assert Order.objects.count() == 1


def test_insufficient_float_charges_nothing(actors: Actors) -> None:
    bob = reseller_client(actors.bob_key)  # ¥50 float
    response = topup(bob, actors.device.iccid, plan="month-20g")
    assert response.status_code == 402
    assert response.json()["code"] == "insufficient_float"
    assert float_of(actors.bob) == 5000
    assert Order.objects.count() == 0
    assert audit() == []


@pytest.mark.parametrize(
    ("device", "code"),
    [
        ("hello", "invalid_identifier"),
        (iccid(1)[:-1] + str((int(iccid(1)[-1]) + 1) % 10), "check_digit_mismatch"),
        (iccid(999), "unknown_device"),
    ],
)
def test_identifier_errors(actors: Actors, alice, device: str, code: str) -> None:
    response = topup(alice, device)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == code
    assert body["errors"][0]["field"] == "device"
    assert Order.objects.count() == 0


def test_suspended_reseller_is_refused(actors: Actors, alice) -> None:
    call_command("reseller", "suspend", str(actors.alice.pk))
    response = topup(alice, actors.device.iccid)
    assert response.status_code == 403
    assert response.json()["code"] == "reseller_suspended"
    assert float_of(actors.alice) == 100000


def test_a_reseller_cannot_see_another_resellers_topup(actors: Actors, alice) -> None:
    order_id = topup(alice, actors.device.iccid).json()["id"]
    bob = reseller_client(actors.bob_key)
    assert bob.get(f"/reseller/v1/topups/{order_id}").status_code == 404
    assert alice.get(f"/reseller/v1/topups/{order_id}").json()["status"] == OrderStatus.FULFILLED


# --- pricing on discounts that do not divide evenly ----------------------------------------
# A discount rarely gives a whole number of fen: the wholesale price is rounded half up, once.
# Each case names the roundings it tells apart, so that floor, ceiling, half-down or
# half-even rounding (or none) fails at least one.


@pytest.mark.parametrize(
    ("retail", "discount_bps", "wholesale"),
    [
        (500, 1250, 438),  # 437.5: half up (floor and half-down give 437)
        (300, 1250, 263),  # 262.5: half up (half-even gives 262)
        (1003, 1000, 903),  # 902.7: up (floor gives 902)
        (1006, 1000, 905),  # 905.4: down (ceiling gives 906)
        (999, 333, 966),  # 965.7333…: up
        (5900, 1250, 5163),  # 5162.5: half up
        (1, 9999, 1),  # 0.0001: never free, at least one minor unit
        (1, 5000, 1),  # 0.5: half up to 1
        (999, 0, 999),  # no discount: retail
    ],
)
def test_the_wholesale_price_is_retail_less_the_discount_rounded_half_up(
    retail: int, discount_bps: int, wholesale: int
) -> None:
    plan = Plan(price=retail)
    plan.pk = 1
    reseller = Reseller(discount_bps=discount_bps)
    assert wholesale_price(reseller, plan, explicit={}) == wholesale


@pytest.mark.parametrize(
    ("plan", "discount_bps", "charged"),
    [("day-1g", 1250, 438), ("month-20g", 1250, 5163), ("day-1g", 333, 483)],
)
def test_a_sale_charges_the_rounded_wholesale_price(
    actors: Actors, plan: str, discount_bps: int, charged: int
) -> None:
    """Through the API, on both the general path and (PostgreSQL) the one-statement path."""
    reseller, key = create_reseller("Uneven", discount_bps=discount_bps, initial_float=100000)
    response = topup(reseller_client(key), actors.device.iccid, plan=plan)
    assert response.status_code == 201, response.content
    amount = f"{charged // 100}.{charged % 100:02d}"
    assert response.json()["charged"] == {"amount": amount, "currency": "CNY"}
    assert float_of(reseller) == 100000 - charged
    assert Order.objects.get(pk=response.json()["id"]).amount == charged
    assert audit() == []


# --- a replay is the stored answer, not the request run again -------------------------------


def test_a_replayed_sale_is_marked_and_charges_nothing_more(actors: Actors, alice) -> None:
    first = topup(alice, actors.device.iccid, **{"Idempotency-Key": "k-replay"})
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    after_first = float_of(actors.alice)
    again = topup(alice, actors.device.iccid, **{"Idempotency-Key": "k-replay"})
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert float_of(actors.alice) == after_first == 100000 - 460


def test_a_replayed_refusal_is_the_stored_refusal_even_once_the_float_would_do(
    actors: Actors,
) -> None:
    """Bob's float is too low; then it is topped up. The same key must still answer the
    stored 402 (a request run again would now succeed and charge)."""
    bob = reseller_client(actors.bob_key)
    body = {"device": actors.device.iccid, "plan": "month-20g", "reference": "r-402"}
    first = post_json(bob, "/reseller/v1/topups", body, **{"Idempotency-Key": "once-402"})
    assert first.status_code == 402
    assert "Idempotent-Replayed" not in first.headers
    credit_float(actors.bob, 100000, "the bank transfer arrived")
    again = post_json(bob, "/reseller/v1/topups", body, **{"Idempotency-Key": "once-402"})
    assert again.status_code == 402
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert float_of(actors.bob) == 5000 + 100000
    assert Order.objects.count() == 0
    # A new key is a new request: it runs, and now it sells.
    fresh = post_json(bob, "/reseller/v1/topups", body, **{"Idempotency-Key": "twice-402"})
    assert fresh.status_code == 201, fresh.content
    assert float_of(actors.bob) == 5000 + 100000 - 5900
