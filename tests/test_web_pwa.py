"""The installable app: manifest, icons, service worker, offline page."""

from __future__ import annotations

import json
import re
from io import BytesIO

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import translation
from PIL import Image

from simtopup.accounts.models import Customer
from simtopup.web import pwa
from simtopup.web.session import SESSION_KEY
from tests.web_home_support import HTML_LANG, LANGUAGES, client_in, page


def fetch(client: Client, url: str) -> bytes:
    response = client.get(url)
    assert response.status_code == 200, url
    if hasattr(response, "streaming_content"):
        return b"".join(response.streaming_content)
    return response.content


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_manifest_describes_an_installable_app(db: None, language: str) -> None:
    response = client_in(language).get("/manifest.webmanifest")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/manifest+json"
    manifest = json.loads(response.content)
    assert manifest["start_url"] == "/"
    assert manifest["scope"] == "/"
    assert manifest["display"] == "standalone"
    assert manifest["theme_color"] == "#0b57d0"
    assert manifest["background_color"] == "#f4f5f7"
    assert manifest["name"]
    assert manifest["short_name"]
    assert manifest["lang"] == HTML_LANG[language]
    with translation.override(language):
        assert manifest["description"] == translation.gettext(
            "Top up your data card: plans, remaining data, receipts."
        )
    icons = {(i["sizes"], i.get("purpose", "any")): i["src"] for i in manifest["icons"]}
    assert set(icons) == {("192x192", "any"), ("512x512", "any"), ("512x512", "maskable")}
    client = Client()
    for (sizes, purpose), src in icons.items():
        image = Image.open(BytesIO(fetch(client, src)))
        assert image.format == "PNG"
        assert f"{image.width}x{image.height}" == sizes
        if purpose == "maskable":
            # Full bleed: opaque to the corners, which launchers crop away.
            assert image.mode == "RGB"
            assert image.getpixel((0, 0)) == (11, 87, 208)


def test_every_page_links_the_manifest_and_registers_the_worker(db: None) -> None:
    response = Client().get("/")
    html = page(response)
    assert f'<link rel="manifest" href="{reverse("web:manifest")}">' in html
    nonce = re.search(r'<script src="/static/web/app\.js" nonce="([^"]+)" defer>', html)
    assert nonce, "app.js is not loaded with the CSP nonce"
    assert f"'nonce-{nonce.group(1)}'" in response["Content-Security-Policy"]
    script = fetch(Client(), "/static/web/app.js").decode()
    assert 'register("/sw.js", { scope: "/" })' in script


def test_the_worker_is_served_from_the_root_with_its_shell(db: None) -> None:
    response = Client().get("/sw.js")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    assert response["Service-Worker-Allowed"] == "/"
    assert response["Cache-Control"] == "no-cache"
    source = response.content.decode()
    first_line, _rest = source.split("\n", 1)
    config = json.loads(first_line.removeprefix("self.SIMTOPUP = ").removesuffix(";"))
    assert config["offline"] == "/offline"
    assert "/static/web/site.css" in config["shell"]
    assert "/static/web/icons/icon-192.png" in config["shell"]
    assert re.fullmatch(r"[0-9a-f]{16}", config["version"])
    client = Client()
    for url in config["shell"]:
        assert fetch(client, url), url
    # What the worker does: pages from the network with the offline page as fallback, the
    # shell from the cache, nothing else (API answers, other requests) touched.
    assert 'request.mode === "navigate"' in source
    assert "SHELL.has(url.pathname)" in source
    assert 'request.method !== "GET"' in source
    assert "cache.put(CONFIG.offline" in source
    assert source.count("cache.put(") == 1  # only the offline page is ever stored later


def test_the_worker_version_follows_the_shell(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    pwa.worker_script.cache_clear()
    before = pwa.worker_script()
    real = pwa._static_source
    monkeypatch.setattr(
        pwa,
        "_static_source",
        lambda path: real(path) + (b"/* changed */" if path == "web/site.css" else b""),
    )
    pwa.worker_script.cache_clear()
    after = pwa.worker_script()
    pwa.worker_script.cache_clear()
    assert before.split("\n", 1)[0] != after.split("\n", 1)[0]
    assert before.split("\n", 1)[1] == after.split("\n", 1)[1]


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_offline_page_is_translated(db: None, language: str) -> None:
    response = client_in(language).get("/offline")
    assert response.status_code == 200
    html = page(response)
    assert f'<html lang="{HTML_LANG[language]}">' in html
    with translation.override(language):
        assert translation.gettext("You are offline") in html
        assert translation.gettext("Try again") in html
    assert response["Content-Language"] == language


def test_the_offline_page_holds_no_customer_data(db: None) -> None:
    customer = Customer.objects.create(phone="+8613800138077")
    client = client_in("en")
    session = client.session
    session[SESSION_KEY] = customer.pk
    session.save()
    assert f'action="{reverse("web:logout")}"' in page(client.get("/"))

    # A confirmation waiting for the next page is not eaten by the worker's fetch.
    sent = client.post(
        reverse("web:help"),
        {"reply_to": "+8613800138077", "message": "Where is my top-up, please?"},
    )
    assert sent.status_code == 302

    html = page(client.get("/offline"))

    assert "+8613800138077" not in html
    assert f'action="{reverse("web:logout")}"' not in html
    assert "ticket #" not in html
    assert "ticket #" in page(client.get(sent["Location"]))
