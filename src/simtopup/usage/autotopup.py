"""Automatic top-up (自动充值).

When usage leaves a device below its rule's threshold, a bundle is bought with the card's
credit through an order of channel ``auto``. Limits: at most one such order in flight per
device and at most ``AUTO_TOPUP_DAILY_LIMIT`` placed per 24 h; the customer is told either
way. Attempts of a device are serialised by locking its rule row, so concurrent usage
batches cannot both place an order.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _

from simtopup.accounts.models import Customer
from simtopup.catalog.pricing import get_plan
from simtopup.core.errors import DomainError, FieldError
from simtopup.core.money import format_money
from simtopup.core.transactions import durable
from simtopup.devices.models import Device
from simtopup.notifications.actions import notify
from simtopup.orders.customer import place_balance_order
from simtopup.orders.models import Channel, Order, OrderStatus
from simtopup.usage.bundles import remaining_bytes
from simtopup.usage.models import AutoTopupRule

logger = logging.getLogger(__name__)

IN_FLIGHT = (OrderStatus.AWAITING_PAYMENT, OrderStatus.PAID, OrderStatus.FULFILLING)
# Thresholds beyond this are surely a mistake (1 TB).
MAX_THRESHOLD_BYTES = 1024**4


class DailyLimitReason:
    """Why no top-up was placed, rendered in whatever language is active when shown."""

    def __str__(self) -> str:
        return _("the limit of %(limit)s automatic top-ups a day was reached.") % {
            "limit": settings.AUTO_TOPUP_DAILY_LIMIT
        }


def set_rule(
    customer: Customer, device: Device, *, enabled: bool, threshold_bytes: int, plan_code: str
) -> AutoTopupRule:
    """Create or change the device's rule. The caller has checked that ``customer`` owns
    ``device``."""
    if not 0 <= threshold_bytes <= MAX_THRESHOLD_BYTES:
        raise DomainError(
            "invalid_threshold",
            _("The threshold must be between 0 and 1 TB."),
            422,
            [FieldError("threshold_bytes", "invalid_threshold", _("Choose a threshold in bytes."))],
        )
    plan = get_plan(plan_code, device.credit_account.unit)
    if plan.is_payg:
        raise DomainError(
            "plan_not_allowed",
            _("Automatic top-up buys a daily or monthly pass, not credit."),
            422,
            [FieldError("plan", "plan_not_allowed", _("Choose a daily or monthly pass."))],
        )
    with transaction.atomic():
        rule, _created = AutoTopupRule.objects.update_or_create(
            device=device,
            defaults={
                "customer": customer,
                "enabled": enabled,
                "threshold_bytes": threshold_bytes,
                "plan": plan,
                "last_outcome": "",
            },
        )
    if enabled:
        # The device may already be below the new threshold.
        transaction.on_commit(lambda: _enqueue(device.pk))
    return rule


def due_after_usage(device_ids: list[int]) -> list[int]:
    """Devices of a usage batch that have an enabled rule (the task checks the rest)."""
    # After a failed attempt (credit too low, daily limit) the device waits a while instead of
    # retrying — and notifying — on every usage batch.
    cooldown = timezone.now() - timedelta(seconds=settings.AUTO_TOPUP_RETRY_SECONDS)
    return list(
        AutoTopupRule.objects.filter(enabled=True, device_id__any=set(device_ids))
        .exclude(Q(last_attempt_at__gt=cooldown) & ~Q(last_outcome="placed"))
        .values_list("device_id", flat=True)
    )


def schedule_after_usage(device_ids: list[int]) -> None:
    """Inside the usage transaction: check the devices' rules once it has committed."""
    for device_id in due_after_usage(device_ids):
        transaction.on_commit(lambda device_id=device_id: _enqueue(device_id))  # type: ignore[misc]


def _enqueue(device_id: int) -> None:
    from simtopup.usage.tasks import auto_topup_task

    auto_topup_task.enqueue(device_id)


def run(device_id: int) -> str:
    """Place the automatic top-up of one device if its rule says so. Returns the outcome.
    One transaction, run again if chosen as a lock-conflict victim (core/transactions.py)."""
    return durable(lambda: _run(device_id))


def _run(device_id: int) -> str:
    """:func:`run` inside its transaction."""
    now = timezone.now()
    notice: tuple[str, object] | None = None
    rule = (
        AutoTopupRule.objects.select_for_update(of=("self",))
        .select_related("plan", "customer")
        .filter(device_id=device_id, enabled=True)
        .first()
    )
    if rule is None:
        return "no_rule"
    device = Device.objects.select_related("credit_account", "owner").get(pk=device_id)
    if device.owner_id != rule.customer_id:
        # The card changed hands: the old owner's rule no longer applies.
        AutoTopupRule.objects.filter(pk=rule.pk).update(enabled=False, last_outcome="unbound")
        return "not_owner"
    if remaining_bytes(device) >= rule.threshold_bytes:
        return "above_threshold"
    retry_after = timedelta(seconds=settings.AUTO_TOPUP_RETRY_SECONDS)
    if (
        rule.last_outcome not in ("", "placed")
        and rule.last_attempt_at is not None
        and rule.last_attempt_at > now - retry_after
    ):
        return "cooling_down"
    orders = Order.objects.filter(device_id=device_id, channel=Channel.AUTO)
    if orders.filter(status__in=IN_FLIGHT).exists():
        return "in_flight"
    if (
        orders.filter(created_at__gt=now - timedelta(hours=24)).count()
        >= settings.AUTO_TOPUP_DAILY_LIMIT
    ):
        outcome = "daily_limit"
        reason: object = DailyLimitReason()
        # Said once, not at every usage batch until the day is over.
        notice = None if rule.last_outcome == outcome else ("auto_topup_failed", reason)
    else:
        try:
            with transaction.atomic():
                place_balance_order(rule.customer, device, rule.plan, channel="auto")
        except DomainError as exc:
            outcome = exc.code
            notice = ("auto_topup_failed", exc.message)
        else:
            outcome = "placed"
            notice = ("auto_topup_placed", "")
    AutoTopupRule.objects.filter(pk=rule.pk).update(last_attempt_at=now, last_outcome=outcome)
    if notice is not None:
        template, reason = notice
        # Rendered in the customer's language, not the worker's: lazy texts and the
        # plan's name are resolved under it.
        with translation.override(rule.customer.language):
            context = {
                "device": device.masked,
                "plan": rule.plan.name,
                "amount": format_money(rule.plan.price, rule.plan.currency),
                "reason": str(reason),
            }
        notify(rule.customer, template, context)
    logger.info("auto top-up of device %s: %s", device_id, outcome)
    return outcome
