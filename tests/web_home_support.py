"""Helpers for the tests of the home, login, help, verification and installable-app pages."""

from __future__ import annotations

import re
from typing import Any

from django.test import Client

LANGUAGES = ["en", "zh-hans", "zh-hant"]
HTML_LANG = {"en": "en", "zh-hans": "zh-Hans", "zh-hant": "zh-Hant"}


def client_in(language: str, **kwargs: Any) -> Client:
    """A browser whose preferred language is ``language``."""
    return Client(HTTP_ACCEPT_LANGUAGE=language, **kwargs)


def page(response: Any) -> str:
    return response.content.decode()


def field_errors(response: Any, field: str) -> str:
    """The error text shown next to a form field (the ``.field`` block holding its input)."""
    html = page(response)
    match = re.search(
        r'<div class="field invalid">\s*<label for="id_' + re.escape(field) + r'".*?</div>',
        html,
        re.S,
    )
    assert match, f"no error shown next to {field!r}"
    errors = re.search(r'<ul class="errorlist"[^>]*>(.*?)</ul>', match.group(0), re.S)
    assert errors, f"no error list next to {field!r}"
    return re.sub(r"<[^>]+>", "", errors.group(1)).strip()


def csrf_token(response: Any) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page(response))
    assert match, "no CSRF token on the page"
    return match.group(1)
