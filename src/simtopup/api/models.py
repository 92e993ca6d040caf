"""The api app has no tables of its own: the idempotency keys it checks are core's
(core/models.py, shared with the website); imported here for older callers."""

from __future__ import annotations

from simtopup.core.models import IdempotencyRecord as IdempotencyRecord

__all__ = ["IdempotencyRecord"]
