"""One rule, ``catalog.pricing.get_plan(code, currency)``: a plan sold in another currency than
the seller's is not for sale at all — ``unknown_plan`` on the plan field — for a reseller's API
sale, the reseller portal's confirmation, a customer's order and an automatic top-up rule
alike."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from simtopup.catalog.models import Plan
from simtopup.catalog.pricing import get_plan
from simtopup.core.errors import DomainError
from simtopup.orders.models import Order
from simtopup.resellers.actions import create_reseller
from simtopup.usage.autotopup import set_rule
from simtopup.usage.models import AutoTopupRule
from tests.agent_support import log_in, make_staff
from tests.payments_support import app, make_customer, post_json, sandbox_direct
from tests.support import GB, Actors, float_of, iccid, reseller_client
from tests.test_web_agent import sell

__all__ = ["sandbox_direct"]


@pytest.fixture
def hkd_plan(actors: Actors) -> Plan:
    return Plan.objects.create(
        code="day-1g-hkd",
        kind="daily",
        name_en="day-1g-hkd",
        name_zh_hans="day-1g-hkd 简",
        name_zh_hant="day-1g-hkd 繁",
        data_bytes=1 * GB,
        validity_hours=24,
        price=600,
        currency="HKD",
    )


def test_get_plan_with_a_currency_finds_only_a_plan_in_it(hkd_plan: Plan) -> None:
    assert get_plan("day-1g-hkd") == hkd_plan
    assert get_plan("day-1g-hkd", "HKD") == hkd_plan
    with pytest.raises(DomainError) as raised:
        get_plan("day-1g-hkd", "CNY")
    assert raised.value.code == "unknown_plan"
    assert [(e.field, e.code) for e in raised.value.errors] == [("plan", "unknown_plan")]


def test_a_reseller_cannot_sell_a_plan_in_another_currency(actors: Actors, hkd_plan: Plan) -> None:
    response = post_json(
        reseller_client(actors.alice_key),
        "/reseller/v1/topups",
        {"device": actors.device.iccid, "plan": hkd_plan.code, "reference": "r1"},
    )
    assert response.status_code == 422, response.content
    body = response.json()
    assert body["code"] == "unknown_plan"
    assert [e["field"] for e in body["errors"]] == ["plan"]
    assert not Order.objects.exists()
    assert float_of(actors.alice) == 100000


def test_a_reseller_in_that_currency_can_sell_it(actors: Actors, hkd_plan: Plan) -> None:
    _reseller, key = create_reseller("Kowloon SIM", currency="HKD", initial_float=10000)
    response = post_json(
        reseller_client(key),
        "/reseller/v1/topups",
        {"device": actors.device.iccid, "plan": hkd_plan.code, "reference": "r1"},
    )
    assert response.status_code in (200, 201), response.content
    assert Order.objects.get().currency == "HKD"


def test_the_portal_does_not_offer_or_sell_a_plan_in_another_currency(
    actors: Actors, hkd_plan: Plan
) -> None:
    make_staff(actors.alice, "owner@alice.example", "owner")
    client = Client()
    assert log_in(client, "owner@alice.example").status_code == 302
    review = client.post("/agent/sell", {"device": iccid(1), "plan": hkd_plan.code})
    assert review.status_code == 400  # not among the plans offered
    assert f'value="{hkd_plan.code}"' not in review.content.decode()
    # A confirmation written by hand with it sells nothing and says why next to the plan.
    _review, form = sell(client, iccid(1))
    response = client.post("/agent/sell/confirm", {**form, "plan": hkd_plan.code})
    assert response.status_code == 422
    html = response.content.decode()
    assert "There is no such plan." in html[html.index('for="id_plan"') :]
    assert not Order.objects.exists()
    assert float_of(actors.alice) == 100000


def test_a_customer_cannot_order_a_plan_in_another_currency(
    actors: Actors, hkd_plan: Plan, sandbox_direct: Any
) -> None:
    token, _customer = make_customer("+8613700000001")
    response = post_json(
        app(token),
        "/api/v1/orders",
        {"device": actors.device.iccid, "plan": hkd_plan.code, "payment_method": "card"},
    )
    assert response.status_code == 422, response.content
    assert response.json()["code"] == "unknown_plan"
    assert not Order.objects.exists()


def test_an_automatic_top_up_rule_cannot_buy_a_plan_in_another_currency(
    actors: Actors, hkd_plan: Plan
) -> None:
    _token, ann = make_customer("+8613700000002")
    with pytest.raises(DomainError) as refused:
        set_rule(ann, actors.device, enabled=True, threshold_bytes=GB, plan_code=hkd_plan.code)
    assert (refused.value.code, [e.field for e in refused.value.errors]) == (
        "unknown_plan",
        ["plan"],
    )
    assert not AutoTopupRule.objects.exists()
