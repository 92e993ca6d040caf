"""Adding devices to inventory (one by one, or from the CSV import)."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from simtopup.devices.models import Device, DeviceKind
from simtopup.ledger.actions import open_account
from simtopup.ledger.models import BYTES, AccountKind


@transaction.atomic
def create_device(
    *,
    kind: str = DeviceKind.ESIM,
    imei: str | None = None,
    iccid: str | None = None,
    eid: str | None = None,
    serial: str | None = None,
    activation_code: str = "",
    currency: str | None = None,
) -> Device:
    """Create a device with its credit and overage ledger accounts.

    Identifiers must already be normalised (see :mod:`simtopup.devices.identifiers`).
    """
    currency = currency or settings.CURRENCY
    first = iccid or eid or imei or serial
    if not first:
        raise ValueError("a device needs at least one identifier")
    credit = open_account(f"device:{first}:credit:{currency}", AccountKind.DEVICE_CREDIT, currency)
    overage = open_account(
        f"device:{first}:overage:{BYTES}", AccountKind.DEVICE_OVERAGE, BYTES, allow_negative=True
    )
    return Device.objects.create(
        kind=kind,
        imei=imei or None,
        iccid=iccid or None,
        eid=eid or None,
        serial=serial or None,
        activation_code=activation_code,
        credit_account=credit,
        overage_account=overage,
    )
