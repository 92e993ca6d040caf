"""The Airalo-compatible partner API, ``/partner/v2/`` (docs/api.md).

The test that counts drives the unmodified official ``airalo-sdk`` against a live server
(only its base URL constant pointed at it); the others call each endpoint directly for every
refusal, and hold a partner sale equal to a ``/reseller/v1/topups`` sale, ledger and all.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from airalo import Airalo
from airalo.constants.api_constants import ApiConstants
from airalo.exceptions.airalo_exception import AiraloException, APIError
from airalo.helpers.signature import Signature
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from simtopup.devices.inventory import create_device
from simtopup.devices.models import DeviceStatus
from simtopup.ledger.audit import audit
from simtopup.ledger.models import Transfer
from simtopup.orders.models import Channel, Order, OrderStatus
from simtopup.resellers.actions import create_reseller, suspend
from simtopup.resellers.models import PartnerCredential, PartnerToken, Reseller
from simtopup.resellers.partner_access import create_credential
from simtopup.usage.models import Bundle
from tests.support import GB, Actors, eid, float_of, iccid, post_json, reseller_client

BASE = "/partner/v2/"


def credentials(reseller: Reseller) -> dict[str, str]:
    made = create_credential(reseller, "test")
    return {"client_id": made.client_id, "client_secret": made.client_secret}


def bad_check_digit(number: str) -> str:
    return number[:-1] + str((int(number[-1]) + 1) % 10)


# --- the official SDK against a live server ---------------------------------------------------


@pytest.fixture
def sdk_url(live_server: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """Airalo's SDK, unmodified, but for its production URL: our live test server."""
    url = f"{live_server.url}{BASE}"
    monkeypatch.setattr(ApiConstants, "PRODUCTION_URL", url)
    return url


def sdk_error(exc: APIError) -> tuple[int, dict[str, Any]]:
    """The status and body an SDK error reports (``…status code: N, response: {…}``)."""
    text = str(exc)
    status = int(text.split("status code: ")[1].split(",")[0])
    return status, json.loads(text.split("response: ", 1)[1])


@pytest.mark.django_db(transaction=True)
def test_the_official_sdk_sells_a_topup_and_reads_the_card(sdk_url: str) -> None:
    actors = Actors()
    card = actors.device.iccid
    airalo = Airalo(credentials(actors.alice))
    assert airalo.get_access_token()

    nested = airalo.get_all_packages()
    assert nested is not None
    [destination] = nested["data"]
    [operator] = destination["operators"]
    by_id = {p["id"]: p for p in operator["packages"]}
    assert set(by_id) == {"day-1g", "month-20g", "credit-50"}
    day = by_id["day-1g"]
    assert (day["type"], day["price"], day["net_price"]) == ("topup", 5, 4.6)  # 8 % off
    assert (day["amount"], day["day"], day["data"]) == (1024, 1, "1 GB")
    assert day["prices"]["net_price"] == {"CNY": 4.6}
    flat = airalo.get_all_packages(flat=True)
    assert flat is not None
    assert {p["package_id"]: p["net_price"] for p in flat["data"]}["month-20g"] == 54.28

    offered = airalo.get_sim_topups(card)
    assert offered is not None
    assert {p["id"] for p in offered["data"]} == set(by_id)

    sold = airalo.topup("day-1g", card)
    assert sold is not None
    order = sold["data"]
    assert sold["meta"] == {"message": "success"}
    assert (order["package_id"], order["type"], order["quantity"]) == ("day-1g", "topup", 1)
    assert (order["price"], order["net_price"], order["currency"]) == (5, 4.6, "CNY")
    assert order["status"] == "fulfilled"
    assert order["float_balance"] == {"amount": "995.40", "currency": "CNY"}
    assert order["code"].startswith("R")
    assert float_of(actors.alice) == 100000 - 460
    saved = Order.objects.get(pk=order["id"])
    assert (saved.channel, saved.status, saved.amount) == (Channel.RESELLER, "fulfilled", 460)

    usage = airalo.sim_usage(card)
    assert usage is not None
    assert usage["data"]["status"] == "ACTIVE"
    assert (usage["data"]["remaining"], usage["data"]["total"]) == (1024, 1024)
    assert usage["data"]["remaining_bytes"] == 1 * GB

    history = airalo.get_sim_package_history(card)
    assert history is not None
    [bought] = history["data"]
    assert bought["id"] == order["id"]
    assert bought["status"] == "ACTIVE"
    assert bought["package"]["id"] == "day-1g"
    assert bought["package"]["net_price"] == 4.6

    # A card that is not ours: Airalo's 404, which the SDK reports as no data.
    assert airalo.sim_usage(iccid(999)) is None
    # A card number with a wrong check digit: refused, nothing charged.
    with pytest.raises(APIError) as bad:
        airalo.topup("day-1g", bad_check_digit(iccid(9)))
    status, body = sdk_error(bad.value)
    assert status == 422
    assert body["code"] == 14
    assert "last digit doesn't match" in body["reason"]
    # A reseller whose float is empty: Airalo's "insufficient credit", nothing charged.
    carol, _key = create_reseller("Carol Cards")
    broke = Airalo(credentials(carol))
    with pytest.raises(APIError) as empty:
        broke.topup("day-1g", card)
    status, body = sdk_error(empty.value)
    assert (status, body["code"]) == (422, 11)
    assert "float" in body["reason"]
    assert float_of(carol) == 0
    assert float_of(actors.alice) == 100000 - 460
    assert Order.objects.count() == 1
    assert audit() == []


