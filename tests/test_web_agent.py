"""The reseller portal (/agent/): staff log in, sell top-ups once, see only their own data."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from simtopup.orders.models import Order
from simtopup.resellers.actions import suspend
from simtopup.resellers.models import ApiKey, Reseller, WebhookDelivery
from tests.agent_support import PASSWORD, hidden, log_in, make_staff
from tests.support import Actors, float_of, iccid

LANGS = ["en", "zh-hans", "zh-hant"]


@pytest.fixture
def owner(actors: Actors) -> Client:
    make_staff(actors.alice, "owner@alice.example", "owner")
    client = Client()
    assert log_in(client, "owner@alice.example").status_code == 302
    return client


@pytest.fixture
def clerk(actors: Actors) -> Client:
    make_staff(actors.alice, "clerk@alice.example", "clerk")
    client = Client()
    assert log_in(client, "clerk@alice.example").status_code == 302
    return client


def sell_review(client: Client, device: str, plan: str = "day-1g") -> Any:
    return client.post("/agent/sell", {"device": device, "plan": plan})


def sell(client: Client, device: str, plan: str = "day-1g") -> tuple[Any, dict[str, str]]:
    """Step 1 → the confirmation page and the form it carries."""
    review = sell_review(client, device, plan)
    assert review.status_code == 200, review.content.decode()[:2000]
    html = review.content.decode()
    form = {name: hidden(html, name) for name in ("device", "plan", "reference")}
    return review, form


def main_text(response: Any) -> str:
    html = response.content.decode()
    return html[html.index("<main") : html.index("</main>")]


# --- logging in -------------------------------------------------------------------------------


def test_it_logs_staff_in_with_a_new_session_key(actors: Actors) -> None:
    make_staff(actors.alice, "owner@alice.example")
    client = Client()
    client.get("/agent/login")
    client.session.save()
    before = client.session.session_key
    response = log_in(client, "Owner@Alice.example")
    assert response.status_code == 302
    assert response["Location"] == "/agent/"
    assert client.session.session_key != before
    dashboard = client.get("/agent/")
    assert dashboard.status_code == 200
    assert actors.alice.code in dashboard.content.decode()
    assert "no-store" in dashboard["Cache-Control"]


def test_it_sends_visitors_to_the_login_page(db: None) -> None:
    response = Client().get("/agent/transactions")
    assert response.status_code == 302
    assert response["Location"] == "/agent/login?next=%2Fagent%2Ftransactions"


def test_it_refuses_a_wrong_password_without_saying_which_part_is_wrong(actors: Actors) -> None:
    make_staff(actors.alice, "owner@alice.example")
    client = Client()
    wrong = log_in(client, "owner@alice.example", "nope")
    nobody = log_in(client, "nobody@alice.example", "nope")
    assert wrong.status_code == nobody.status_code == 400
    assert "The email or password is not right." in wrong.content.decode()
    assert "The email or password is not right." in nobody.content.decode()
    assert client.get("/agent/").status_code == 302


def test_it_rate_limits_failed_logins_per_user_name(actors: Actors, settings: Any) -> None:
    settings.AGENT_LOGIN_USER_LIMITS = ["3/900"]  # from all addresses together
    make_staff(actors.alice, "owner@alice.example")
    for n in range(3):
        guess = log_in(Client(REMOTE_ADDR=f"192.0.2.{n}"), "owner@alice.example", "guess")
        assert guess.status_code == 400
    client = Client()
    blocked = log_in(client, "owner@alice.example")  # even the right password now waits
    assert blocked.status_code == 429
    assert "Too many failed attempts" in blocked.content.decode()
    assert client.get("/agent/").status_code == 302
    # Another user name from the same address is not blocked by this limit.
    make_staff(actors.alice, "clerk@alice.example", "clerk")
    assert log_in(client, "clerk@alice.example").status_code == 302


def test_it_rate_limits_failed_logins_per_user_name_from_one_address(
    actors: Actors, settings: Any
) -> None:
    make_staff(actors.alice, "owner@alice.example")
    stranger = Client(REMOTE_ADDR="203.0.113.9")
    for _ in range(5):  # SIMTOPUP_AGENT_LOGIN_USER_IP_LIMITS: 5 a quarter-hour
        assert log_in(stranger, "owner@alice.example", "guess").status_code == 400
    assert log_in(stranger, "owner@alice.example").status_code == 429
    assert log_in(Client(REMOTE_ADDR="203.0.113.10"), "owner@alice.example").status_code == 302


def test_it_rate_limits_failed_logins_per_ip(actors: Actors, settings: Any) -> None:
    settings.AGENT_LOGIN_IP_LIMITS = ["4/900"]
    make_staff(actors.alice, "owner@alice.example")
    client = Client(REMOTE_ADDR="203.0.113.9")
    for n in range(4):
        assert log_in(client, f"guess{n}@alice.example", "guess").status_code == 400
    assert log_in(client, "owner@alice.example").status_code == 429
    assert log_in(Client(REMOTE_ADDR="203.0.113.10"), "owner@alice.example").status_code == 302


def test_a_user_who_is_not_reseller_staff_gets_no_access(actors: Actors) -> None:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("ops@operator.example", password=PASSWORD)
    client = Client()
    refused = log_in(client, "ops@operator.example")
    assert refused.status_code == 403
    assert "no access to the reseller portal" in refused.content.decode()
    client.force_login(user)  # e.g. logged in to the operator console
    assert client.get("/agent/").status_code == 403
    assert client.get("/agent/sell").status_code == 403


def test_the_first_login_must_choose_a_new_password(actors: Actors) -> None:
    out = io.StringIO()
    call_command(
        "reseller", "staff", "add", str(actors.alice.pk), "--email", "new@alice.example", stdout=out
    )
    printed = out.getvalue()
    temporary = re.search(r'"temporary_password": "([^"]+)"', printed).group(1)  # type: ignore[union-attr]
    assert "/agent/login" in printed
    client = Client()
    assert log_in(client, "new@alice.example", temporary).status_code == 302
    assert client.get("/agent/sell")["Location"] == "/agent/password"
    short = client.post("/agent/password", {"new_password1": "x", "new_password2": "x"})
    assert short.status_code == 400
    assert 'class="errorlist"' in short.content.decode()
    done = client.post("/agent/password", {"new_password1": PASSWORD, "new_password2": PASSWORD})
    assert done.status_code == 302
    assert client.get("/agent/sell").status_code == 200  # still logged in
    assert log_in(Client(), "new@alice.example", temporary).status_code == 400
    assert log_in(Client(), "new@alice.example").status_code == 302


def test_the_staff_command_refuses_a_taken_email(actors: Actors) -> None:
    make_staff(actors.alice, "owner@alice.example")
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="member_exists"):
        call_command(
            "reseller", "staff", "add", str(actors.bob.pk), "--email", "OWNER@alice.example"
        )


def test_logging_out_ends_the_session(owner: Client) -> None:
    assert owner.post("/agent/logout").status_code == 302
    assert owner.get("/agent/").status_code == 302


def test_a_customer_and_a_staff_login_in_one_browser_log_out_separately(
    owner: Client,
) -> None:
    """One browser, two logins (a shop's owner who is also a customer): leaving the portal
    keeps the customer logged in, and the other way round; each log-out starts a new
    session."""
    from django.urls import reverse

    from simtopup.web.session import SESSION_KEY
    from tests.web_support import customer

    me = customer()
    session = owner.session
    session[SESSION_KEY] = me.pk
    session.save()
    devices = reverse("web:devices")
    assert owner.get(devices).status_code == 200
    assert owner.get("/agent/").status_code == 200

    before = owner.cookies["sessionid"].value
    assert owner.post("/agent/logout").status_code == 302
    assert owner.cookies["sessionid"].value != before
    assert owner.get("/agent/").status_code == 302  # staff: logged out
    assert owner.get(devices).status_code == 200  # customer: still in

    assert log_in(owner, "owner@alice.example").status_code == 302
    before = owner.cookies["sessionid"].value
    assert owner.post(reverse("web:logout")).status_code == 302
    assert owner.cookies["sessionid"].value != before
    assert owner.get(devices).status_code == 302  # customer: logged out
    assert owner.get("/agent/").status_code == 200  # staff: still in


def test_every_form_needs_the_csrf_token(actors: Actors) -> None:
    make_staff(actors.alice, "owner@alice.example")
    client = Client(enforce_csrf_checks=True)
    assert log_in(client, "owner@alice.example").status_code == 403
    client.force_login(actors.alice.members.get().user)
    for path, body in [
        ("/agent/sell", {"device": iccid(1), "plan": "day-1g"}),
        (
            "/agent/sell/confirm",
            {"device": iccid(1), "plan": "day-1g", "reference": "P" + "0" * 16},
        ),
        ("/agent/keys", {"name": "till"}),
        ("/agent/webhook", {"webhook_url": "https://example.com/h"}),
        ("/agent/logout", {}),
    ]:
        assert client.post(path, body).status_code == 403, path
    assert ApiKey.objects.filter(reseller=actors.alice).count() == 1
    assert not Order.objects.exists()


# --- selling --------------------------------------------------------------------------------


def test_it_confirms_then_sells_once_even_when_submitted_twice(
    owner: Client, actors: Actors
) -> None:
    before = float_of(actors.alice)
    review, form = sell(owner, iccid(1))
    page = main_text(review)
    shown = re.search(r'id="confirm-device">([^<]+)<', page).group(1)  # type: ignore[union-attr]
    assert shown.startswith("8986")
    assert "•" in shown
    assert iccid(1) not in shown
    assert "¥5.00" in page
    assert "¥4.60" in page
    assert float_of(actors.alice) == before  # nothing charged by the confirmation
    first = owner.post("/agent/sell/confirm", form)
    second = owner.post("/agent/sell/confirm", form)
    assert first.status_code == second.status_code == 302
    assert first["Location"] == second["Location"]
    order = Order.objects.get()
    assert order.reference == form["reference"]
    assert order.status == "fulfilled"
    assert float_of(actors.alice) == before - 460
    result = owner.get(first["Location"])
    assert order.receipt_no
    assert order.receipt_no in result.content.decode()
    printable = owner.get(f"/agent/topups/{order.pk}/print")
    assert printable.status_code == 200
    assert order.receipt_no in printable.content.decode()
    # A new confirmation is a new sale.
    _review, again = sell(owner, iccid(1))
    assert again["reference"] != form["reference"]
    assert owner.post("/agent/sell/confirm", again).status_code == 302
    assert Order.objects.count() == 2


def test_a_wrong_check_digit_is_shown_next_to_the_device_field(owner: Client) -> None:
    wrong = iccid(1)[:-1] + str((int(iccid(1)[-1]) + 1) % 10)
    response = sell_review(owner, wrong)
    assert response.status_code == 400
    html = main_text(response)
    field = html[html.index('for="id_device"') : html.index('for="id_plan"')]
    assert 'class="errorlist"' in field
    assert "check" in field.lower()
    assert not Order.objects.exists()


def test_an_empty_form_shows_each_error_next_to_its_field(owner: Client) -> None:
    response = owner.post("/agent/sell", {"device": "", "plan": "nope"})
    assert response.status_code == 400
    assert response.content.decode().count('class="errorlist"') == 2


def test_too_little_float_is_shown_and_nothing_is_charged(actors: Actors) -> None:
    make_staff(actors.bob, "owner@bob.example")
    client = Client()
    log_in(client, "owner@bob.example")
    _review, form = sell(client, iccid(2), "month-20g")  # ¥59.00 > ¥50.00 float
    response = client.post("/agent/sell/confirm", form)
    assert response.status_code == 402
    assert "The reseller float is too low for this top-up." in response.content.decode()
    assert not Order.objects.exists()
    assert float_of(actors.bob) == 5000


def test_a_tampered_confirmation_sells_nothing(owner: Client, actors: Actors) -> None:
    _review, form = sell(owner, iccid(1))
    response = owner.post("/agent/sell/confirm", {**form, "reference": "x"})
    assert response.status_code == 302
    assert response["Location"] == "/agent/sell"
    response = owner.post("/agent/sell/confirm", {**form, "plan": "gone"})
    assert response.status_code == 422
    assert not Order.objects.exists()


def test_a_suspended_reseller_can_look_but_not_sell(owner: Client, actors: Actors) -> None:
    _review, form = sell(owner, iccid(1))
    suspend(actors.alice)
    dashboard = owner.get("/agent/")
    assert dashboard.status_code == 200
    assert 'id="suspended"' in dashboard.content.decode()
    page = owner.get("/agent/sell").content.decode()
    assert 'id="suspended"' in page
    assert 'name="device"' not in page
    refused = owner.post("/agent/sell/confirm", form)
    assert refused.status_code == 403
    assert "suspended" in refused.content.decode()
    assert owner.post("/agent/sell", {"device": iccid(1), "plan": "day-1g"}).status_code == 400
    assert not Order.objects.exists()
    assert owner.get("/agent/transactions").status_code == 200
    assert owner.get("/agent/statement.csv").status_code == 200


def test_a_clerk_sells_but_cannot_manage_keys_or_the_webhook(clerk: Client, actors: Actors) -> None:
    _review, form = sell(clerk, iccid(1))
    assert clerk.post("/agent/sell/confirm", form).status_code == 302
    assert clerk.get("/agent/keys").status_code == 403
    assert clerk.post("/agent/keys", {"name": "mine"}).status_code == 403
    key = ApiKey.objects.get(reseller=actors.alice)
    assert clerk.post(f"/agent/keys/{key.pk}/revoke").status_code == 403
    assert clerk.post("/agent/webhook", {"webhook_url": "https://e.example/h"}).status_code == 403
    key.refresh_from_db()
    assert key.revoked_at is None
    assert ApiKey.objects.filter(reseller=actors.alice).count() == 1
    actors.alice.refresh_from_db()
    assert actors.alice.webhook_url == ""
    assert "/agent/keys" not in clerk.get("/agent/").content.decode()


# --- transactions and statement ---------------------------------------------------------------


def test_transactions_filter_and_paginate(owner: Client, actors: Actors, settings: Any) -> None:
    for n in (1, 2, 3):
        _review, form = sell(owner, iccid(n))
        owner.post("/agent/sell/confirm", form)
    orders = list(Order.objects.order_by("pk"))
    page = owner.get("/agent/transactions").content.decode()
    assert all(o.reference in page for o in orders)
    by_ref = owner.get("/agent/transactions", {"reference": orders[1].reference}).content.decode()
    assert orders[1].reference in by_ref
    assert orders[0].reference not in by_ref
    by_device = owner.get("/agent/transactions", {"device": iccid(3)[-6:]}).content.decode()
    assert orders[2].reference in by_device
    assert orders[1].reference not in by_device
    failed = owner.get("/agent/transactions", {"status": "failed"}).content.decode()
    assert 'id="no-rows"' in failed
    backwards = owner.get("/agent/transactions", {"since": "2026-02-02", "until": "2026-02-01"})
    assert backwards.status_code == 400
    html = backwards.content.decode()
    assert "The end date is before the start date." in html[html.index('for="id_until"') :]
    from simtopup.web import agent

    settings.DEBUG = False
    agent.PAGE_SIZE, old = 2, agent.PAGE_SIZE
    try:
        first = owner.get("/agent/transactions").content.decode()
        second = owner.get("/agent/transactions", {"page": 2}).content.decode()
    finally:
        agent.PAGE_SIZE = old
    assert orders[2].reference in first
    assert orders[0].reference not in first
    assert orders[0].reference in second
    assert "page=1" in second


def test_the_statement_csv_has_a_bom_and_a_running_balance(owner: Client, actors: Actors) -> None:
    _review, form = sell(owner, iccid(1), "credit-50")
    owner.post("/agent/sell/confirm", form)
    response = owner.get("/agent/statement.csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    body = response.content
    assert body.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0][:4] == ["Time", "Type", "Amount", "Float balance"]
    assert rows[1][1] == "Opening balance"
    assert rows[1][3] == "0.00"
    assert rows[2][2:4] == ["1000.00", "1000.00"]
    assert rows[3][2:4] == ["-46.00", "954.00"]
    assert rows[3][5] == form["reference"]
    assert rows[3][8:10] == ["50.00", "4.00"]  # retail price, margin (8 % off ¥50.00)
    assert rows[3][11] == Order.objects.get().receipt_no
    assert rows[-1][1] == "Closing balance"
    assert rows[-1][3] == "954.00"
    assert float_of(actors.alice) == 95400
    later = owner.get("/agent/statement.csv", {"since": "2099-01-01"})
    rows = list(csv.reader(io.StringIO(later.content.decode("utf-8-sig"))))
    assert rows[1][3] == "954.00"
    assert len(rows) == 3


def test_the_statement_headers_follow_the_language(owner: Client) -> None:
    response = owner.get("/agent/statement.csv", HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert response.status_code == 200
    assert response["Content-Language"] == "zh-hans"


# --- API keys and webhook ---------------------------------------------------------------------


def test_a_new_key_is_shown_once_and_works_until_revoked(owner: Client, actors: Actors) -> None:
    created = owner.post("/agent/keys", {"name": "till 2"})
    assert created.status_code == 201
    key = re.search(r'id="new-key-value">([^<]+)<', created.content.decode()).group(1)  # type: ignore[union-attr]
    row = ApiKey.objects.get(name="till 2", reseller=actors.alice)
    assert key.startswith(row.prefix)
    listing = owner.get("/agent/keys").content.decode()
    assert key not in listing
    assert row.prefix in listing
    api = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert api.get("/reseller/v1/float").json()["balance"]["amount"] == "1000.00"
    assert owner.post(f"/agent/keys/{row.pk}/revoke").status_code == 302
    assert api.get("/reseller/v1/float").status_code == 401
    assert "Revoked" in owner.get("/agent/keys").content.decode()


def test_a_key_needs_a_name(owner: Client, actors: Actors) -> None:
    response = owner.post("/agent/keys", {"name": ""})
    assert response.status_code == 400
    assert 'class="errorlist"' in response.content.decode()
    assert ApiKey.objects.filter(reseller=actors.alice).count() == 1


@pytest.fixture
def public_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every host name resolves to a public address (tests have no DNS)."""
    from ipaddress import ip_address

    from simtopup.resellers import webhooks

    monkeypatch.setattr(webhooks, "resolve", lambda host, port: [ip_address("93.184.215.14")])


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hooks",
        "ftp://example.com/hooks",
        "not a url",
        "https://user:pw@example.com/h",
        "http://10.0.0.1/h",
        "http://127.0.0.1:9000/h",
        "https://10.0.0.5/h",
        "https://127.0.0.1:5432/",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::ffff:127.0.0.1]/h",
    ],
)
def test_the_webhook_must_be_https_on_a_public_address(
    owner: Client, actors: Actors, url: str
) -> None:
    response = owner.post("/agent/webhook", {"webhook_url": url, "action": "save"})
    assert response.status_code == 422
    html = response.content.decode()
    field = html[html.index('for="id_webhook_url"') :]
    assert 'class="errorlist"' in field[: field.index("</div>")]
    actors.alice.refresh_from_db()
    assert actors.alice.webhook_url == ""
    assert actors.alice.webhook_secret == ""


