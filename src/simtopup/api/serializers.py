"""Shaping domain objects into API bodies (docs/api.md field names).

A reseller's top-up is shaped by its domain (resellers/bodies.py), because the webhooks send
the same body; timestamps by core (core/timefmt.py). Both are named here too, for the API's
modules."""

from __future__ import annotations

from typing import Any

from simtopup.catalog.models import Plan
from simtopup.core.money import money
from simtopup.core.timefmt import rfc3339
from simtopup.resellers.bodies import TOPUP_STATUS, topup_bodies, topup_body

__all__ = ["TOPUP_STATUS", "plan_body", "rfc3339", "topup_bodies", "topup_body"]


def plan_body(plan: Plan) -> dict[str, Any]:
    return {
        "code": plan.code,
        "name": plan.name,
        "kind": plan.kind,
        "data_bytes": plan.data_bytes,
        "validity_hours": plan.validity_hours,
        "price": money(plan.price, plan.currency),
    }
