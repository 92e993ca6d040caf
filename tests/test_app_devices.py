"""My cards in the app API (/api/v1/devices…) and the public plan list."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from datetime import timedelta
from typing import Any

import pytest
import segno
from django.test import Client
from django.utils import timezone

from simtopup.devices.binding import hash_pin
from simtopup.devices.esim import qr_code
from simtopup.devices.inventory import create_device
from simtopup.devices.models import Device
from simtopup.ledger.audit import audit
from simtopup.ledger.models import BYTES, Account, AccountKind
from simtopup.orders.models import Order
from simtopup.usage.models import Bundle
from tests.customer_support import app_client, login_customer, post_json
from tests.support import GB, MB, Actors, eid, iccid, imei, network_post
from tests.test_app_auth import assert_problem

LPA = "LPA:1$smdp.example.net$04386-AGYFT-A74Y8-3F815"
PIN = "4821 0937"  # the binding PIN, as printed with the card


@pytest.fixture
def actors(actors: Actors) -> Actors:
    """The shared actors, their cards printed with a binding PIN."""
    for device in actors.devices:
        Device.objects.filter(pk=device.pk).update(pin_hash=hash_pin(PIN))
        device.refresh_from_db()
    return actors


@pytest.fixture
def alice_app(actors: Actors) -> Client:
    token, _ = login_customer("+8613800138000")
    return app_client(token)


@pytest.fixture
def bob_app(actors: Actors) -> Client:
    token, _ = login_customer("+8613900139000")
    return app_client(token)


def bind(client: Client, device: str, proof: str = PIN, **extra: Any) -> Any:
    return post_json(client, "/api/v1/devices", {"device": device, "proof": proof, **extra})


def reseller_topup(alice: Client, device: Device, plan: str) -> None:
    response = post_json(
        alice,
        "/reseller/v1/topups",
        {"device": device.iccid, "plan": plan, "reference": f"{plan}-{time.monotonic_ns()}"},
    )
    assert response.status_code == 201, response.content


# --- binding -------------------------------------------------------------------------------


def test_it_binds_a_card_by_its_iccid(actors: Actors, alice_app: Client) -> None:
    device = actors.device
    response = bind(
        alice_app, " " + device.iccid[:6] + " " + device.iccid[6:] + "F", nickname="Kid"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    device.refresh_from_db()
    assert device.owner is not None
    assert device.owner.phone == "+8613800138000"
    assert device.bound_at is not None
    assert device.nickname == "Kid"
    assert body == {
        "id": device.pk,
        "kind": "esim",
        "device": device.masked,
        "iccid": device.iccid,
        "imei": None,
        "eid": device.eid,
        "serial": None,
        "nickname": "Kid",
        "status": "in_stock",
        "payg": False,
        "remaining_bytes": 0,
        "credit": {"amount": "0.00", "currency": "CNY"},
        "bound_at": body["bound_at"],
        "activated_at": None,
        "esim_activated_at": None,
    }
    assert body["bound_at"].endswith("Z")


def test_binding_my_own_card_again_is_harmless(actors: Actors, alice_app: Client) -> None:
    device = actors.device
    assert bind(alice_app, device.iccid).status_code == 201
    bound_at = Device.objects.get(pk=device.pk).bound_at
    again = bind(alice_app, device.eid, nickname="Mine")  # by another identifier
    assert again.status_code == 200, again.content
    assert again.json()["id"] == device.pk
    assert again.json()["nickname"] == "Mine"
    assert Device.objects.get(pk=device.pk).bound_at == bound_at


def test_it_binds_by_imei_eid_and_serial(actors: Actors, alice_app: Client) -> None:
    hotspot = create_device(kind="hotspot", imei=imei(7), serial="HS-0007", pin=PIN)
    sim = create_device(kind="sim", iccid=iccid(77), serial="SIM 77", pin=PIN)
    assert bind(alice_app, imei(7)).json()["id"] == hotspot.pk
    assert bind(alice_app, "SIM 77").json()["id"] == sim.pk
    assert bind(alice_app, actors.devices[2].eid).json()["id"] == actors.devices[2].pk
    assert Device.objects.filter(owner__phone="+8613800138000").count() == 3


def test_a_card_in_another_account_is_a_conflict(
    actors: Actors, alice_app: Client, bob_app: Client
) -> None:
    device = actors.device
    assert bind(alice_app, device.iccid, nickname="Alice's").status_code == 201
    before = Device.objects.values().get(pk=device.pk)
    body = assert_problem(
        bind(bob_app, device.iccid, nickname="Bob's"), 409, "device_bound_elsewhere"
    )
    assert body["errors"][0]["field"] == "device"
    assert Device.objects.values().get(pk=device.pk) == before


@pytest.mark.parametrize(
    ("identifier", "code"),
    [
        ("hello", "invalid_identifier"),
        (iccid(1)[:-1] + str((int(iccid(1)[-1]) + 1) % 10), "check_digit_mismatch"),
        (iccid(999), "unknown_device"),
        (eid(999), "unknown_device"),
    ],
)
def test_it_refuses_what_is_not_one_of_our_cards(
    actors: Actors, alice_app: Client, identifier: str, code: str
) -> None:
    assert_problem(bind(alice_app, identifier), 422, code)
    assert not Device.objects.filter(owner__isnull=False).exists()


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"device": "", "proof": PIN},
        {"device": 123, "proof": PIN},
        {"device": "x", "proof": PIN, "nickname": "n" * 61},
        {"device": "x", "proof": PIN, "owner": 1},
        {"device": "x"},
        {"device": "x", "proof": ""},
        {"device": "x", "proof": "  "},
        {"device": "x", "proof": 123456},
        {"device": "x", "proof": "1" * 256},
    ],
)
def test_it_refuses_bad_bind_bodies(actors: Actors, alice_app: Client, body: Any) -> None:
    assert_problem(post_json(alice_app, "/api/v1/devices", body), 422, "validation_error")
    assert not Device.objects.filter(owner__isnull=False).exists()


def test_devices_need_a_token(actors: Actors) -> None:
    anonymous = Client()
    assert_problem(bind(anonymous, actors.device.iccid), 401, "unauthenticated")
    assert_problem(anonymous.get("/api/v1/devices"), 401, "unauthenticated")
    assert_problem(
        anonymous.get(f"/api/v1/devices/{actors.device.pk}/balance"), 401, "unauthenticated"
    )
    assert not Device.objects.filter(owner__isnull=False).exists()


# --- my cards ------------------------------------------------------------------------------


def test_it_lists_my_cards_newest_first_by_cursor(
    actors: Actors, alice_app: Client, bob_app: Client
) -> None:
    for device in actors.devices[:3]:
        assert bind(alice_app, device.iccid).status_code == 201
    assert bind(bob_app, actors.devices[3].iccid).status_code == 201
    first = alice_app.get("/api/v1/devices?limit=2").json()
    assert [d["id"] for d in first["items"]] == [actors.devices[2].pk, actors.devices[1].pk]
    assert first["next_cursor"]
    second = alice_app.get(f"/api/v1/devices?limit=2&cursor={first['next_cursor']}").json()
    assert [d["id"] for d in second["items"]] == [actors.devices[0].pk]
    assert second["next_cursor"] is None
    assert [d["id"] for d in bob_app.get("/api/v1/devices").json()["items"]] == [
        actors.devices[3].pk
    ]
    assert_problem(alice_app.get("/api/v1/devices?cursor=%%%"), 422, "invalid_cursor")
    assert_problem(alice_app.get("/api/v1/devices?limit=0"), 422, "validation_error")


def test_it_renames_and_unbinds_my_card(actors: Actors, alice_app: Client, bob_app: Client) -> None:
    device = actors.device
    device_id = bind(alice_app, device.iccid).json()["id"]
    response = alice_app.patch(
        f"/api/v1/devices/{device_id}", data={"nickname": "Travel"}, content_type="application/json"
    )
    assert response.status_code == 200
    assert response.json()["nickname"] == "Travel"
    assert alice_app.get(f"/api/v1/devices/{device_id}").json()["nickname"] == "Travel"
    assert alice_app.delete(f"/api/v1/devices/{device_id}").status_code == 204
    device.refresh_from_db()
    assert device.owner is None
    assert device.bound_at is None
    assert device.nickname == ""
    assert_problem(alice_app.get(f"/api/v1/devices/{device_id}"), 404, "not_found")
    assert_problem(alice_app.delete(f"/api/v1/devices/{device_id}"), 404, "not_found")
    # Now free: someone else may add it.
    assert bind(bob_app, device.iccid).status_code == 201


def test_another_customers_card_does_not_exist_for_me(
    actors: Actors, alice_app: Client, bob_app: Client
) -> None:
    device = actors.device
    Device.objects.filter(pk=device.pk).update(activation_code=LPA)
    device_id = bind(alice_app, device.iccid, nickname="Alice's").json()["id"]
    before = Device.objects.values().get(pk=device_id)
    for path in ["", "/esim", "/balance", "/credit"]:
        body = assert_problem(bob_app.get(f"/api/v1/devices/{device_id}{path}"), 404, "not_found")
        assert device.iccid not in str(body)
    assert_problem(bob_app.delete(f"/api/v1/devices/{device_id}"), 404, "not_found")
    assert_problem(
        bob_app.patch(
            f"/api/v1/devices/{device_id}", data={"nickname": "x"}, content_type="application/json"
        ),
        404,
        "not_found",
    )
    # …the same answer as for a card that does not exist at all.
    assert_problem(bob_app.get("/api/v1/devices/999999/balance"), 404, "not_found")
    assert Device.objects.values().get(pk=device_id) == before  # no activation recorded either


# --- eSIM ----------------------------------------------------------------------------------


def test_it_shows_the_esim_activation_code_and_qr(actors: Actors, alice_app: Client) -> None:
    device = actors.device
    Device.objects.filter(pk=device.pk).update(activation_code=LPA)
    device_id = bind(alice_app, device.iccid).json()["id"]
    response = alice_app.get(f"/api/v1/devices/{device_id}/esim")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["activation_code"] == LPA
    svg = ET.fromstring(body["qr_svg"])  # well-formed XML
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    # The QR encodes exactly the activation code: same matrix as an independent encoding.
    reference = segno.make(LPA, error="m", micro=False, boost_error=False)
    assert qr_code(LPA).matrix == reference.matrix
    assert not reference.is_micro
    width = (reference.symbol_size(scale=4, border=4))[0]
    assert svg.get("width") == str(width)
    # The drawn path covers exactly the dark modules of that matrix.
    path = next(e for e in svg.iter() if e.get("class") == "qrline")
    assert _dark_modules(path.get("d") or "", border=4) == {
        (x, y) for y, row in enumerate(reference.matrix) for x, v in enumerate(row) if v
    }
    activated = Device.objects.get(pk=device.pk).esim_activated_at
    assert activated is not None
    # Recorded once: a second look keeps the first time.
    assert alice_app.get(f"/api/v1/devices/{device_id}/esim").status_code == 200
    assert Device.objects.get(pk=device.pk).esim_activated_at == activated
    assert alice_app.get(f"/api/v1/devices/{device_id}").json()["esim_activated_at"]


def _dark_modules(d: str, border: int) -> set[tuple[int, int]]:
    """Decode segno's SVG path ("M x y.5 h n m dx dy h n …", unit = 1 module)."""
    import re

    cells: set[tuple[int, int]] = set()
    x = y = 0.0
    for op, args in re.findall(r"([MmHh])([-\d. ]+)", d):
        nums = [float(n) for n in args.split()]
        if op == "M":
            x, y = nums
        elif op == "m":
            x, y = x + nums[0], y + nums[1]
        elif op in "hH":
            length = nums[0] if op == "h" else nums[0] - x
            for i in range(int(length)):
                cells.add((int(x) + i - border, int(y - 0.5) - border))
            x += length
    return cells


