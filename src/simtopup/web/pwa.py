"""The installable app: web app manifest, service worker and offline page.

The service worker must be served from the site root to control every page (scope ``/``),
so ``/sw.js`` is a view: the script in ``static/web/sw.js`` with its configuration in front
(the shell to cache, the offline page, a version). The version is a hash of everything the
worker caches, so a deploy that changes the shell changes the script's bytes, and browsers
install the new worker and drop the old cache.

What it caches is deliberately small: the stylesheet, the scripts, the icons and the offline
page (rendered for nobody: no customer data, no messages). Pages are always fetched from the
network; API responses are never touched.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles import finders
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

THEME_COLOUR = "#0b57d0"
BACKGROUND_COLOUR = "#f4f5f7"
TEMPLATES = Path(__file__).resolve().parent / "templates"
OFFLINE_TEMPLATES = ["web/offline.html", "web/base.html"]
SHELL_STATIC = [
    "web/site.css",
    "web/app.js",
    "web/icons/icon-192.png",
    "web/icons/icon-512.png",
    "web/icons/icon-maskable-512.png",
    "web/icons/favicon-32.png",
]


def _static_source(path: str) -> bytes:
    found = finders.find(path)
    if not found:
        raise FileNotFoundError(path)
    return Path(str(found)).read_bytes()


@require_GET
def manifest(request: HttpRequest) -> HttpResponse:
    language = translation.get_language() or settings.LANGUAGE_CODE
    body = {
        "id": "/",
        "name": settings.OPERATOR_NAME,
        "short_name": settings.OPERATOR_NAME[:12],
        "description": _("Top up your data card: plans, remaining data, receipts."),
        "lang": {"zh-hans": "zh-Hans", "zh-hant": "zh-Hant"}.get(language, language),
        "start_url": "/",
        "scope": "/",
        "display": "standalone",
        "orientation": "portrait",
        "theme_color": THEME_COLOUR,
        "background_color": BACKGROUND_COLOUR,
        "icons": [
            {"src": static("web/icons/icon-192.png"), "sizes": "192x192", "type": "image/png"},
            {"src": static("web/icons/icon-512.png"), "sizes": "512x512", "type": "image/png"},
            {
                "src": static("web/icons/icon-maskable-512.png"),
                "sizes": "512x512",
                "type": "image/png",
                "purpose": "maskable",
            },
        ],
    }
    response = JsonResponse(
        body, content_type="application/manifest+json", json_dumps_params={"ensure_ascii": False}
    )
    response["Cache-Control"] = "public, max-age=3600"
    return response


@cache
def worker_script() -> str:
    """The service worker's source, configured; computed once per process."""
    source = _static_source("web/sw.js")
    digest = hashlib.sha256(source)
    for template in OFFLINE_TEMPLATES:  # the cached offline page is rendered from these
        digest.update((TEMPLATES / template).read_bytes())
    for path in SHELL_STATIC:
        digest.update(_static_source(path))
    digest.update(settings.OPERATOR_NAME.encode())
    config = {
        "version": digest.hexdigest()[:16],
        "shell": [static(path) for path in SHELL_STATIC],
        "offline": reverse("web:offline"),
    }
    header = f"self.SIMTOPUP = {json.dumps(config)};\n"
    return header + source.decode()


@require_GET
def service_worker(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(worker_script(), content_type="text/javascript; charset=utf-8")
    # Browsers re-check the worker on navigation; no HTTP caching keeps updates prompt.
    response["Cache-Control"] = "no-cache"
    response["Service-Worker-Allowed"] = "/"
    return response


@require_GET
def offline(request: HttpRequest) -> HttpResponse:
    # Cached by the service worker and shown to whoever is offline later: render it for
    # nobody (no customer, no pending messages consumed).
    response = render(request, "web/offline.html", {"customer": None, "messages": []})
    response["Cache-Control"] = "no-cache"
    return response
