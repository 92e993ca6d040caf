"""Importing a wholesale provider's top-up packages as our plans (``simtopup network
sync-catalogue``).

Each package becomes one plan (``<provider>-<package id>``), linked to it by an
:class:`~simtopup.network.models.UpstreamPackage`. A new plan is inactive: the operator turns it
on (console) once its name and price suit. The price is the margin rule over the provider's
net price: ``net × rate × (10,000 + margin_bps) / 10,000``, rounded up to the minor unit of the
plan's currency (the operator's, ``--currency``; ``rate``: units of it per unit of the
provider's currency, required when the two differ). While a plan is inactive a sync brings its size, validity and price up to date;
an active plan keeps the price the operator sells it at (only the net price is recorded, and a
plan now sold below cost is reported). A package the provider no longer lists switches its plan
off. Every plan created or changed is in the audit log (the OS user, the reason).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from simtopup.audit.log import cli_actor, record, snapshot
from simtopup.audit.models import Action
from simtopup.catalog.models import Plan, PlanKind
from simtopup.core.money import exponent
from simtopup.network.airalo import MB, minor
from simtopup.network.models import UpstreamPackage

PLAN_FIELDS = ("data_bytes", "validity_hours", "price", "currency", "name_en", "active")


@dataclass
class SyncResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)
    below_cost: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.__dict__.items()}


def plan_code(provider: str, package_id: str) -> str:
    code = slugify(f"{provider}-{package_id}")
    if len(code) <= 40:
        return code
    digest = hashlib.sha256(package_id.encode()).hexdigest()[:8]
    return f"{code[:31]}-{digest}"


def retail(net: int, margin_bps: int) -> int:
    return math.ceil(net * (10_000 + margin_bps) / 10_000)


class RateRequired(ValueError):
    """The provider prices in another currency than the plans', and no rate was given."""


def cost(net: int, currency: str, plan_currency: str, rate: Decimal | None) -> int | None:
    """The provider's net price in minor units of the plan's currency (rounded up)."""
    if plan_currency == currency:
        return net
    if rate is None:
        return None
    major = Decimal(net) / (10 ** exponent(currency))
    return math.ceil(major * rate * (10 ** exponent(plan_currency)))


def sync(
    provider: str,
    packages: list[dict[str, Any]],
    margin_bps: int,
    *,
    currency: str | None = None,
    rate: Decimal | None = None,
) -> SyncResult:
    """``packages``: the provider's, flat (``id``, ``title``, ``amount`` MB, ``day``,
    ``net_price``, ``currency``) as :meth:`Client.packages` lists them. ``currency``: the
    plans' (None: the provider's own); ``rate``: plan currency per provider currency."""
    theirs = {str(p.get("currency") or "USD").upper() for p in packages}
    if currency is not None and rate is None and theirs - {currency}:
        raise RateRequired(", ".join(sorted(theirs - {currency})))
    result = SyncResult()
    now = timezone.now()
    actor = cli_actor()
    reason = f"catalogue sync from {provider} (margin {margin_bps} bps"
    reason += f", {rate} {currency} per unit)" if rate is not None else ")"
    seen: set[str] = set()
    for package in packages:
        package_id = str(package.get("id") or "")
        their_currency = str(package.get("currency") or "USD").upper()
        plan_currency = currency or their_currency
        net = minor(package.get("net_price"), their_currency)
        price_cost = cost(net, their_currency, plan_currency, rate) if net else None
        try:
            size = int(package.get("amount") or 0) * MB
            hours = int(package.get("day") or 0) * 24
        except (TypeError, ValueError):
            size = hours = 0
        if not package_id or not net or not price_cost or net <= 0 or size <= 0 or hours <= 0:
            result.skipped.append(package_id or "?")
            continue
        seen.add(package_id)
        title = str(package.get("title") or package_id)[:100]
        wanted = {
            "data_bytes": size,
            "validity_hours": hours,
            "price": retail(price_cost, margin_bps),
            "currency": plan_currency,
            "name_en": title,
        }
        with transaction.atomic():
            link = (
                UpstreamPackage.objects.select_for_update()
                .select_related("plan")
                .filter(provider=provider, package_id=package_id)
                .first()
            )
            link_values = {
                "title": title[:200],
                "net_price": net,
                "currency": their_currency,
                "data_bytes": size,
                "validity_hours": hours,
                "listed": True,
                "synced_at": now,
            }
            if link is None:
                plan = Plan.objects.create(
                    code=plan_code(provider, package_id),
                    kind=PlanKind.DAILY if hours <= 24 else PlanKind.MONTHLY,
                    name_zh_hans=title,
                    name_zh_hant=title,
                    active=False,
                    **wanted,
                )
                UpstreamPackage.objects.create(
                    provider=provider, package_id=package_id, plan=plan, **link_values
                )
                record(
                    Action.PLAN_CHANGE,
                    plan,
                    actor=actor,
                    after=snapshot(plan, PLAN_FIELDS),
                    reason=reason,
                )
                result.created.append(plan.code)
                continue
            UpstreamPackage.objects.filter(pk=link.pk).update(**link_values)
            plan = link.plan
            before = snapshot(plan, PLAN_FIELDS)
            changes: dict[str, Any] = wanted if not plan.active else {}
            now_cost = cost(net, their_currency, plan.currency, rate)
            if plan.active and now_cost is not None and plan.price < now_cost:
                result.below_cost.append(plan.code)
            if any(getattr(plan, k) != v for k, v in changes.items()):
                for name, value in changes.items():
                    setattr(plan, name, value)
                plan.save(update_fields=list(changes))
                record(
                    Action.PLAN_CHANGE,
                    plan,
                    actor=actor,
                    before=before,
                    after=snapshot(plan, PLAN_FIELDS),
                    reason=reason,
                )
                result.updated.append(plan.code)
    gone = UpstreamPackage.objects.filter(provider=provider, listed=True).exclude(
        package_id__in=seen
    )
    for link in gone.select_related("plan"):
        with transaction.atomic():
            UpstreamPackage.objects.filter(pk=link.pk).update(listed=False, synced_at=now)
            plan = link.plan
            if plan.active:
                before = snapshot(plan, PLAN_FIELDS)
                Plan.objects.filter(pk=plan.pk).update(active=False)
                plan.active = False
                record(
                    Action.PLAN_CHANGE,
                    plan,
                    actor=actor,
                    before=before,
                    after=snapshot(plan, PLAN_FIELDS),
                    reason=f"{reason}: no longer listed",
                )
            result.unlisted.append(plan.code)
    return result
