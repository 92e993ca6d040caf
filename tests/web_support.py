"""Test helpers for the website's customer pages: a browser logged in as a customer (the
session the login page would leave), and small readers of rendered pages."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.test import Client

from simtopup.accounts.models import Customer
from simtopup.web.session import SESSION_KEY

LANGUAGES = ("en", "zh-hans", "zh-hant")


def customer(phone: str = "+8613800138000", **fields: Any) -> Customer:
    return Customer.objects.create(phone=phone, **{"language": "en", **fields})


def browser(who: Customer | None = None, *, language: str = "en", csrf: bool = False) -> Client:
    """A browser in ``language``, logged in as ``who`` (if given). ``csrf=True`` enforces
    CSRF checks like a real browser session."""
    client = Client(enforce_csrf_checks=csrf, HTTP_ACCEPT_LANGUAGE=language)
    if who is not None:
        session = client.session
        session[SESSION_KEY] = who.pk
        session.save()
    return client


def csrf_token(client: Client, path: str) -> str:
    """Open ``path`` (setting the CSRF cookie) and return the form's token."""
    page = client.get(path)
    assert page.status_code == 200, page.content[:500]
    match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content)
    assert match, "no CSRF token on the page"
    return match.group(1).decode()


def text(response: Any) -> str:
    return response.content.decode()


def query_of(url: str, name: str) -> str:
    return parse_qs(urlsplit(url).query)[name][0]


def field_errors(response: Any, field: str) -> list[str]:
    """The error messages rendered next to a field (``<ul id="id_<field>_error">``)."""
    page = text(response)
    match = re.search(rf'<ul class="errorlist" id="id_{field}_error"[^>]*>(.*?)</ul>', page, re.S)
    if not match:
        return []
    return [
        html.unescape(re.sub(r"<[^>]+>", "", item)).strip()
        for item in re.findall(r"<li>(.*?)</li>", match.group(1), re.S)
    ]


def form_errors(response: Any) -> list[str]:
    page = text(response)
    match = re.search(r'<ul class="errorlist form-errors"[^>]*>(.*?)</ul>', page, re.S)
    if not match:
        return []
    return [
        html.unescape(item).strip() for item in re.findall(r"<li>(.*?)</li>", match.group(1), re.S)
    ]
