"""Screenshots of every main page on a phone in zh-Hans and on a desktop in English
(test-artifacts/screenshots/gallery-*). Each page must render (200) in its language (the
<html> lang attribute, the navigation translated) with a label on every input."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import translation

from simtopup.accounts.models import Customer
from simtopup.devices.models import Device
from tests.e2e.conftest import shot
from tests.e2e.test_e2e_topup import logged_in
from tests.support import iccid

PUBLIC = {
    "home": "/",
    "login": "/login",
    "topup": "/topup",
    "help": "/help",
    "verify-receipt": "/verify/receipt",
    "verify-agent": "/verify/agent",
    "offline": "/offline",
    "agent-login": "/agent/login",
}
MINE = {"devices": "/my/devices", "history": "/my/orders"}
# Inputs a person fills in, without a label the screen reader can announce.
UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea')]
  .filter(e => e.type !== 'hidden' && e.type !== 'submit' && e.type !== 'button')
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
               && !e.getAttribute('aria-labelledby'))
  .map(e => e.name || e.id || e.outerHTML.slice(0, 80))"""
CONFIGS = [("phone", "zh-hans", "zh-Hans"), ("desktop", "en", "en")]


@pytest.mark.parametrize(("kind", "language", "lang_attr"), CONFIGS)
def test_every_main_page_renders_in_its_language(
    site: str, phone: Any, desktop: Any, kind: str, language: str, lang_attr: str
) -> None:
    page = (phone if kind == "phone" else desktop)(language)
    me = Customer.objects.create(phone="+8613800138077", language=language)
    Device.objects.filter(iccid=iccid(2)).update(owner=me)
    for name, path in PUBLIC.items():
        response = page.goto(site + path)
        assert response is not None, name
        assert response.status == 200, (name, response.status)
        assert page.locator("html").get_attribute("lang") == lang_attr, name
        assert page.evaluate(UNLABELLED) == [], name
        shot(page, f"gallery-{name}-{kind}-{language}")
    logged_in(page, site, me)
    for name, path in MINE.items():
        response = page.goto(site + path)
        assert response is not None, name
        assert response.status == 200, (name, response.status)
        assert page.evaluate(UNLABELLED) == [], name
        shot(page, f"gallery-{name}-{kind}-{language}")
    with translation.override(language):
        nav = translation.gettext("My devices")
    assert nav in page.inner_text("header")
