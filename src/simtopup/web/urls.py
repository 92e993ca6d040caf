"""The website (customer pages, reseller portal, installable app): namespace ``web``."""

from __future__ import annotations

from django.urls import path  # noqa: F401  (the parts add their routes below)

app_name = "web"

urlpatterns: list[object] = [
    # customer pages
    # reseller portal
    # installable app
]
