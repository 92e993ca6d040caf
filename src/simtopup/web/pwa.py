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
from django.views.decorators.http import require_GET, require_http_methods

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


# --- Web Push of alerts (usage/alerts.py): the installed app subscribes ------------------------


@require_GET
def push_key(request: HttpRequest) -> JsonResponse:
    """The application server key (VAPID) the service worker subscribes with."""
    from simtopup.notifications.push import public_key

    return JsonResponse({"public_key": public_key()})


@require_http_methods(["POST", "DELETE"])
def push_subscription(request: HttpRequest) -> HttpResponse:
    """``POST`` ``{"endpoint", "keys": {"p256dh", "auth"}}`` (the browser's
    ``PushSubscription.toJSON()``) subscribes the logged-in customer's app to alerts;
    ``DELETE`` ``{"endpoint"}`` unsubscribes it. CSRF-protected like every form post."""
    from simtopup.core.errors import DomainError
    from simtopup.usage.alerts import subscribe_push, unsubscribe_push
    from simtopup.web.session import current_customer

    customer = current_customer(request)
    if customer is None:
        return JsonResponse({"code": "unauthenticated"}, status=401)
    try:
        body = json.loads(request.body or b"{}")
        endpoint = body["endpoint"]
        if not isinstance(endpoint, str) or not 10 <= len(endpoint) <= 1000:
            raise ValueError(endpoint)
        if request.method == "DELETE":
            unsubscribe_push(customer.pk, endpoint=endpoint)
            return HttpResponse(status=204)
        keys = body["keys"]
        p256dh, auth = keys["p256dh"], keys["auth"]
        if not (isinstance(p256dh, str) and isinstance(auth, str)):
            raise ValueError(keys)
        if not (16 <= len(p256dh) <= 200 and 8 <= len(auth) <= 100):
            raise ValueError(keys)
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"code": "invalid_subscription"}, status=400)
    try:
        sub = subscribe_push(customer.pk, endpoint, p256dh, auth)
    except DomainError as exc:
        return JsonResponse({"code": exc.code}, status=exc.status)
    return JsonResponse({"id": sub.pk}, status=201)
