"""The root URLconf's error handler for answers Django makes from an exception.

Django turns an exception raised in any middleware layer or view into a response by calling
``handler500`` while the exception is being handled, so ``sys.exc_info()`` names it. The door
that owns the path answers: under the API prefixes a problem document (api/problems.py),
under /partner/ Airalo's error body (partner/responses.py), elsewhere a page (web/errors.py). It lives at the root, beside the URLconf that joins the
doors, so that neither door imports the other.
"""

from __future__ import annotations

import sys

from django.http import HttpRequest, HttpResponse

from simtopup.api.middleware import API_PREFIXES
from simtopup.api.problems import for_exception
from simtopup.partner import responses as partner_responses
from simtopup.web import errors as web_errors


def server_error(request: HttpRequest) -> HttpResponse:
    exc = sys.exc_info()[1]
    if request.path.startswith(API_PREFIXES):
        return for_exception(request, exc)
    if request.path.startswith("/partner/"):
        return partner_responses.for_exception(request, exc)
    return web_errors.server_error(request, exc)