@pytest.mark.usefixtures("public_dns")
def test_the_webhook_secret_is_shown_once_and_can_be_rotated(owner: Client, actors: Actors) -> None:
    saved = owner.post(
        "/agent/webhook", {"webhook_url": "https://hooks.example/st", "action": "save"}
    )
    assert saved.status_code == 200
    secret = re.search(r'id="new-secret-value">([^<]+)<', saved.content.decode()).group(1)  # type: ignore[union-attr]
    actors.alice.refresh_from_db()
    assert actors.alice.webhook_url == "https://hooks.example/st"
    assert actors.alice.webhook_secret == secret
    page = owner.get("/agent/webhook").content.decode()
    assert secret not in page
    assert secret[:10] in page
    # Changing the URL keeps the secret (and does not show it again).
    moved = owner.post(
        "/agent/webhook", {"webhook_url": "https://hooks2.example/st", "action": "save"}
    )
    assert moved.status_code == 302
    actors.alice.refresh_from_db()
    assert actors.alice.webhook_secret == secret
    rotated = owner.post("/agent/webhook", {"action": "rotate"})
    new = re.search(r'id="new-secret-value">([^<]+)<', rotated.content.decode()).group(1)  # type: ignore[union-attr]
    actors.alice.refresh_from_db()
    assert new != secret
    assert actors.alice.webhook_secret == new