@pytest.mark.django_db(transaction=True)
def test_the_sdk_is_refused_a_token_for_wrong_or_revoked_credentials(sdk_url: str) -> None:
    actors = Actors()
    good = credentials(actors.alice)
    with pytest.raises(AiraloException, match="401"):
        Airalo({**good, "client_secret": "not-the-secret"})
    call_command("reseller", "oauth", "revoke", good["client_id"])
    with pytest.raises(AiraloException, match="Client authentication failed"):
        Airalo(good)


# --- each endpoint directly ----------------------------------------------------------------


class Partner:
    """A partner client of the Django test client: a token, signed top-ups."""

    def __init__(self, reseller: Reseller) -> None:
        self.creds = credentials(reseller)
        self.client = Client()
        self.token = get_token(self.client, **self.creds)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, **query: str) -> Any:
        return self.client.get(BASE + path, query, headers=self.headers())

    def topup(self, package_id: str, card: str, *, signature: str | None = None, **headers: str):
        payload = {"package_id": package_id, "iccid": card, "description": "test"}
        sign = Signature(self.creds["client_secret"]).get_signature(payload)
        return post_json(
            self.client,
            BASE + "orders/topups",
            payload,
            **self.headers(),
            **{"airalo-signature": sign if signature is None else signature},
            **headers,
        )


def get_token(client: Client, **form: str) -> str:
    response = client.post(BASE + "token", {**form, "grant_type": "client_credentials"})
    assert response.status_code == 200, response.content
    return response.json()["data"]["access_token"]


@pytest.fixture
def alice_partner(actors: Actors) -> Partner:
    return Partner(actors.alice)


def test_a_token_answers_in_airalos_shape(actors: Actors) -> None:
    creds = credentials(actors.alice)
    response = Client().post(BASE + "token", {**creds, "grant_type": "client_credentials"})
    assert response.status_code == 200
    body = response.json()
    assert body["meta"] == {"message": "success"}
    assert body["data"]["token_type"] == "Bearer"
    assert body["data"]["expires_in"] == 86400
    # Only the token's hash is kept.
    stored = PartnerToken.objects.get()
    assert body["data"]["access_token"] not in stored.token_hash


@pytest.mark.parametrize(
    ("form", "status", "data"),
    [
        ({"grant_type": "client_credentials"}, 422, {"client_id", "client_secret"}),
        ({"grant_type": "password"}, 422, {"grant_type"}),
        ({"grant_type": "client_credentials", "client_secret": "wrong"}, 401, []),
    ],
)
def test_a_token_is_refused(actors: Actors, form: dict[str, str], status: int, data: Any) -> None:
    creds = credentials(actors.alice)
    if form.get("grant_type") == "client_credentials" and "client_secret" not in form:
        creds = {}
    response = Client().post(BASE + "token", {**creds, **form})
    assert response.status_code == status
    body = response.json()
    if status == 401:
        assert body == {"data": [], "meta": {"message": "Client authentication failed"}}
    else:
        assert body["meta"]["message"] == "the parameter is invalid"
        assert set(body["data"]) == data


def test_calls_without_a_live_token_are_401(actors: Actors, alice_partner: Partner) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
        response = Client().get(BASE + "packages", {"include": "topup"}, headers=headers)
        assert response.status_code == 401
        assert response.json()["data"] == []
        assert "Authentication failed" in response.json()["meta"]["message"]
    assert alice_partner.get("packages", include="topup").status_code == 200


