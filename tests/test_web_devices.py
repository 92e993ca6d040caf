"""Website: my devices — list, bind by device ID, rename, unbind, balance, eSIM activation."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from simtopup.devices.binding import hash_pin
from simtopup.devices.models import Device
from simtopup.orders.customer import place_balance_order
from simtopup.usage.models import Bundle
from tests.payments_support import bind, give_credit
from tests.support import GB, Actors, iccid, imei
from tests.web_support import LANGUAGES, browser, csrf_token, customer, field_errors, text

PIN = "482109"  # the binding PIN printed with each of the actors' cards here


@pytest.fixture
def actors(actors: Actors) -> Actors:
    """The shared actors, their cards printed with a binding PIN."""
    for device in actors.devices:
        Device.objects.filter(pk=device.pk).update(pin_hash=hash_pin(PIN))
        device.refresh_from_db()
    return actors


@pytest.mark.parametrize(
    "path",
    [
        "/my/devices",
        "/my/devices/1",
        "/my/devices/1/esim",
        "/my/devices/1/credit",
        "/my/devices/1/remove",
        "/my/orders",
        "/my/orders.csv",
    ],
)
def test_it_sends_visitors_to_log_in_first(actors: Actors, path: str) -> None:
    response = browser().get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login?next=")


@pytest.mark.parametrize("language", LANGUAGES)
def test_it_lists_my_cards_with_their_identifiers_data_and_credit(
    actors: Actors, language: str
) -> None:
    me = customer(language=language)
    bind(actors.devices[0], me)
    Device.objects.filter(pk=actors.devices[0].pk).update(nickname="Mum's hotspot")
    bind(actors.devices[1], customer("+8613800138001"))  # someone else's
    give_credit(actors.devices[0], 1234, "test:credit")
    page = browser(me, language=language).get("/my/devices")
    assert page.status_code == 200
    body = text(page)
    assert "Mum&#x27;s hotspot" in body
    assert actors.devices[0].masked in body
    assert actors.devices[0].iccid in body
    assert actors.devices[0].eid in body
    assert "¥12.34" in body
    assert actors.devices[1].iccid not in body
    assert actors.devices[1].masked not in body
    assert 'name="device"' in body  # the bind form


def test_binding_by_the_printed_id_adds_the_card(actors: Actors) -> None:
    me = customer()
    client = browser(me)
    spaced = " ".join(actors.device.iccid[i : i + 4] for i in range(0, 20, 4))
    response = client.post("/my/devices", {"device": spaced, "proof": PIN, "nickname": "Travel"})
    assert response.status_code == 302
    assert response["Location"] == f"/my/devices/{actors.device.pk}"
    actors.device.refresh_from_db()
    assert (actors.device.owner, actors.device.nickname) == (me, "Travel")
    page = client.get(response["Location"])
    assert "The card is now in your account." in text(page)
    # Binding again is harmless, and the proof is not checked again.
    again = client.post(
        "/my/devices", {"device": actors.device.iccid, "proof": "other", "nickname": ""}
    )
    assert again.status_code == 302
    assert "already in your account" in text(client.get(again["Location"]))


@pytest.mark.parametrize(
    ("typed", "code_words"),
    [
        ("", "Enter the device ID"),
        ("89860100000000000019", "The last digit doesn't match"),
        (imei(1)[:-1] + str((int(imei(1)[-1]) + 1) % 10), "re-read the IMEI"),
        (iccid(777), "not one of our cards"),
        ("hello", "not a device ID we recognise"),
    ],
)
def test_identifier_errors_are_shown_next_to_the_field(
    actors: Actors, typed: str, code_words: str
) -> None:
    me = customer()
    response = browser(me).post("/my/devices", {"device": typed, "proof": PIN, "nickname": ""})
    assert response.status_code == 422
    errors = field_errors(response, "device")
    assert len(errors) == 1, errors
    assert code_words in errors[0], errors
    assert not Device.objects.filter(owner=me).exists()


def test_the_check_digit_error_is_translated(actors: Actors) -> None:
    wrong = actors.device.iccid[:-1] + str((int(actors.device.iccid[-1]) + 1) % 10)
    me = customer()
    english = field_errors(
        browser(me).post("/my/devices", {"device": wrong, "proof": PIN}), "device"
    )
    chinese = field_errors(
        browser(me, language="zh-hans").post("/my/devices", {"device": wrong, "proof": PIN}),
        "device",
    )
    assert "last digit doesn't match" in english[0]
    assert chinese[0].startswith("最后一位数字对不上")
    assert chinese != english


def test_a_card_in_another_account_cannot_be_bound(actors: Actors) -> None:
    other = customer("+8613800138001")
    bind(actors.device, other)
    response = browser(customer()).post(
        "/my/devices", {"device": actors.device.iccid, "proof": PIN}
    )
    assert response.status_code == 422
    assert "already in another account" in field_errors(response, "device")[0]
    actors.device.refresh_from_db()
    assert actors.device.owner == other


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_device_page_shows_each_bundle_as_a_bar_with_its_expiry(
    actors: Actors, language: str
) -> None:
    me = customer(time_zone="Asia/Shanghai")
    bind(actors.device, me)
    give_credit(actors.device, 1000, "test:credit")
    place_balance_order(me, actors.device, actors.plans["day-1g"])
    bundle = Bundle.objects.get()
    page = browser(me, language=language).get(f"/my/devices/{actors.device.pk}")
    assert page.status_code == 200
    body = text(page)
    assert f'<meter min="0" max="{1 * GB}" value="{1 * GB}"' in body
    local = timezone.localtime(bundle.expires_at, timezone=ZoneInfo("Asia/Shanghai"))
    assert local.strftime("%Y-%m-%d %H:%M") in body
    assert "¥5.00" in body  # the credit left
    assert 'style="' not in body  # CSP: no inline styles
    assert f"/my/devices/{actors.device.pk}/esim" in body
    assert f"/topup?device={actors.device.pk}" in body


def test_an_expired_bundle_shows_an_empty_bar(actors: Actors) -> None:
    me = customer()
    bind(actors.device, me)
    give_credit(actors.device, 1000, "test:credit")
    place_balance_order(me, actors.device, actors.plans["day-1g"])
    Bundle.objects.update(
        starts_at=timezone.now() - timedelta(days=2), expires_at=timezone.now() - timedelta(hours=1)
    )
    body = text(browser(me).get(f"/my/devices/{actors.device.pk}"))
    assert 'value="0"' in body
    assert "Expired" in body


def test_rename_and_unbind(actors: Actors) -> None:
    me = customer()
    bind(actors.device, me)
    client = browser(me)
    renamed = client.post(f"/my/devices/{actors.device.pk}/name", {"nickname": "Work"})
    assert renamed.status_code == 302
    actors.device.refresh_from_db()
    assert actors.device.nickname == "Work"
    too_long = client.post(f"/my/devices/{actors.device.pk}/name", {"nickname": "x" * 61})
    assert too_long.status_code == 422
    assert field_errors(too_long, "nickname")
    actors.device.refresh_from_db()
    assert actors.device.nickname == "Work"

    confirm = client.get(f"/my/devices/{actors.device.pk}/remove")
    assert confirm.status_code == 200
    assert "<form" in text(confirm)
    actors.device.refresh_from_db()
    assert actors.device.owner == me  # asking changes nothing
    removed = client.post(f"/my/devices/{actors.device.pk}/remove")
    assert removed.status_code == 302
    assert removed["Location"] == "/my/devices"
    actors.device.refresh_from_db()
    assert actors.device.owner is None
    assert actors.device.nickname == ""


def test_another_customers_card_is_not_found_everywhere(actors: Actors) -> None:
    owner = customer("+8613800138001")
    bind(actors.device, owner)
    stranger = browser(customer())
    pk = actors.device.pk
    for path in (
        f"/my/devices/{pk}",
        f"/my/devices/{pk}/esim",
        f"/my/devices/{pk}/credit",
        f"/my/devices/{pk}/remove",
        "/my/devices/999999",
    ):
        assert stranger.get(path).status_code == 404, path
    for path, data in (
        (f"/my/devices/{pk}/name", {"nickname": "mine now"}),
        (f"/my/devices/{pk}/remove", {}),
        (f"/my/devices/{pk}/auto-topup", {"threshold": "1", "unit": "GB", "plan": "day-1g"}),
    ):
        assert stranger.post(path, data).status_code == 404, path
    actors.device.refresh_from_db()
    assert (actors.device.owner, actors.device.nickname) == (owner, "")
    assert actors.device.esim_activated_at is None


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_esim_page_shows_the_qr_code_and_the_manual_code(actors: Actors, language: str) -> None:
    me = customer()
    Device.objects.filter(pk=actors.device.pk).update(
        activation_code="LPA:1$smdp.example.net$MATCH-1"
    )
    bind(actors.device, me)
    page = browser(me, language=language).get(f"/my/devices/{actors.device.pk}/esim")
    assert page.status_code == 200
    body = text(page)
    assert "<svg" in body
    assert "<path" in body
    assert "LPA:1$smdp.example.net$MATCH-1" in body
    assert 'nonce="' in body  # the copy button's script carries the nonce
    actors.device.refresh_from_db()
    assert actors.device.esim_activated_at is not None


def test_an_esim_without_a_code_says_so(actors: Actors) -> None:
    me = customer()
    bind(actors.device, me)
    page = browser(me).get(f"/my/devices/{actors.device.pk}/esim")
    assert page.status_code == 409
    assert "no activation code on file" in text(page)
    assert "<svg" not in text(page)


def test_csrf_is_enforced(actors: Actors) -> None:
    me = customer()
    bind(actors.device, me)
    client = browser(me, csrf=True)
    pk = actors.device.pk
    bind_form = {"device": actors.devices[1].iccid, "proof": PIN}
    assert client.post("/my/devices", bind_form).status_code == 403
    assert client.post(f"/my/devices/{pk}/name", {"nickname": "x"}).status_code == 403
    assert client.post(f"/my/devices/{pk}/remove").status_code == 403
    actors.device.refresh_from_db()
    assert actors.device.owner == me
    assert actors.device.nickname == ""
    token = csrf_token(client, "/my/devices")
    ok = client.post("/my/devices", {**bind_form, "csrfmiddlewaretoken": token})
    assert ok.status_code == 302