def test_the_webhook_page_shows_the_resellers_own_delivery_log(
    owner: Client, actors: Actors
) -> None:
    now = timezone.now()

    def delivery(reseller: Reseller, n: int, reference: str, **fields: Any) -> WebhookDelivery:
        return WebhookDelivery.objects.create(
            reseller=reseller,
            event="topup.fulfilled",
            dedupe_key=f"topup.fulfilled:order:{n}",
            payload={"type": "topup.fulfilled", "data": {"id": n, "reference": reference}},
            **{"next_attempt_at": now, **fields},
        )

    page = owner.get("/agent/webhook").content.decode()
    assert 'id="no-deliveries"' in page
    done = delivery(
        actors.alice, 901, "SHOP-1", status="delivered", attempts=1, last_attempt_at=now
    )
    failing = delivery(
        actors.alice,
        902,
        "SHOP-2",
        attempts=2,
        last_attempt_at=now,
        next_attempt_at=now + timedelta(minutes=5),
        last_error="refused: hooks.example.com resolves to 10.0.0.5, which is not a public address",
    )
    theirs = delivery(actors.bob, 903, "BOB-REF-9", attempts=3, last_error="bob's own error")
    page = main_text(owner.get("/agent/webhook"))
    assert 'id="no-deliveries"' not in page
    mine = page[page.index(f'id="delivery-{failing.pk}"') :]
    row = mine[: mine.index("</tr>")]
    assert "topup.fulfilled" in row
    assert "SHOP-2" in row
    assert "/agent/topups/902" in row
    assert "Retrying" in row
    assert '<td data-label="Attempts">2</td>' in row
    assert "which is not a public address" in row
    assert "SHOP-1" in page
    assert "Delivered" in page
    assert page.index(f'id="delivery-{failing.pk}"') < page.index(f'id="delivery-{done.pk}"')
    # Another reseller's deliveries are never shown.
    assert f'id="delivery-{theirs.pk}"' not in page
    assert "BOB-REF-9" not in page
    assert "bob&#x27;s own error" not in page
    zh = owner.get("/agent/webhook", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "最近的发送记录" in zh
    assert "等待重试" in zh


# --- isolation --------------------------------------------------------------------------------


def test_another_resellers_data_is_never_visible(owner: Client, actors: Actors) -> None:
    make_staff(actors.bob, "owner@bob.example")
    bob = Client()
    log_in(bob, "owner@bob.example")
    _review, form = sell(bob, iccid(4))
    bob.post("/agent/sell/confirm", form)
    order = Order.objects.get(reseller=actors.bob)
    assert owner.get(f"/agent/topups/{order.pk}").status_code == 404
    assert owner.get(f"/agent/topups/{order.pk}/print").status_code == 404
    assert form["reference"] not in owner.get("/agent/transactions").content.decode()
    assert form["reference"] not in owner.get("/agent/statement.csv").content.decode()
    bob_key = ApiKey.objects.get(reseller=actors.bob)
    assert owner.post(f"/agent/keys/{bob_key.pk}/revoke").status_code == 404
    bob_key.refresh_from_db()
    assert bob_key.revoked_at is None
    assert bob_key.prefix not in owner.get("/agent/keys").content.decode()
    # Alice's repeat of Bob's reference is her own, new sale.
    _review, mine = sell(owner, iccid(4))
    assert (
        owner.post("/agent/sell/confirm", {**mine, "reference": form["reference"]}).status_code
        == 302
    )
    assert Order.objects.filter(reseller=actors.alice).count() == 1


# --- every page in every language ----------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_every_page_renders_in_each_language(owner: Client, actors: Actors, lang: str) -> None:
    _review, form = sell(owner, iccid(1))
    owner.post("/agent/sell/confirm", form)
    order = Order.objects.get()
    headers = {"HTTP_ACCEPT_LANGUAGE": lang}
    pages = [
        "/agent/",
        "/agent/sell",
        "/agent/transactions",
        "/agent/keys",
        "/agent/webhook",
        "/agent/password",
        f"/agent/topups/{order.pk}",
        f"/agent/topups/{order.pk}/print",
    ]
    for path in pages:
        response = owner.get(path, **headers)
        assert response.status_code == 200, path
        html = response.content.decode()
        expected = {"en": 'lang="en"', "zh-hans": 'lang="zh-Hans"', "zh-hant": 'lang="zh-Hant"'}
        assert expected[lang] in html, path
    assert Client().get("/agent/login", **headers).status_code == 200
    assert sell_review(owner, iccid(2)).status_code == 200


def test_the_statement_quotes_cells_that_look_like_formulas(owner: Client, actors: Actors) -> None:
    from tests.support import post_json, reseller_client

    api = reseller_client(actors.alice_key)
    body = {"device": iccid(1), "plan": "day-1g", "reference": "=HYPERLINK(1)"}
    assert post_json(api, "/reseller/v1/topups", body).status_code == 201
    rows = list(
        csv.reader(io.StringIO(owner.get("/agent/statement.csv").content.decode("utf-8-sig")))
    )
    assert rows[3][5] == "'=HYPERLINK(1)"
    assert rows[3][2] == "-4.60"  # numbers stay numbers