def test_an_expired_token_is_401_and_goes_with_the_next_one(
    actors: Actors, alice_partner: Partner
) -> None:
    PartnerToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert alice_partner.get("packages", include="topup").status_code == 401
    alice_partner.token = get_token(alice_partner.client, **alice_partner.creds)
    assert alice_partner.get("packages", include="topup").status_code == 200
    assert PartnerToken.objects.count() == 1


def test_the_cli_refuses_an_unknown_reseller_or_client(db: None) -> None:
    with pytest.raises(CommandError, match="no reseller"):
        call_command("reseller", "oauth", "create", "999")
    with pytest.raises(CommandError, match="no active partner credential"):
        call_command("reseller", "oauth", "revoke", "nope")
    assert PartnerCredential.objects.count() == 0


def test_revoking_credentials_ends_their_tokens_at_once(
    actors: Actors, alice_partner: Partner, capsys: pytest.CaptureFixture[str]
) -> None:
    client_id = alice_partner.creds["client_id"]
    call_command("reseller", "oauth", "revoke", client_id)
    assert json.loads(capsys.readouterr().out) == {"client_id": client_id, "revoked": True}
    assert alice_partner.get("packages", include="topup").status_code == 401
    response = alice_partner.topup("day-1g", actors.device.iccid)
    assert response.status_code == 401
    row = PartnerCredential.objects.get(client_id=client_id)
    assert row.revoked_at is not None
    assert row.revoked_by.startswith("cli:")
    assert float_of(actors.alice) == 100000


def test_the_cli_makes_credentials_once_and_lists_them(
    actors: Actors, capsys: pytest.CaptureFixture[str]
) -> None:
    call_command("reseller", "oauth", "create", str(actors.alice.pk))
    made = json.loads(capsys.readouterr().out)
    assert set(made) == {"client_id", "client_secret"}
    assert get_token(Client(), **made)
    row = PartnerCredential.objects.get(client_id=made["client_id"])
    assert row.created_by.startswith("cli:")
    assert made["client_secret"] not in (row.secret_hash + row.secret_encrypted)
    call_command("reseller", "oauth", "list", str(actors.alice.pk))
    listed = json.loads(capsys.readouterr().out)
    assert listed["client_id"] == made["client_id"]
    assert "client_secret" not in listed
    assert listed["revoked_at"] is None


def test_a_suspended_reseller_is_refused(actors: Actors, alice_partner: Partner) -> None:
    suspend(actors.alice)
    response = alice_partner.topup("day-1g", actors.device.iccid)
    assert response.status_code == 403
    assert response.json() == {
        "data": [],
        "meta": {"message": "This reseller account is suspended."},
    }
    assert alice_partner.get("packages", include="topup").status_code == 403
    assert float_of(actors.alice) == 100000
    assert Order.objects.count() == 0


@pytest.mark.parametrize("signature", ["", "0" * 128, "wrong"])
def test_a_topup_needs_the_right_signature(
    actors: Actors, alice_partner: Partner, signature: str
) -> None:
    response = alice_partner.topup("day-1g", actors.device.iccid, signature=signature)
    assert response.status_code == 401
    assert "airalo-signature" in response.json()["meta"]["message"]
    assert Order.objects.count() == 0
    assert float_of(actors.alice) == 100000


def test_a_signature_made_with_another_partners_secret_is_refused(
    actors: Actors, alice_partner: Partner
) -> None:
    other = credentials(actors.bob)["client_secret"]
    payload = {"package_id": "day-1g", "iccid": actors.device.iccid, "description": "test"}
    response = alice_partner.topup(
        "day-1g", actors.device.iccid, signature=Signature(other).get_signature(payload)
    )
    assert response.status_code == 401
    assert Order.objects.count() == 0


def test_a_signed_form_is_a_topup_too(actors: Actors, alice_partner: Partner) -> None:
    form = {"package_id": "day-1g", "iccid": actors.device.iccid}
    response = alice_partner.client.post(
        BASE + "orders/topups",
        form,
        headers={
            **alice_partner.headers(),
            "airalo-signature": Signature(alice_partner.creds["client_secret"]).get_signature(form),
        },
    )
    assert response.status_code == 200, response.content
    assert response.json()["data"]["description"] == f"Topup ({actors.device.iccid})"
    assert float_of(actors.alice) == 100000 - 460


def refused(response: Any, status: int = 422) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    assert Order.objects.count() == 0
    return response.json()


def test_an_unknown_package_is_an_invalid_package_id(
    actors: Actors, alice_partner: Partner
) -> None:
    body = refused(alice_partner.topup("no-such-plan", actors.device.iccid))
    assert body == {
        "data": {"package_id": "invalid topup package"},
        "meta": {"message": "the parameter is invalid"},
    }