def test_only_esims_have_an_activation_code(actors: Actors, alice_app: Client) -> None:
    sim = create_device(kind="sim", iccid=iccid(50), pin=PIN)
    sim_id = bind(alice_app, sim.iccid).json()["id"]
    assert_problem(alice_app.get(f"/api/v1/devices/{sim_id}/esim"), 409, "not_an_esim")
    esim_id = bind(alice_app, actors.device.iccid).json()["id"]  # no code on file
    assert_problem(alice_app.get(f"/api/v1/devices/{esim_id}/esim"), 409, "no_activation_code")
    assert not Device.objects.filter(esim_activated_at__isnull=False).exists()


# --- balance and credit --------------------------------------------------------------------


def _bundle(device: Device, plan: Any, *, balance: int, starts: Any, expires: Any) -> Bundle:
    account = Account.objects.create(
        code=f"bundle:test:{time.monotonic_ns()}",
        kind=AccountKind.BUNDLE,
        unit=BYTES,
        balance=balance,
    )
    return Bundle.objects.create(
        device=device,
        plan=plan,
        account=account,
        granted_bytes=GB,
        starts_at=starts,
        expires_at=expires,
    )


def test_it_shows_remaining_data_bundles_and_credit(
    actors: Actors, alice_app: Client, alice: Client
) -> None:
    device = actors.device
    device_id = bind(alice_app, device.iccid).json()["id"]
    reseller_topup(alice, device, "day-1g")
    reseller_topup(alice, device, "credit-50")
    assert audit() == []
    now = timezone.now()
    day = actors.plans["day-1g"]
    _bundle(device, day, balance=0, starts=now - timedelta(days=3), expires=now - timedelta(days=2))
    _bundle(
        device, day, balance=GB, starts=now + timedelta(days=1), expires=now + timedelta(days=2)
    )
    _bundle(
        device, day, balance=0, starts=now - timedelta(hours=1), expires=now + timedelta(hours=5)
    )
    _bundle(
        device, day, balance=0, starts=now - timedelta(days=60), expires=now - timedelta(days=59)
    )

    response = alice_app.get(f"/api/v1/devices/{device_id}/balance")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["device"] == device.masked
    assert body["remaining_bytes"] == GB
    assert body["credit"] == {"amount": "50.00", "currency": "CNY"}
    assert body["payg"] is True
    statuses = sorted((b["status"], b["remaining_bytes"]) for b in body["bundles"])
    assert statuses == [("active", GB), ("expired", 0), ("upcoming", GB), ("used_up", 0)]
    assert {b["plan"] for b in body["bundles"]} == {"day-1g"}
    assert all(b["granted_bytes"] == GB and b["expires_at"].endswith("Z") for b in body["bundles"])
    card = alice_app.get(f"/api/v1/devices/{device_id}").json()
    assert card["remaining_bytes"] == GB
    assert card["credit"]["amount"] == "50.00"
    assert card["status"] == "active"


