"""Bad input to the reseller API: a clear problem document and nothing changed."""

from __future__ import annotations

import json

import pytest

from simtopup.api.models import IdempotencyRecord
from simtopup.ledger.models import Transfer
from simtopup.orders.models import Order
from tests.support import Actors, float_of, post_json, reseller_client


def assert_nothing_changed(actors: Actors) -> None:
    assert Order.objects.count() == 0
    # Only the funding transfers of the actors exist.
    assert set(Transfer.objects.values_list("kind", flat=True)) == {"float_credit"}


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response.headers["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    assert body["type"].endswith(code)
    return body


def test_malformed_json(actors: Actors, alice) -> None:
    response = alice.post("/reseller/v1/topups", data="{not json", content_type="application/json")
    assert_problem(response, 400, "malformed_json")
    assert_nothing_changed(actors)


def test_json_that_is_not_an_object(actors: Actors, alice) -> None:
    response = alice.post("/reseller/v1/topups", data="[1, 2]", content_type="application/json")
    assert_problem(response, 400, "malformed_json")


def test_empty_body(actors: Actors, alice) -> None:
    response = alice.post("/reseller/v1/topups", data="", content_type="application/json")
    assert_problem(response, 400, "malformed_json")
    assert_nothing_changed(actors)


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"plan": "day-1g", "reference": "r"}, "device", "required"),
        ({"device": "x", "reference": "r"}, "plan", "required"),
        ({"device": "x", "plan": "day-1g"}, "reference", "required"),
        ({"device": 123, "plan": "day-1g", "reference": "r"}, "device", "wrong_type"),
        ({"device": "x", "plan": ["day-1g"], "reference": "r"}, "plan", "wrong_type"),
        (
            {"device": "x", "plan": "day-1g", "reference": "r", "amount": "1.00"},
            "amount",
            "unknown_field",
        ),
        ({"device": "", "plan": "day-1g", "reference": "r"}, "device", "too_short"),
        ({"device": "x", "plan": "day-1g", "reference": "r" * 101}, "reference", "too_long"),
    ],
)
def test_field_errors(actors: Actors, alice, body: dict, field: str, code: str) -> None:
    body = assert_problem(post_json(alice, "/reseller/v1/topups", body), 422, "validation_error")
    assert {"field": field, "code": code} in [
        {"field": e["field"], "code": e["code"]} for e in body["errors"]
    ]
    assert_nothing_changed(actors)


def test_unknown_plan(actors: Actors, alice) -> None:
    response = post_json(
        alice,
        "/reseller/v1/topups",
        {"device": actors.device.iccid, "plan": "nope", "reference": "r"},
    )
    body = assert_problem(response, 422, "unknown_plan")
    assert body["errors"][0]["field"] == "plan"
    assert_nothing_changed(actors)


def test_inactive_plan_is_unknown(actors: Actors, alice) -> None:
    actors.plans["day-1g"].active = False
    actors.plans["day-1g"].save(update_fields=["active"])
    response = post_json(
        alice,
        "/reseller/v1/topups",
        {"device": actors.device.iccid, "plan": "day-1g", "reference": "r"},
    )
    assert_problem(response, 422, "unknown_plan")


def test_device_not_rechargeable(actors: Actors, alice) -> None:
    device = actors.device
    device.status = "suspended"
    device.save(update_fields=["status"])
    response = post_json(
        alice, "/reseller/v1/topups", {"device": device.iccid, "plan": "day-1g", "reference": "r"}
    )
    assert_problem(response, 422, "device_not_rechargeable")
    assert_nothing_changed(actors)


def test_oversized_body(actors: Actors, alice) -> None:
    big = json.dumps({"device": "x" * (1024 * 1024 + 10), "plan": "day-1g", "reference": "r"})
    response = alice.post("/reseller/v1/topups", data=big, content_type="application/json")
    assert_problem(response, 413, "payload_too_large")
    assert_nothing_changed(actors)


