"""One reconciler pass: finish stuck orders, settle payments left pending, deliver due
webhooks, prune old keys."""

from __future__ import annotations

import logging

from simtopup.accounts.login import prune_login_data
from simtopup.api.idempotency import prune
from simtopup.orders.actions import reconcile
from simtopup.orders.customer import prune_quotes
from simtopup.payments.actions import sweep as sweep_payments
from simtopup.resellers.webhooks import deliver_due

logger = logging.getLogger(__name__)


def run_janitor() -> dict[str, object]:
    orders = reconcile()
    payments = sweep_payments()
    delivered = deliver_due()
    pruned = prune()
    prune_quotes()
    if orders or payments or delivered:
        logger.info(
            "reconciler: orders %s, payments %s, webhooks delivered %s",
            orders,
            payments,
            delivered,
        )
    return {
        "orders": orders,
        "payments": payments,
        "webhooks_delivered": delivered,
        "idempotency_pruned": pruned,
        "login_codes_pruned": prune_login_data(),
    }
