"""The website's answer to an exception no view answered (the website, the reseller portal,
the operator console): a page. A database out of reach is a 503 page with ``Retry-After``,
logged as one warning, never a 500. The root error handler (simtopup/errors.py) sends every
other path here; the API's paths get a problem document from the api instead.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.views import defaults

from simtopup.core.http import in_request_language
from simtopup.core.unavailable import RETRY_AFTER_SECONDS, database_unavailable, note_unavailable


def server_error(request: HttpRequest, exc: BaseException | None) -> HttpResponse:
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
