"""Our plans, sales and bundles in Airalo's field names and units.

Airalo's units: data in MB (``amount``, ``total``, ``remaining``; 1 MB = 1024² bytes, as our
data sizes are written), validity in days (``day``), prices as JSON numbers in
``currency`` (here the reseller's float currency; each number is exactly our decimal
amount). Fields Airalo has and we have no use for keep their type with an empty value.
Fields of ours beside theirs (exact ``*_bytes``, ``status``, ``reference``,
``float_balance``) are extra keys, which Airalo's clients ignore.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils.text import slugify

from simtopup.catalog.display import format_data, plan_detail
from simtopup.catalog.models import Plan
from simtopup.core.money import to_decimal_string
from simtopup.orders.models import Order, OrderStatus
from simtopup.usage.models import Bundle
from simtopup.usage.reads import bundle_state

MB = 1024**2
PRICING = {"model": "net_pricing", "discount_percentage": 0}

# Our bundle states (usage/reads.py) as Airalo's SIM and package statuses.
STATUS = {
    "active": "ACTIVE",
    "used_up": "FINISHED",
    "upcoming": "NOT_ACTIVE",
    "expired": "EXPIRED",
}


def number(minor: int, currency: str) -> int | float:
    """A price as a JSON number: ``460`` fen → ``4.6``. The float's shortest form is the
    decimal itself for any amount of up to 15 digits."""
    value = Decimal(to_decimal_string(minor, currency))
    return int(value) if value == value.to_integral_value() else float(value)


def days(plan: Plan) -> int:
    return -(-plan.validity_hours // 24)  # a started day counts


def airalo_time(value: datetime | None) -> str | None:
    """``2025-11-18 13:37:07`` (UTC), as Airalo writes order and usage times."""
    return None if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def iso_time(value: datetime | None) -> str | None:
    """``2023-01-09T10:30:45+00:00``, as Airalo writes package history times."""
    return None if value is None else value.replace(microsecond=0).isoformat()


def data_text(plan: Plan) -> str:
    return format_data(plan.data_bytes) if not plan.is_payg else plan_detail(plan)


def package(plan: Plan, net: int) -> dict[str, Any]:
    """A plan as one of Airalo's top-up packages, with this reseller's wholesale price."""
    return {
        "id": plan.code,
        "type": "topup",
        "price": number(plan.price, plan.currency),
        "net_price": number(net, plan.currency),
        "amount": plan.data_bytes // MB,
        "day": days(plan),
        "is_unlimited": False,
        "title": plan.name,
        "data": data_text(plan),
        "short_info": plan_detail(plan),
        "voice": None,
        "text": None,
        "prices": {
            "net_price": {plan.currency: number(net, plan.currency)},
            "recommended_retail_price": {plan.currency: number(plan.price, plan.currency)},
        },
        "qr_installation": "",
        "manual_installation": "",
        "is_fair_usage_policy": False,
        "fair_usage_policy": None,
        # Ours: the exact size and the plan kind (daily, monthly, payg: credit on the card).
        "data_bytes": plan.data_bytes,
        "kind": plan.kind,
    }


def catalogue_entry(packages: list[dict[str, Any]]) -> dict[str, Any]:
    """Airalo nests packages under a destination and its operators. Our cards are the
    operator's own, not a country's: one destination (no country code, as Airalo's global
    packages have none) with one operator, the operator running this installation."""
    name = settings.OPERATOR_NAME
    return {
        "slug": slugify(name) or "simtopup",
        "country_code": "",
        "title": name,
        "image": None,
        "operators": [
            {
                "id": 1,
                "style": "light",
                "gradient_start": "",
                "gradient_end": "",
                "type": "global",
                "is_prepaid": True,
                "title": name,
                "esim_type": "Prepaid",
                "warning": None,
                "apn_type": "automatic",
                "apn_value": None,
                "is_roaming": False,
                "info": [],
                "image": None,
                "plan_type": "data",
                "activation_policy": "first-usage",
                "is_kyc_verify": False,
                "rechargeability": True,
                "other_info": None,
                "coverages": [],
                "countries": [],
                "packages": packages,
            }
        ],
    }


def topup_order(order: Order, description: str, ours: dict[str, Any]) -> dict[str, Any]:
    """The answer to a top-up order. ``ours``: the reseller API's body of the same sale
    (resellers/bodies.py), whose status, reference, receipt and float are added."""
    plan = order.plan
    return {
        "id": order.pk,
        "code": order.receipt_no or str(order.pk),
        "package_id": plan.code,
        "currency": order.currency,
        "quantity": 1,
        "type": "topup",
        "description": description,
        "esim_type": "Prepaid",
        "validity": days(plan),
        "package": plan.name,
        "data": data_text(plan),
        "price": number(order.retail_amount, order.currency),
        "pricing_model": "net_pricing",
        "text": None,
        "voice": None,
        "net_price": number(order.amount, order.currency),
        "created_at": airalo_time(order.created_at),
        "manual_installation": "",
        "qrcode_installation": "",
        "installation_guides": {},
        "status": ours["status"],
        "reference": ours["reference"],
        "receipt_no": ours["receipt_no"],
        "float_balance": ours["float_balance"],
    }


def usage(status: str, bundles: list[Bundle], now: datetime) -> dict[str, Any]:
    """A card's data now, in Airalo's usage shape: the bundles valid now added up."""
    states = [bundle_state(b.starts_at, b.expires_at, b.account.balance, now) for b in bundles]
    current = [b for b, s in zip(bundles, states, strict=True) if s in {"active", "used_up"}]
    remaining = sum(max(b.account.balance, 0) for b in current)
    total = sum(b.granted_bytes for b in current)
    if status == "retired":
        shown = "RECYCLED"
    elif status == "suspended":
        shown = "UNKNOWN"
    else:
        shown = next(
            (STATUS[s] for s in ("active", "used_up", "upcoming", "expired") if s in states),
            "NOT_ACTIVE",
        )
    expiries = [b.expires_at for b in (current or bundles)]
    return {
        "remaining": remaining // MB,
        "total": total // MB,
        "expired_at": airalo_time(max(expiries)) if expiries else None,
        "is_unlimited": False,
        "status": shown,
        "remaining_voice": 0,
        "remaining_text": 0,
        "total_voice": 0,
        "total_text": 0,
        "remaining_bytes": remaining,
        "total_bytes": total,
    }


def history_item(order: Order, now: datetime) -> dict[str, Any]:
    """One of this reseller's top-ups of a card, in Airalo's package history shape."""
    plan = order.plan
    bundle: Bundle | None = getattr(order, "bundle", None)
    if bundle is not None:
        state = bundle_state(bundle.starts_at, bundle.expires_at, bundle.account.balance, now)
        status = STATUS[state]
        remaining = max(bundle.account.balance, 0) if state != "expired" else 0
    else:
        # Not fulfilled yet, or pay-per-use credit (no bundle: it is on the card's credit).
        status = "ACTIVE" if order.status == OrderStatus.FULFILLED else "NOT_ACTIVE"
        remaining = 0
    return {
        "id": order.pk,
        "status": status,
        "remaining": remaining // MB,
        "activated_at": iso_time(bundle.starts_at) if bundle else None,
        "expired_at": iso_time(bundle.expires_at) if bundle else None,
        "finished_at": None,
        "package": {
            "id": plan.code,
            "type": "topup",
            "price": number(order.retail_amount, order.currency),
            "net_price": number(order.amount, order.currency),
            "amount": plan.data_bytes // MB,
            "day": days(plan),
            "is_unlimited": False,
            "title": plan.name,
            "data": data_text(plan),
            "short_info": None,
        },
        "remaining_bytes": remaining,
        "reference": order.reference,
    }
