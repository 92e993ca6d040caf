"""What every page knows: the operator, the official address, who is logged in."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest

from simtopup.web.session import current_customer


def site(request: HttpRequest) -> dict[str, object]:
    return {
        "operator": settings.OPERATOR_NAME,
        "official_host": urlsplit(settings.SITE_URL).netloc or request.get_host(),
        "customer": current_customer(request) if hasattr(request, "session") else None,
    }
