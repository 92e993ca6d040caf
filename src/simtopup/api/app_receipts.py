"""App API — /api/v1: receipts."""

from __future__ import annotations

from ninja import Router

from simtopup.api.auth import AppBearer

router = Router(auth=AppBearer(), tags=["app: receipts"])
