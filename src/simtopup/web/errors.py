"""The root URLconf's error handler for answers Django makes from an exception.

Django turns an exception raised in any middleware layer or view into a response by calling
``handler500`` while the exception is being handled, so ``sys.exc_info()`` names it. Under
the API prefixes the answer is a problem document (api/problems.py); elsewhere — the website,
the reseller portal, the operator console — a page. Either way a database out of reach is a
503 with ``Retry-After``, logged as one warning, never a 500.
"""

from __future__ import annotations

import sys

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.views import defaults

from simtopup.api.middleware import API_PREFIXES
from simtopup.api.problems import for_exception, in_request_language
from simtopup.core.unavailable import RETRY_AFTER_SECONDS, database_unavailable, note_unavailable


def server_error(request: HttpRequest) -> HttpResponse:
    exc = sys.exc_info()[1]
    if request.path.startswith(API_PREFIXES):
        return for_exception(request, exc)
    if exc is not None and database_unavailable(exc):
        response = unavailable_page(request)
        note_unavailable(request, exc, response)
        return response
    return defaults.server_error(request)


def unavailable_page(request: HttpRequest) -> HttpResponse:
    """A page that needs nothing the outage took away: rendered without the request's
    context processors (they read the session and the logged-in customer)."""
    with in_request_language(request):
        html = render_to_string("web/unavailable.html")
    response = HttpResponse(html, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response
