"""Console pages: filled in by this session's work on issue 14."""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern


def urls(site: Any) -> list[URLPattern]:
    """This module's console URLs (wrapped in ``site.admin_view``), in the admin namespace."""
    return []
