"""One reconciler pass: finish stuck orders, deliver due webhooks, prune old keys."""

from __future__ import annotations

import logging

from simtopup.api.idempotency import prune
from simtopup.orders.actions import reconcile
from simtopup.resellers.webhooks import deliver_due

logger = logging.getLogger(__name__)


def run_janitor() -> dict[str, object]:
    orders = reconcile()
    delivered = deliver_due()
    pruned = prune()
    if orders or delivered:
        logger.info("reconciler: orders %s, webhooks delivered %s", orders, delivered)
    return {"orders": orders, "webhooks_delivered": delivered, "idempotency_pruned": pruned}
