"""The lists customers poll cost the same statements whatever their length (no query per
row): the app's cards and orders, the website's cards and a card's page with its bundles."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from simtopup.accounts.models import Customer
from simtopup.devices.models import Device
from simtopup.ledger.models import BYTES, Account, AccountKind
from simtopup.usage.models import Bundle
from tests.payments_support import app, bind, make_customer, post_json, sandbox_direct
from tests.support import GB, Actors
from tests.web_support import browser

pytestmark = pytest.mark.usefixtures("sandbox_direct")
__all__ = ["sandbox_direct"]


def statements(client: Client, path: str) -> tuple[Any, int]:
    client.get(path)  # the first call records a token's use, prepares statements
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    assert response.status_code == 200, response.content
    return response, len(queries)


def give_bundle(device: Device, actors: Actors, hours: int) -> None:
    now = timezone.now()
    account = Account.objects.create(
        code=f"bundle:poll:{device.pk}:{hours}", kind=AccountKind.BUNDLE, unit=BYTES, balance=GB
    )
    Bundle.objects.create(
        device=device,
        plan=actors.plans["day-1g"],
        account=account,
        granted_bytes=GB,
        starts_at=now - timedelta(hours=1),
        expires_at=now + timedelta(hours=hours),
    )


def test_the_app_order_list_costs_the_same_for_one_order_as_for_five(actors: Actors) -> None:
    token, customer = make_customer("+8613700000001")
    client = app(token)
    counts = []
    for n, device in enumerate(actors.devices):
        bind(device, customer)
        body = {"device": device.iccid, "plan": "day-1g", "payment_method": "card"}
        assert post_json(client, "/api/v1/orders", body).status_code == 201
        if n in (0, 4):
            response, count = statements(client, "/api/v1/orders")
            assert len(response.json()["items"]) == n + 1
            counts.append(count)
    assert counts[0] == counts[1]


def test_the_app_card_list_costs_the_same_for_one_card_as_for_five(actors: Actors) -> None:
    token, customer = make_customer("+8613700000001")
    client = app(token)
    counts = []
    for n, device in enumerate(actors.devices):
        bind(device, customer)
        give_bundle(device, actors, 5 + n)
        if n in (0, 4):
            response, count = statements(client, "/api/v1/devices")
            assert [i["remaining_bytes"] for i in response.json()["items"]] == [GB] * (n + 1)
            counts.append(count)
    assert counts[0] == counts[1]


def test_the_websites_card_list_and_card_page_cost_the_same_whatever_their_length(
    actors: Actors,
) -> None:
    person = Customer.objects.create(phone="+8613700000002", language="en")
    client = browser(person)
    list_counts, page_counts = [], []
    first = actors.devices[0]
    for n, device in enumerate(actors.devices):
        bind(device, person)
        give_bundle(device, actors, 5 + n)
        give_bundle(first, actors, 50 + n)  # the first card's page lists one more bundle
        if n in (0, 4):
            response, count = statements(client, "/my/devices")
            cards = response.context["cards"]
            assert len(cards) == n + 1
            assert "0 MB" not in [c["remaining"] for c in cards]
            list_counts.append(count)
            response, count = statements(client, f"/my/devices/{first.pk}")
            assert len(response.context["bundles"]) == n + 2
            page_counts.append(count)
    assert list_counts[0] == list_counts[1]
    assert page_counts[0] == page_counts[1]
