"""Cursor pagination of API lists (docs/api.md): ``?cursor=…&limit=…`` →
``{"items": [...], "next_cursor": "…"|null}``, newest first by primary key."""

from __future__ import annotations

import base64
from typing import Any

from django.db.models import QuerySet
from django.utils.translation import gettext as _

from simtopup.core.errors import DomainError


def decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        value = int(base64.urlsafe_b64decode(cursor.encode() + b"==").decode())
    except ValueError:
        raise DomainError("invalid_cursor", _("The cursor is not valid."), 422) from None
    if value < 1:
        raise DomainError("invalid_cursor", _("The cursor is not valid."), 422)
    return value


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(str(last_id).encode()).decode().rstrip("=")


def page(qs: QuerySet[Any], cursor: str | None, limit: int) -> tuple[list[Any], str | None]:
    """Newest first by primary key: (rows of this page, next cursor or None)."""
    after = decode_cursor(cursor)
    qs = qs.order_by("-pk")
    if after is not None:
        qs = qs.filter(pk__lt=after)
    rows = list(qs[: limit + 1])
    next_cursor = encode_cursor(rows[limit - 1].pk) if len(rows) > limit else None
    return rows[:limit], next_cursor
