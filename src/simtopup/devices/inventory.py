"""Adding devices to inventory (one by one, or in bulk from the CSV import)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

from django.conf import settings
from django.db import transaction

from simtopup.devices.binding import hash_pin
from simtopup.devices.models import Device, DeviceKind
from simtopup.ledger.models import BYTES, Account, AccountKind


class DeviceSpec(TypedDict, total=False):
    kind: str
    imei: str | None
    iccid: str | None
    eid: str | None
    serial: str | None
    activation_code: str
    pin: str  # the binding PIN as printed (hashed here); empty: none


def create_devices(specs: Sequence[DeviceSpec], *, currency: str | None = None) -> list[Device]:
    """Create devices with their credit and overage ledger accounts, in a few bulk inserts.

    Identifiers must already be normalised (see :mod:`simtopup.devices.identifiers`); an
    identifier already in inventory raises IntegrityError (unique constraints) and the
    caller's transaction rolls back. A bad PIN raises ValueError (see
    :func:`simtopup.devices.binding.pin_problem`).
    """
    currency = currency or settings.CURRENCY
    accounts: list[Account] = []
    for spec in specs:
        first = spec.get("iccid") or spec.get("eid") or spec.get("imei") or spec.get("serial")
        if not first:
            raise ValueError("a device needs at least one identifier")
        accounts.append(
            Account(
                code=f"device:{first}:credit:{currency}",
                kind=AccountKind.DEVICE_CREDIT,
                unit=currency,
            )
        )
        accounts.append(
            Account(
                code=f"device:{first}:overage:{BYTES}",
                kind=AccountKind.DEVICE_OVERAGE,
                unit=BYTES,
                allow_negative=True,
            )
        )
    with transaction.atomic():
        Account.objects.bulk_create(accounts, batch_size=500)
        devices = [
            Device(
                kind=spec.get("kind") or DeviceKind.ESIM,
                imei=spec.get("imei") or None,
                iccid=spec.get("iccid") or None,
                eid=spec.get("eid") or None,
                serial=spec.get("serial") or None,
                activation_code=spec.get("activation_code") or "",
                pin_hash=hash_pin(pin) if (pin := spec.get("pin")) else "",
                credit_account=accounts[2 * i],
                overage_account=accounts[2 * i + 1],
            )
            for i, spec in enumerate(specs)
        ]
        return Device.objects.bulk_create(devices, batch_size=500)


def create_device(
    *,
    kind: str = DeviceKind.ESIM,
    imei: str | None = None,
    iccid: str | None = None,
    eid: str | None = None,
    serial: str | None = None,
    activation_code: str = "",
    pin: str = "",
    currency: str | None = None,
) -> Device:
    """Create one device with its ledger accounts."""
    spec: DeviceSpec = {
        "kind": kind,
        "imei": imei,
        "iccid": iccid,
        "eid": eid,
        "serial": serial,
        "activation_code": activation_code,
        "pin": pin,
    }
    return create_devices([spec], currency=currency)[0]
