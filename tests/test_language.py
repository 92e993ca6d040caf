"""The site's default language (SIMTOPUP_LANGUAGE, zh-hans unless set): what a visitor reads
when neither their own choice nor their browser names a language; both still win over it."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from django.test import Client
from django.utils import translation

from tests.support import Actors
from tests.web_home_support import client_in, page

NOTHING_HERE = {"en": "There is nothing here.", "zh-hans": "这里什么都没有。"}


@pytest.fixture
def site_default(settings: Any) -> str:
    """The installation's default as shipped (the suite otherwise reads English)."""
    settings.LANGUAGE_CODE = "zh-hans"
    return "zh-hans"


def test_without_a_choice_or_accept_language_the_site_is_in_its_default_language(
    db: None, site_default: str
) -> None:
    response = Client().get("/")  # no Accept-Language, no language cookie

    assert '<html lang="zh-Hans">' in page(response)
    assert response["Content-Language"] == "zh-hans"


def test_accept_language_wins_over_the_default(db: None, site_default: str) -> None:
    response = client_in("en").get("/")

    assert '<html lang="en">' in page(response)


def test_the_visitors_choice_wins_over_accept_language_and_the_default(
    db: None, site_default: str
) -> None:
    client = client_in("zh-hant")
    chosen = client.post("/i18n/setlang/", {"language": "en", "next": "/"})
    assert chosen.status_code == 302

    assert '<html lang="en">' in page(client.get("/"))


def test_another_default_is_used_when_set(db: None, settings: Any) -> None:
    settings.LANGUAGE_CODE = "zh-hant"

    assert '<html lang="zh-Hant">' in page(Client().get("/"))


@pytest.mark.parametrize(
    ("headers", "language"),
    [({}, "zh-hans"), ({"Accept-Language": "en"}, "en")],
)
def test_api_problems_follow_the_same_rule(
    db: None, site_default: str, headers: dict[str, str], language: str
) -> None:
    response = Client(headers=headers).get("/api/v1/no-such-thing")

    assert response.status_code == 404
    assert response.json()["detail"] == NOTHING_HERE[language]


def _settings_language(value: str | None) -> subprocess.CompletedProcess[str]:
    """settings.LANGUAGE_CODE as a process started with SIMTOPUP_LANGUAGE=value (None: unset)
    sees it."""
    environment = {k: v for k, v in os.environ.items() if k != "SIMTOPUP_LANGUAGE"}
    if value is not None:
        environment["SIMTOPUP_LANGUAGE"] = value
    return subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; print(settings.LANGUAGE_CODE)"],
        env={**environment, "DJANGO_SETTINGS_MODULE": "simtopup.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_simtopup_language_sets_the_default_and_refuses_a_language_the_site_lacks() -> None:
    shipped = _settings_language(None)
    assert shipped.stdout.strip() == "zh-hans", shipped.stderr
    assert _settings_language("zh-Hant").stdout.strip() == "zh-hant"
    refused = _settings_language("fr")
    assert refused.returncode != 0
    assert "SIMTOPUP_LANGUAGE must be one of zh-hans, zh-hant, en, not 'fr'" in refused.stderr


def test_a_reseller_api_refusal_follows_the_same_rule(actors: Actors, site_default: str) -> None:
    """Whichever path answers it (on PostgreSQL the one-statement sale tries it first)."""
    body = {"device": actors.device.iccid, "plan": "month-20g", "reference": "r"}
    for headers, language in (({}, "zh-hans"), ({"Accept-Language": "en"}, "en")):
        client = Client(headers={"Authorization": f"Bearer {actors.bob_key}", **headers})
        response = client.post("/reseller/v1/topups", body, content_type="application/json")
        assert response.status_code == 402
        with translation.override(language):
            expected = translation.gettext("The reseller float is too low for this top-up.")
        assert response.json()["detail"] == expected
