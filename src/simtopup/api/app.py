"""App API — ``/api/v1`` (docs/api.md): one router made of the routers of its parts."""

from __future__ import annotations

from ninja import Router

from simtopup.api import (
    app_alerts,
    app_auth,
    app_autotopup,
    app_devices,
    app_orders,
    app_receipts,
)

router = Router()
router.add_router("", app_auth.router)
router.add_router("", app_devices.router)
router.add_router("", app_orders.router)
router.add_router("", app_receipts.router)
router.add_router("", app_autotopup.router)
router.add_router("", app_alerts.router)
