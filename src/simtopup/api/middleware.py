from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _

API_PREFIXES = ("/api/", "/reseller/", "/network/")


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
                from simtopup.api.problems import problem

                return problem(
                    413, "payload_too_large", _("The request body is larger than 1 MiB.")
                )
        return self.get_response(request)
