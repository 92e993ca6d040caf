"""The home page of the official site: what the service is, the plans, the official address."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import translation

from simtopup.catalog.display import format_validity
from simtopup.catalog.models import Plan
from tests.support import Actors
from tests.web_home_support import HTML_LANG, LANGUAGES, client_in, page


def plan_cards(html: str) -> dict[str, str]:
    return dict(
        re.findall(r'<li class="card plan [a-z]+" data-plan="([^"]+)">(.*?)</li>', html, re.S)
    )


@pytest.mark.parametrize("language", LANGUAGES)
def test_it_shows_the_plans_in_the_page_language(actors: Actors, language: str) -> None:
    response = client_in(language).get("/")

    assert response.status_code == 200
    html = page(response)
    assert f'<html lang="{HTML_LANG[language]}">' in html
    cards = plan_cards(html)
    assert list(cards) == ["day-1g", "month-20g", "credit-50"]  # in sort order
    suffix = {"en": "", "zh-hans": " 简", "zh-hant": " 繁"}[language]
    with translation.override(language):
        assert f'<h3 id="plan-1">day-1g{suffix}</h3>' in cards["day-1g"]
        assert "<dd>1 GB</dd>" in cards["day-1g"]
        assert f"<dd>{format_validity(24)}</dd>" in cards["day-1g"]
        assert "¥5.00" in cards["day-1g"]
        assert "<dd>20 GB</dd>" in cards["month-20g"]
        assert f"<dd>{format_validity(720)}</dd>" in cards["month-20g"]
        assert "¥59.00" in cards["month-20g"]
        # Pay per use: the credit and the tariff per MB, no data size or validity.
        assert "¥50.00" in cards["credit-50"]
        assert "¥0.10" in cards["credit-50"]
        assert "<dd>" not in cards["credit-50"]
        assert translation.gettext("Top up your data card in seconds") in html
        assert translation.gettext("%(count)d-day pass") % {"count": 1} in cards["day-1g"]
        assert translation.gettext("%(count)d-day pass") % {"count": 30} in cards["month-20g"]
        assert translation.gettext("Pay per use") in cards["credit-50"]


def test_each_plan_leads_to_the_top_up_page(actors: Actors) -> None:
    html = page(client_in("en").get("/"))
    topup = reverse("web:topup")
    assert f'href="{topup}" id="top-up"' in html
    for code, card in plan_cards(html).items():
        assert f'href="{topup}?plan={code}"' in card


def test_inactive_plans_are_not_offered(actors: Actors) -> None:
    Plan.objects.filter(code="month-20g").update(active=False)
    cards = plan_cards(page(client_in("en").get("/")))
    assert list(cards) == ["day-1g", "credit-50"]


def test_without_plans_it_says_so(db: None) -> None:
    html = page(client_in("en").get("/"))
    assert plan_cards(html) == {}
    assert "No plans are on sale right now" in html


def test_it_names_the_official_site_and_links_the_checks(actors: Actors, settings: object) -> None:
    settings.SITE_URL = "https://topup.example.cn"  # type: ignore[attr-defined]
    html = page(client_in("en").get("/"))
    assert '<strong class="mono">topup.example.cn</strong>' in html
    assert "phishing" in html
    assert f'href="{reverse("verify-receipt-form")}"' in html
    assert f'href="{reverse("web:verify-agent")}"' in html
    # Small links for developers and the operator.
    assert 'href="/api/docs"' in html
    assert 'href="/admin/"' in html


def test_it_only_answers_get(db: None) -> None:
    assert Client().post("/").status_code == 405


def test_the_health_endpoints_stay(db: None) -> None:
    client = Client()
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    assert client.get("/metrics").status_code == 200
