"""Timestamps as every answer and webhook writes them."""

from __future__ import annotations

from datetime import datetime


def rfc3339(value: datetime | None) -> str | None:
    """``2026-11-26T08:00:00Z``: whole seconds, UTC written as Z; None stays None."""
    if value is None:
        return None
    return value.replace(microsecond=0).isoformat().replace("+00:00", "Z")
