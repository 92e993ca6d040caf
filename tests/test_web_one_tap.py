"""Website, one tap (issue 13, points 2 and 3): the card page and the device list lead with
remaining data, days left and "top up this card", identifiers behind "show ID"; "buy again"
(card page, history rows, alerts) lands on the confirmation pre-filled with that card and
plan; adding credit is a form of its own, amounts as buttons."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from django.test import Client

from simtopup.catalog.models import Plan
from simtopup.orders.customer import place_balance_order
from simtopup.orders.models import Order, Quote
from simtopup.usage.alerts import topup_link
from simtopup.usage.models import Alert
from simtopup.web.customer.devices import days_left
from tests.payments_support import (
    bind,
    give_credit,
    run_tasks,
    sandbox_direct,  # noqa: F401  (fixture)
)
from tests.support import Actors
from tests.web_support import LANGUAGES, browser, customer, query_of, text

pytestmark = pytest.mark.usefixtures("sandbox_direct")
SHANGHAI = ZoneInfo("Asia/Shanghai")


def again(client: Client, device_id: object, plan: str) -> tuple[str, str]:
    """Open the buy-again link; the confirmation page it lands on and its token."""
    response = client.get(f"/topup/confirm?device={device_id}&plan={plan}")
    assert response.status_code == 302, text(response)[:2000]
    assert response["Location"].startswith("/topup/confirm?c=")
    page = client.get(response["Location"])
    assert page.status_code == 200
    return text(page), query_of(response["Location"], "c")


def test_buy_again_lands_on_the_confirmation_with_that_card_and_plan(actors: Actors) -> None:
    me = customer()
    bind(actors.device, me)
    body, _token = again(browser(me), actors.device.pk, "month-20g")
    device = re.search(r'data-testid="device">([^<]*)', body)
    assert device
    assert device.group(1).startswith(actors.device.masked)
    assert "month-20g" in body
    assert re.search(r'data-testid="price">¥59.00<', body)
    assert actors.device.iccid not in body  # masked, as on every confirmation
    # The confirmation is the stored quote of the wizard's own step: the price locked.
    quote = Quote.objects.get()
    assert (quote.device_id, quote.plan.code, quote.amount) == (actors.device.pk, "month-20g", 5900)


def test_buy_again_then_pay_places_that_order(actors: Actors) -> None:
    me = customer()
    bind(actors.device, me)
    give_credit(actors.device, 2000, "test:again")
    client = browser(me)
    _body, token = again(client, actors.device.pk, "day-1g")
    paid = client.post("/topup/confirm", {"confirmation": token, "payment_method": "balance"})
    assert paid.status_code == 302
    order = Order.objects.get()
    assert (order.customer, order.device_id, order.plan.code, order.amount) == (
        me,
        actors.device.pk,
        "day-1g",
        500,
    )


def test_buy_again_for_someone_elses_card_is_a_plain_404(actors: Actors) -> None:
    me, other = customer(), customer(phone="+8613900139000")
    bind(actors.device, other)
    response = browser(me).get(f"/topup/confirm?device={actors.device.pk}&plan=day-1g")
    assert response.status_code == 404
    for wrong in ("abc", "9" * 40, ""):
        assert browser(me).get(f"/topup/confirm?device={wrong}&plan=day-1g").status_code == 404
    assert not Quote.objects.exists()


def test_buy_again_asks_a_visitor_to_log_in_first(actors: Actors) -> None:
    response = browser().get(f"/topup/confirm?device={actors.device.pk}&plan=day-1g")
    assert response.status_code == 302
    assert response["Location"].startswith("/login?next=")
    assert "%2Ftopup%2Fconfirm%3Fdevice%3D" in response["Location"]


def test_buy_again_with_a_plan_no_longer_on_sale_shows_the_cards_plans(actors: Actors) -> None:
    me = customer()
    bind(actors.device, me)
    Plan.objects.filter(code="month-20g").update(active=False)
    response = browser(me).get(f"/topup/confirm?device={actors.device.pk}&plan=month-20g")
    assert response.status_code == 302
    assert response["Location"] == f"/topup?device={actors.device.pk}"
    assert not Quote.objects.exists()


def test_a_confirmation_without_anything_still_says_it_expired(actors: Actors) -> None:
    assert browser(customer()).get("/topup/confirm")["Location"] == "/topup"


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_card_page_leads_with_data_days_left_and_top_up(actors: Actors, language: str) -> None:
    me = customer(language=language)
    bind(actors.device, me)
    give_credit(actors.device, 2000, "test:page")
    place_balance_order(me, actors.device, actors.plans["day-1g"])
    run_tasks()
    body = text(browser(me, language=language).get(f"/my/devices/{actors.device.pk}"))
    remaining = body.index('data-testid="remaining"')
    days = body.index('data-testid="days-left"')
    top_up = body.index('data-testid="topup"')
    ids = body.index('data-testid="ids"')
    assert remaining < days < top_up < ids  # the identifiers come after, folded
    assert re.search(r'data-testid="remaining">1 GB<', body)
    words = {"en": "1 day left", "zh-hans": "还剩 1 天", "zh-hant": "還剩 1 天"}
    last = {"en": "Last day today", "zh-hans": "今天是最后一天", "zh-hant": "今天是最後一天"}
    # A 24-hour pass ends tomorrow, or today near midnight.
    assert words[language] in body or last[language] in body
    show = {"en": "Show ID", "zh-hans": "显示ID", "zh-hant": "顯示ID"}
    fold = re.search(
        r'<details class="ids"[^>]*>\s*<summary>([^<]*)</summary>(.*?)</details>', body, re.S
    )
    assert fold
    assert fold.group(1) == show[language]
    assert actors.device.iccid in fold.group(2)
    assert actors.device.eid in fold.group(2)
    assert body.count(actors.device.eid) == 1  # nowhere else on the page
    assert f'href="/topup/confirm?device={actors.device.pk}&amp;plan=day-1g"' in body
    assert f'href="/my/devices/{actors.device.pk}/credit/add"' in body


def test_the_device_list_leads_with_data_and_top_up(actors: Actors) -> None:
    me = customer(language="zh-hans")
    bind(actors.device, me)
    bind(actors.devices[1], me)
    give_credit(actors.device, 6000, "test:list")
    place_balance_order(me, actors.device, actors.plans["month-20g"])
    run_tasks()
    body = text(browser(me, language="zh-hans").get("/my/devices"))
    cards = body.split('class="card device-card"')[1:]
    assert len(cards) == 2
    first, second = cards
    assert re.search(r'data-testid="remaining">20 GB<', first)
    assert "还剩 30 天" in first or "还剩 29 天" in first
    assert first.index("remaining") < first.index('data-testid="topup"') < first.index("<details")
    assert actors.device.eid in first.split("<details", 1)[1]  # only in the fold
    assert actors.device.eid not in first.split("<details", 1)[0]
    assert re.search(r'data-testid="remaining">0 MB<', second)
    assert "这张卡目前没有流量套餐。" in second


def test_days_left_counts_days_in_the_customers_zone() -> None:
    now = datetime(2026, 12, 4, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai
    assert days_left(None, SHANGHAI, now) is None
    assert days_left(datetime(2026, 12, 4, 15, 59, tzinfo=UTC), SHANGHAI, now) == "Last day today"
    # 00:10 on the 5th in Shanghai: tomorrow, though 40 minutes away.
    assert days_left(datetime(2026, 12, 4, 16, 10, tzinfo=UTC), SHANGHAI, now) == "1 day left"
    # Midnight ending the 5th belongs to the 5th.
    assert days_left(datetime(2026, 12, 5, 16, 0, tzinfo=UTC), SHANGHAI, now) == "1 day left"
    assert days_left(datetime(2026, 12, 5, 16, 1, tzinfo=UTC), SHANGHAI, now) == "2 days left"
    # In UTC the same end is still today.
    assert days_left(datetime(2026, 12, 4, 16, 10, tzinfo=UTC), ZoneInfo("UTC"), now) == (
        "Last day today"
    )


def test_every_history_row_of_my_cards_can_be_bought_again(actors: Actors) -> None:
    me = customer()
    bind(actors.device, me)
    bind(actors.devices[1], me)
    give_credit(actors.device, 2000, "test:h1")
    give_credit(actors.devices[1], 8000, "test:h2")
    place_balance_order(me, actors.device, actors.plans["day-1g"])
    place_balance_order(me, actors.devices[1], actors.plans["month-20g"])
    body = text(browser(me).get("/my/orders"))
    links = re.findall(
        r'class="button secondary again" data-testid="buy-again" href="([^"]+)"', body
    )
    assert links == [
        f"/topup/confirm?device={actors.devices[1].pk}&amp;plan=month-20g",
        f"/topup/confirm?device={actors.device.pk}&amp;plan=day-1g",
    ]
    # A card no longer mine and a plan no longer on sale: no button on their rows.
    Plan.objects.filter(code="month-20g").update(active=False)
    type(actors.device).objects.filter(pk=actors.device.pk).update(owner=None)
    body = text(browser(me).get("/my/orders"))
    assert 'data-testid="buy-again"' not in body


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_credit_form_offers_the_amounts_as_buttons(actors: Actors, language: str) -> None:
    me = customer(language=language)
    bind(actors.device, me)
    Plan.objects.create(
        code="credit-20",
        kind="payg",
        name_en="credit-20",
        price=2000,
        currency="CNY",
        data_bytes=0,
        validity_hours=0,
    )
    Plan.objects.create(
        code="credit-100",
        kind="payg",
        name_en="credit-100",
        price=10000,
        currency="CNY",
        data_bytes=0,
        validity_hours=0,
        active=False,
    )
    page = browser(me, language=language).get(f"/my/devices/{actors.device.pk}/credit/add")
    assert page.status_code == 200
    body = text(page)
    form = re.search(r'<form method="get" action="/topup/confirm"[^>]*>(.*?)</form>', body, re.S)
    assert form
    assert f'<input type="hidden" name="device" value="{actors.device.pk}">' in form.group(1)
    buttons = re.findall(
        r'<button type="submit" class="primary" name="plan" value="([^"]+)">([^<]+)<', form.group(1)
    )
    assert buttons == [("credit-20", "¥20.00"), ("credit-50", "¥50.00")]  # on sale, by amount


def test_the_credit_form_places_a_credit_order(actors: Actors) -> None:
    me = customer()
    bind(actors.device, me)
    client = browser(me)
    # The button submits the form: GET /topup/confirm?device=…&plan=credit-50.
    body, token = again(client, actors.device.pk, "credit-50")
    assert re.search(r'data-testid="price">¥50.00<', body)
    assert 'value="balance"' not in body  # credit does not buy credit
    paid = client.post("/topup/confirm", {"confirmation": token, "payment_method": "alipay"})
    assert paid.status_code == 302
    order = Order.objects.get()
    assert (order.device_id, order.plan.code, order.amount, order.payment_method) == (
        actors.device.pk,
        "credit-50",
        5000,
        "alipay",
    )


def test_the_credit_form_of_someone_elses_card_is_a_plain_404(actors: Actors) -> None:
    bind(actors.device, customer(phone="+8613900139000"))
    response = browser(customer()).get(f"/my/devices/{actors.device.pk}/credit/add")
    assert response.status_code == 404


def test_alerts_carry_the_buy_again_link(actors: Actors, settings: object) -> None:
    me = customer()
    bind(actors.device, me)
    give_credit(actors.device, 2000, "test:alert")
    place_balance_order(me, actors.device, actors.plans["day-1g"])
    run_tasks()
    bundle = actors.device.bundles.get()
    base = "https://simtopup.example"
    settings.SITE_URL = base  # type: ignore[attr-defined]
    on_bundle = Alert(device=actors.device, bundle=bundle)
    assert topup_link(on_bundle) == f"{base}/topup/confirm?device={actors.device.pk}&plan=day-1g"
    on_credit = Alert(device=actors.device)
    assert topup_link(on_credit) == f"{base}/my/devices/{actors.device.pk}/credit/add"
    # A card nobody has bound (a reseller's customer, told by webhook): the visitor's wizard.
    type(actors.device).objects.filter(pk=actors.device.pk).update(owner=None)
    on_bundle.device.refresh_from_db()
    assert topup_link(on_bundle) == f"{base}/topup/device?plan=day-1g&device={actors.device.pk}"
    assert topup_link(on_credit) == f"{base}/topup?device={actors.device.pk}"
