"""Verify an agent: is this shop an authorised reseller? (``/verify/agent?code=``)."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import translation
from django.utils.formats import date_format

from simtopup.resellers.actions import suspend
from tests.support import Actors
from tests.web_home_support import HTML_LANG, LANGUAGES, client_in, page

URL = "/verify/agent"


def result(response: object) -> str:
    """The verdict box alone (the rest of the page may mention authorised agents)."""
    match = re.search(r'<section class="result[^>]*>.*?</section>', page(response), re.S)
    assert match, "no result on the page"
    return match.group(0)


def outcome(response: object) -> str:
    match = re.search(r'data-outcome="([a-z_]+)"', page(response))
    assert match, "no result on the page"
    return match.group(1)


def test_the_url_is_the_named_route(db: None) -> None:
    assert reverse("web:verify-agent") == URL


@pytest.mark.parametrize("language", LANGUAGES)
def test_an_active_agent_is_authorised_since_its_start(actors: Actors, language: str) -> None:
    response = client_in(language).get(URL, {"code": actors.alice.code})

    assert response.status_code == 200
    assert outcome(response) == "authorised"
    html = page(response)
    assert f'<html lang="{HTML_LANG[language]}">' in html
    assert "Alice Mobile" in html
    assert actors.alice.code in html
    with translation.override(language):
        assert translation.gettext("Authorised reseller") in html
        since = actors.alice.created_at.astimezone(ZoneInfo(settings.DISPLAY_TIME_ZONE)).date()
        assert date_format(since, "DATE_FORMAT") in html
    assert "Bob Telecom" not in html
    assert response["Cache-Control"] == "no-store"


def test_the_code_is_forgiving_about_case_spaces_and_width(actors: Actors) -> None:
    code = actors.alice.code
    typed = [
        code.lower(),
        f"  {code[:4]} {code[4:]}  ",
        f"{code[:2]}-{code[2:]}",
        "".join(chr(ord(c) + 0xFEE0) for c in code),  # full-width, from a Chinese IME
    ]
    for text in typed:
        response = client_in("en").get(URL, {"code": text})
        assert response.status_code == 200, text
        assert outcome(response) == "authorised", text


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_suspended_agent_is_not_currently_authorised(actors: Actors, language: str) -> None:
    suspend(actors.bob)

    response = client_in(language).get(URL, {"code": actors.bob.code})

    assert response.status_code == 200
    assert outcome(response) == "suspended"
    with translation.override(language):
        assert translation.gettext("Not currently authorised") in result(response)
        assert translation.gettext("Authorised reseller") not in result(response)


@pytest.mark.parametrize("language", LANGUAGES)
def test_an_unknown_code_may_be_a_fake_agent(actors: Actors, language: str) -> None:
    response = client_in(language).get(URL, {"code": "AGZZZZZZZZ"})

    assert response.status_code == 404
    assert outcome(response) == "unknown"
    html = page(response)
    with translation.override(language):
        assert translation.gettext("Not an authorised agent") in html
    assert "Alice Mobile" not in html
    assert "Bob Telecom" not in html


def test_junk_input_is_unknown_not_an_error(actors: Actors) -> None:
    for text in ["x" * 500, "<script>", "%00", "AG' OR 1=1 --"]:
        response = client_in("en").get(URL, {"code": text})
        assert response.status_code == 404, text
        assert outcome(response) == "unknown"
        assert "<script>" not in page(response).split('id="code"')[1].split(">")[0]


@pytest.mark.parametrize("language", LANGUAGES)
def test_it_shows_the_empty_form(db: None, language: str) -> None:
    response = client_in(language).get(URL)
    assert response.status_code == 200
    html = page(response)
    assert 'name="code"' in html
    assert '<label for="code">' in html
    assert "data-outcome" not in html


def test_every_page_footer_links_the_verification_pages(db: None) -> None:
    for path in ["/", reverse("web:help"), reverse("web:login"), URL]:
        html = page(client_in("en").get(path))
        footer = html.split('<footer class="bottom">')[1]
        assert f'href="{URL}"' in footer, path
        assert 'href="/verify/receipt"' in footer, path
