from __future__ import annotations

import pytest
from django.core.management import call_command

from simtopup.ledger.audit import audit
from simtopup.orders.models import Order, OrderStatus
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
