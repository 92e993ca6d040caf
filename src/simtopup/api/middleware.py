from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _

API_PREFIXES = ("/api/", "/reseller/", "/network/")


class ProblemMiddleware:
    """Every error answer under the API prefixes is a problem document.

    Exceptions are answered where Django catches them, in each middleware layer and around
    the view, by ``handler500`` (simtopup/errors.py), and inside ninja by its exception handlers
    (api/problems.py): both already answer problems under the API prefixes, 503
    ``database_unavailable`` when the database is out of reach. What is left are the plain
    error *responses* some layer returns by itself — Django's HTML 404 for an unknown path,
    ninja's bare 405 for a method a path does not take, a debug page —, rewritten here with
    their status and their headers (``Allow`` …). It sits inside the middleware that sets
    security headers, so the problem gets them too. The website and the operator console keep
    their HTML pages.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code >= 400 and request.path.startswith(API_PREFIXES):
            from simtopup.api.problems import for_response, is_problem

            # In debug mode a crash keeps Django's technical page: its traceback is the point.
            if not is_problem(response) and not (response.status_code == 500 and settings.DEBUG):
                return for_response(request, response)
        return response


class BodySizeLimitMiddleware:
    """Refuse API bodies over ``MAX_REQUEST_BYTES`` with a 413 problem before reading them."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(API_PREFIXES):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > settings.MAX_REQUEST_BYTES:
                from simtopup.api.problems import in_request_language, problem

                with in_request_language(request):
                    return problem(
                        413, "payload_too_large", _("The request body is larger than 1 MiB.")
                    )
        return self.get_response(request)
