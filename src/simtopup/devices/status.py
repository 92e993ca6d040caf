"""A card's status changed by customer service: suspended (lost, stolen, misuse) and
reinstated. A suspended card cannot be topped up (``Device.rechargeable``) until it is
reinstated.

Each change is a compare-and-swap on the status the change starts from, with its audit row
(``device.suspend`` / ``device.reinstate``, the reason, before and after) in the same
transaction: a replayed suspension finds the card suspended already and is refused
(``already_suspended``), so it is recorded once. The console's device page records a status
edited there with the same actions (:func:`status_action`).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils.translation import gettext_lazy as _

from simtopup.audit.log import record
from simtopup.audit.models import Action
from simtopup.core.errors import DomainError, field_error
from simtopup.devices.models import Device, DeviceStatus

# Why a card is suspended (said on the form and kept on the audit row).
SUSPEND_CAUSES = {
    "lost": _("lost"),
    "stolen": _("stolen"),
    "other": _("other"),
}
SUSPENDABLE = (DeviceStatus.IN_STOCK, DeviceStatus.ACTIVE)


def status_action(before: Any, after: Any) -> Action:
    """The audit action of a status change ``before`` → ``after`` (any other change of the
    card: ``device.change``)."""
    if after == before or not after:
        return Action.DEVICE_CHANGE
    if after == DeviceStatus.SUSPENDED:
        return Action.DEVICE_SUSPEND
    if after == DeviceStatus.RETIRED:
        return Action.DEVICE_RETIRE
    if before in (DeviceStatus.SUSPENDED, DeviceStatus.RETIRED):
        return Action.DEVICE_REINSTATE
    return Action.DEVICE_CHANGE


def reinstated_status(device: Device) -> DeviceStatus:
    """What a reinstated card becomes: active if it ever was, else back in stock."""
    return DeviceStatus.ACTIVE if device.activated_at is not None else DeviceStatus.IN_STOCK


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise field_error("reason_required", _("Say why."), "reason")
    return reason


def suspend_card(
    device: Device, *, actor: str, ip: str | None, reason: str, cause: str = "other"
) -> Device:
    """Suspend an in-stock or active card (``cause``: lost, stolen or other)."""
    reason = _reason(reason)
    if cause not in SUSPEND_CAUSES:
        raise field_error("invalid_cause", _("Choose why the card is suspended."), "cause")
    with transaction.atomic(durable=True):
        # Locked: the status the audit row says it was is the one the update changed.
        before = (
            Device.objects.select_for_update()
            .filter(pk=device.pk)
            .values_list("status", flat=True)
            .first()
        )
        done = Device.objects.filter(pk=device.pk, status__in=SUSPENDABLE).update(
            status=DeviceStatus.SUSPENDED
        )
        if done != 1:
            if before == DeviceStatus.SUSPENDED:
                raise DomainError("already_suspended", _("This card is suspended already."), 409)
            raise DomainError(
                "not_suspendable", _("Only a card in stock or active can be suspended."), 409
            )
        record(
            Action.DEVICE_SUSPEND,
            device,
            actor=actor,
            ip=ip,
            before={"status": before},
            after={"status": DeviceStatus.SUSPENDED, "cause": cause},
            reason=reason,
        )
    device.refresh_from_db()
    return device


def reinstate_card(device: Device, *, actor: str, ip: str | None, reason: str) -> Device:
    """Reinstate a suspended card (a retired one stays retired: ``not_suspended``)."""
    reason = _reason(reason)
    target = reinstated_status(device)
    with transaction.atomic(durable=True):
        done = Device.objects.filter(pk=device.pk, status=DeviceStatus.SUSPENDED).update(
            status=target
        )
        if done != 1:
            raise DomainError("not_suspended", _("This card is not suspended."), 409)
        record(
            Action.DEVICE_REINSTATE,
            device,
            actor=actor,
            ip=ip,
            before={"status": DeviceStatus.SUSPENDED},
            after={"status": target},
            reason=reason,
        )
    device.refresh_from_db()
    return device
