"""Website: a card's credit, its movements, adding credit, and automatic top-up settings."""

from __future__ import annotations

import re

import pytest

from simtopup.orders.customer import place_balance_order
from simtopup.usage.models import AutoTopupRule
from tests.payments_support import bind, give_credit
from tests.support import GB, MB, Actors
from tests.web_support import LANGUAGES, browser, csrf_token, customer, field_errors, text


@pytest.mark.parametrize("language", LANGUAGES)
def test_it_shows_the_credit_and_its_movements(actors: Actors, language: str) -> None:
    me = customer()
    bind(actors.device, me)
    give_credit(actors.device, 2000, "test:credit")
    order = place_balance_order(me, actors.device, actors.plans["day-1g"])
    page = browser(me, language=language).get(f"/my/devices/{actors.device.pk}/credit")
    assert page.status_code == 200
    body = text(page)
    assert "¥15.00" in body  # 20.00 − 5.00
    assert "+¥20.00" in body
    assert "−¥5.00" in body
    assert f"#{order.pk}" in body
    # "Add credit" is the confirmation of the pay-per-use plan for this card (buy again).
    assert f"/topup/confirm?device={actors.device.pk}&amp;plan=credit-50" in body
    # Automatic top-up buys passes only.
    assert 'value="day-1g"' in body
    assert 'value="credit-50"' not in body


def test_add_credit_preselects_the_card(actors: Actors) -> None:
    me = customer()
    bind(actors.device, me)
    page = browser(me).get(f"/topup/device?plan=credit-50&device={actors.device.pk}")
    assert page.status_code == 200
    assert re.search(
        rf'<input type="radio" name="mine" value="{actors.device.pk}"[^>]*checked', text(page)
    )


def test_it_saves_the_automatic_top_up_rule(actors: Actors) -> None:
    me = customer()
    bind(actors.device, me)
    client = browser(me)
    response = client.post(
        f"/my/devices/{actors.device.pk}/auto-topup",
        {"enabled": "on", "threshold": "1.5", "unit": "GB", "plan": "month-20g"},
    )
    assert response.status_code == 302
    rule = AutoTopupRule.objects.get(device=actors.device)
    assert (rule.enabled, rule.threshold_bytes, rule.plan.code, rule.customer) == (
        True,
        int(1.5 * GB),
        "month-20g",
        me,
    )
    page = text(client.get(response["Location"]))
    assert "Automatic top-up settings saved." in page
    assert 'value="1.5"' in page
    assert 'value="GB" selected' in page
    off = client.post(
        f"/my/devices/{actors.device.pk}/auto-topup",
        {"threshold": "300", "unit": "MB", "plan": "day-1g"},
    )
    assert off.status_code == 302
    rule.refresh_from_db()
    assert (rule.enabled, rule.threshold_bytes, rule.plan.code) == (False, 300 * MB, "day-1g")


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"threshold": "", "unit": "MB", "plan": "day-1g"}, "threshold", "Enter an amount"),
        ({"threshold": "-1", "unit": "MB", "plan": "day-1g"}, "threshold", "0"),
        ({"threshold": "2000", "unit": "GB", "plan": "day-1g"}, "threshold", "bytes"),
        ({"threshold": "1", "unit": "GB", "plan": "credit-50"}, "plan", ""),
        ({"threshold": "1", "unit": "TB", "plan": "day-1g"}, "unit", ""),
    ],
)
def test_bad_settings_are_shown_next_to_the_field_and_change_nothing(
    actors: Actors, data: dict[str, str], field: str, words: str
) -> None:
    me = customer()
    bind(actors.device, me)
    response = browser(me).post(f"/my/devices/{actors.device.pk}/auto-topup", data)
    assert response.status_code == 422
    errors = field_errors(response, field)
    assert errors, "no error next to the field"
    assert words in errors[0], errors
    assert not AutoTopupRule.objects.exists()


def test_csrf_is_enforced_on_the_settings(actors: Actors) -> None:
    me = customer()
    bind(actors.device, me)
    client = browser(me, csrf=True)
    path = f"/my/devices/{actors.device.pk}/auto-topup"
    data = {"enabled": "on", "threshold": "1", "unit": "GB", "plan": "day-1g"}
    assert client.post(path, data).status_code == 403
    assert not AutoTopupRule.objects.exists()
    token = csrf_token(client, f"/my/devices/{actors.device.pk}/credit")
    assert client.post(path, {**data, "csrfmiddlewaretoken": token}).status_code == 302
    assert AutoTopupRule.objects.get().enabled