def test_missing_fields_are_named(actors: Actors, alice_partner: Partner) -> None:
    body = refused(alice_partner.topup("", ""))
    assert set(body["data"]) == {"package_id", "iccid"}


def test_card_refusals_have_airalos_codes(actors: Actors, alice_partner: Partner) -> None:
    body = refused(alice_partner.topup("day-1g", bad_check_digit(actors.device.iccid)))
    assert body["code"] == 14
    stranger = iccid(777)  # valid, not ours
    body = refused(alice_partner.topup("day-1g", stranger))
    assert "not one of our cards" in body["data"]["iccid"]
    retired = create_device(kind="esim", iccid=iccid(778), eid=eid(778))
    retired.status = DeviceStatus.RETIRED
    retired.save(update_fields=["status"])
    body = refused(alice_partner.topup("day-1g", retired.iccid))
    assert body["code"] == 23
    assert float_of(actors.alice) == 100000


def test_too_little_float_is_insufficient_credit(actors: Actors) -> None:
    bob = Partner(actors.bob)  # ¥50
    body = refused(bob.topup("month-20g", actors.device.iccid))
    assert body["code"] == 11
    assert float_of(actors.bob) == 5000
    assert audit() == []


def test_an_idempotency_key_makes_one_sale(actors: Actors, alice_partner: Partner) -> None:
    first = alice_partner.topup("day-1g", actors.device.iccid, **{"Idempotency-Key": "k1"})
    again = alice_partner.topup("day-1g", actors.device.iccid, **{"Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 200
    assert first.json()["data"]["id"] == again.json()["data"]["id"]
    assert first.json()["data"]["float_balance"] == again.json()["data"]["float_balance"]
    other = alice_partner.topup("month-20g", actors.device.iccid, **{"Idempotency-Key": "k1"})
    assert other.status_code == 422
    assert other.json()["code"] == 43
    # Without a key, each request is a sale of its own (as on Airalo).
    alice_partner.topup("day-1g", actors.device.iccid)
    assert Order.objects.count() == 2
    assert float_of(actors.alice) == 100000 - 2 * 460


def test_a_partner_sale_is_the_reseller_api_sale(actors: Actors, alice_partner: Partner) -> None:
    """The same plan to two cards, once through each door: the same charge, order, bundle
    and ledger movements, and the float falls by the same amount each time."""
    api = post_json(
        reseller_client(actors.alice_key),
        "/reseller/v1/topups",
        {"device": actors.devices[1].iccid, "plan": "month-20g", "reference": "r1"},
    )
    assert api.status_code == 201, api.content
    after_api = float_of(actors.alice)
    partner = alice_partner.topup("month-20g", actors.devices[2].iccid)
    assert partner.status_code == 200, partner.content
    after_partner = float_of(actors.alice)
    assert 100000 - after_api == after_api - after_partner == 5428

    by_api = Order.objects.get(pk=api.json()["id"])
    by_partner = Order.objects.get(pk=partner.json()["data"]["id"])

    def sale(order: Order) -> tuple[Any, ...]:
        bundle = Bundle.objects.get(order=order)
        return (
            order.channel,
            order.status,
            order.reseller_id,
            order.plan_id,
            order.amount,
            order.retail_amount,
            order.currency,
            bundle.granted_bytes,
            bundle.expires_at - bundle.starts_at,
        )

    def movements(order: Order) -> list[tuple[Any, ...]]:
        rows = Transfer.objects.filter(idempotency_key__startswith=f"order:{order.pk}:").order_by(
            "pk"
        )
        return [(t.kind, t.amount, t.source.kind, t.destination.kind) for t in rows]

    assert sale(by_api) == sale(by_partner)
    assert movements(by_api) == movements(by_partner)
    assert len(movements(by_partner)) >= 2
    assert api.json()["charged"]["amount"] == "54.28"
    assert partner.json()["data"]["net_price"] == 54.28
    assert partner.json()["data"]["float_balance"] == {"amount": "891.44", "currency": "CNY"}
    assert audit() == []


def test_packages_filter_and_paginate_like_airalos(alice_partner: Partner) -> None:
    full = alice_partner.get("packages", include="topup").json()
    assert full["pricing"] == {"model": "net_pricing", "discount_percentage": 0}
    assert full["meta"]["last_page"] == 1
    assert full["meta"]["total"] == 1
    assert len(full["data"][0]["operators"][0]["packages"]) == 3
    # Our plans are top-ups to a card: without include=topup, or for a country, none.
    assert alice_partner.get("packages").json()["data"] == []
    assert (
        alice_partner.get("packages", include="topup", **{"filter[type]": "local"}).json()["data"]
        == []
    )
    assert alice_partner.get("packages", include="topup", page="2").json()["data"] == []
    for limit in ("x", "0", "²", "9" * 20):
        bad = alice_partner.get("packages", include="topup", limit=limit)
        assert bad.status_code == 422
        assert set(bad.json()["data"]) == {"limit"}


def test_prices_follow_the_resellers_own_price_list(actors: Actors) -> None:
    bob = Partner(actors.bob)  # no discount: net is retail
    day = next(
        p
        for p in bob.get("packages", include="topup").json()["data"][0]["operators"][0]["packages"]
        if p["id"] == "day-1g"
    )
    assert day["price"] == day["net_price"] == 5


@pytest.mark.parametrize("card", [iccid(999), "89%00", "x" * 300])
def test_a_card_not_in_inventory_is_not_found(alice_partner: Partner, card: str) -> None:
    for path in ("usage", "packages", "topups"):
        response = alice_partner.get(f"sims/{card}/{path}")
        assert response.status_code == 404
        assert response.json() == {
            "data": [],
            "meta": {"message": "messages.resource_not_found"},
        }


def test_history_shows_only_this_resellers_topups(actors: Actors, alice_partner: Partner) -> None:
    card = actors.device.iccid
    assert alice_partner.topup("day-1g", card).status_code == 200
    bob = Partner(actors.bob)
    assert bob.topup("day-1g", card).status_code == 200
    mine = alice_partner.get(f"sims/{card}/packages").json()["data"]
    assert len(mine) == 1
    assert mine[0]["package"]["net_price"] == 4.6
    theirs = bob.get(f"sims/{card}/packages").json()["data"]
    assert [h["package"]["net_price"] for h in theirs] == [5]
    usage = alice_partner.get(f"sims/{card}/usage").json()["data"]
    assert usage["total"] == 2048  # the card's data, whoever sold it


def test_other_paths_and_methods_answer_in_airalos_shape(alice_partner: Partner) -> None:
    missing = alice_partner.client.get("/partner/v2/orders")
    assert missing.status_code == 404
    assert missing.json()["meta"]["message"] == "messages.resource_not_found"
    assert alice_partner.client.get("/partner/v1/token").status_code == 404
    wrong = alice_partner.client.get(BASE + "token")
    assert wrong.status_code == 405
    assert wrong["Allow"] == "POST"
    assert wrong.json()["data"] == []


def test_a_crash_in_a_middleware_layer_answers_in_airalos_shape(
    alice_partner: Partner, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("django.middleware.locale.LocaleMiddleware.process_request", crash)
    response = Client(raise_request_exception=False).get(
        BASE + "packages", headers=alice_partner.headers()
    )
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == 53


def test_a_crash_answers_airalos_unexpected_error(
    alice_partner: Partner, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("simtopup.partner.views.price_list", crash)
    response = alice_partner.get("packages", include="topup")
    assert response.status_code == 500
    assert response.json()["code"] == 53
    assert response["Content-Type"] == "application/json"


def test_a_partner_sale_leaves_the_card_fulfilled(actors: Actors, alice_partner: Partner) -> None:
    response = alice_partner.topup("credit-50", actors.device.iccid)
    assert response.status_code == 200, response.content
    order = Order.objects.get(pk=response.json()["data"]["id"])
    assert order.status == OrderStatus.FULFILLED
    device = actors.device
    device.credit_account.refresh_from_db()
    assert device.credit_account.balance == 5000
    assert float_of(actors.alice) == 100000 - 4600


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=8,
)


@hypothesis_settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    payload=st.dictionaries(
        st.sampled_from(["package_id", "iccid", "description", "other"]), json_values, max_size=4
    )
)
def test_any_signed_body_is_answered_never_a_crash(
    actors: Actors, alice_partner: Partner, payload: dict[str, Any]
) -> None:
    signature = Signature(alice_partner.creds["client_secret"]).get_signature(payload) or "none"
    response = post_json(
        alice_partner.client,
        BASE + "orders/topups",
        payload,
        **alice_partner.headers(),
        **{"airalo-signature": signature},
    )
    assert response.status_code in {200, 401, 422}, response.content
    body = response.json()
    assert ("data" in body and "meta" in body) or set(body) == {"code", "reason"}
    assert float_of(actors.alice) == 100000 - 460 * Order.objects.count()