def test_it_lists_the_credit_movements(actors: Actors, alice_app: Client, alice: Client) -> None:
    device = actors.device
    device_id = bind(alice_app, device.iccid).json()["id"]
    reseller_topup(alice, device, "credit-50")  # ¥46 from the agent + ¥4 discount = ¥50
    now = timezone.now()
    started = (now - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    ended = (now - timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    usage = network_post(
        Client(),
        "/network/v1/usage",
        {
            "records": [
                {
                    "id": "u1",
                    "iccid": device.iccid,
                    "bytes": 3 * MB - 5,
                    "started_at": started,
                    "ended_at": ended,
                }
            ]
        },
    )
    assert usage.status_code == 200, usage.content
    assert usage.json()["accepted"] == 1

    response = alice_app.get(f"/api/v1/devices/{device_id}/credit")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["credit"] == {"amount": "49.70", "currency": "CNY"}  # 3 started MB at ¥0.10
    items = body["items"]
    assert [(i["kind"], i["direction"], i["amount"]["amount"]) for i in items] == [
        ("payg_charge", "out", "-0.30"),
        ("topup", "in", "4.00"),
        ("topup", "in", "46.00"),
    ]
    assert body["next_cursor"] is None
    order = Order.objects.get(device=device)
    assert [i["order_id"] for i in items] == [None, order.pk, order.pk]
    assert [i["memo"] for i in items] == ["Pay-per-use data", "Credit top-up", "Credit top-up"]
    # The movements add up to the credit.
    total = sum(int(i["amount"]["amount"].replace(".", "")) for i in items)
    assert total == 4970
    page = alice_app.get(f"/api/v1/devices/{device_id}/credit?limit=2").json()
    rest = alice_app.get(
        f"/api/v1/devices/{device_id}/credit?limit=2&cursor={page['next_cursor']}"
    ).json()
    assert [i["id"] for i in page["items"] + rest["items"]] == [i["id"] for i in items]
    assert audit() == []


# --- plans ---------------------------------------------------------------------------------


def test_plans_are_public_and_named_in_my_language(actors: Actors) -> None:
    actors.plans["month-20g"].__class__.objects.filter(code="month-20g").update(active=False)
    response = Client().get("/api/v1/plans", headers={"Accept-Language": "zh-Hans"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert [p["code"] for p in body] == ["day-1g", "credit-50"]
    assert body[0] == {
        "code": "day-1g",
        "name": "day-1g 简",
        "kind": "daily",
        "data_bytes": GB,
        "validity_hours": 24,
        "price": {"amount": "5.00", "currency": "CNY"},
    }
    assert body[1]["kind"] == "payg"
    assert body[1]["data_bytes"] == 0
    hant = Client().get("/api/v1/plans", headers={"Accept-Language": "zh-TW"}).json()
    assert hant[0]["name"] == "day-1g 繁"
    assert (
        Client().get("/api/v1/plans", headers={"Accept-Language": "en"}).json()[0]["name"]
        == "day-1g"
    )


@pytest.mark.django_db(transaction=True)
def test_two_customers_binding_one_card_at_once_one_wins() -> None:
    from tests.test_concurrency import run_concurrently

    device = create_device(kind="esim", iccid=iccid(42), pin=PIN)
    alice_token, alice = login_customer("+8613800138000")
    bob_token, bob = login_customer("+8613900139000")
    jobs = [
        (lambda token=token: bind(app_client(token), device.iccid))
        for token in [alice_token, bob_token] * 5
    ]
    responses = run_concurrently(jobs, threads=10)
    device.refresh_from_db()
    assert device.owner_id in (alice.pk, bob.pk)
    winner = alice_token if device.owner_id == alice.pk else bob_token
    statuses = [
        (tok == winner, r.status_code)
        for tok, r in zip([alice_token, bob_token] * 5, responses, strict=True)
    ]
    assert sorted(s for w, s in statuses if w) == [200] * 4 + [201]
    assert [s for w, s in statuses if not w] == [409] * 5