@pytest.mark.parametrize(
    "header", ["", "Bearer", "Bearer sk_wrong", "Basic abc", "Bearer " + "x" * 300]
)
def test_wrong_api_key(actors: Actors, header: str) -> None:
    client = reseller_client("unused")
    response = client.post(
        "/reseller/v1/topups",
        data=json.dumps({"device": actors.device.iccid, "plan": "day-1g", "reference": "r"}),
        content_type="application/json",
        headers={"Authorization": header},
    )
    assert_problem(response, 401, "unauthenticated")
    assert_nothing_changed(actors)


def test_revoked_api_key(actors: Actors) -> None:
    from django.core.management import call_command

    key_id = actors.alice.api_keys.get().pk
    call_command("reseller", "key", "revoke", str(key_id))
    response = reseller_client(actors.alice_key).get("/reseller/v1/float")
    assert_problem(response, 401, "unauthenticated")


def test_idempotency_key_too_long(actors: Actors, alice) -> None:
    response = post_json(
        alice,
        "/reseller/v1/topups",
        {"device": actors.device.iccid, "plan": "day-1g", "reference": "r"},
        **{"Idempotency-Key": "k" * 256},
    )
    assert_problem(response, 400, "invalid_idempotency_key")
    assert_nothing_changed(actors)
    assert IdempotencyRecord.objects.count() == 0


def test_a_refused_request_replays_its_error(actors: Actors) -> None:
    """Same key + same body → the original response, errors included (402 here)."""
    bob = reseller_client(actors.bob_key)
    body = {"device": actors.device.iccid, "plan": "month-20g", "reference": "r"}
    first = post_json(bob, "/reseller/v1/topups", body, **{"Idempotency-Key": "once"})
    second = post_json(bob, "/reseller/v1/topups", body, **{"Idempotency-Key": "once"})
    assert_problem(first, 402, "insufficient_float")
    assert second.status_code == 402
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert float_of(actors.bob) == 5000


def test_keys_are_scoped_to_the_caller(actors: Actors, alice) -> None:
    body = {"device": actors.device.iccid, "plan": "day-1g", "reference": "r"}
    first = post_json(alice, "/reseller/v1/topups", body, **{"Idempotency-Key": "shared"})
    other = post_json(
        reseller_client(actors.bob_key),
        "/reseller/v1/topups",
        body,
        **{"Idempotency-Key": "shared"},
    )
    assert first.status_code == other.status_code == 201
    assert first.json()["id"] != other.json()["id"]


def test_duplicate_reference_with_a_new_key(actors: Actors, alice) -> None:
    body = {"device": actors.device.iccid, "plan": "day-1g", "reference": "sale-1"}
    assert post_json(alice, "/reseller/v1/topups", body).status_code == 201
    again = post_json(alice, "/reseller/v1/topups", body)
    assert_problem(again, 409, "duplicate_reference")
    assert Order.objects.count() == 1


def test_invalid_cursor(actors: Actors, alice) -> None:
    assert_problem(alice.get("/reseller/v1/topups?cursor=!!!"), 422, "invalid_cursor")


def test_limit_out_of_range(actors: Actors, alice) -> None:
    assert_problem(alice.get("/reseller/v1/topups?limit=0"), 422, "validation_error")
    assert_problem(alice.get("/reseller/v1/topups?limit=1000"), 422, "validation_error")


def test_unknown_topup_id(actors: Actors, alice) -> None:
    assert_problem(alice.get("/reseller/v1/topups/999999"), 404, "not_found")


def test_problem_detail_in_the_requests_language(actors: Actors, alice) -> None:
    response = alice.post(
        "/reseller/v1/topups",
        data=json.dumps({"device": "hello", "plan": "day-1g", "reference": "r"}),
        content_type="application/json",
        headers={"Accept-Language": "zh-Hans"},
    )
    body = assert_problem(response, 422, "invalid_identifier")
    assert any("\u4e00" <= ch <= "\u9fff" for ch in body["detail"]), body["detail"]
    assert any("\u4e00" <= ch <= "\u9fff" for ch in body["title"]), body["title"]
