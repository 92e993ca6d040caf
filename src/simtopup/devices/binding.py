"""Binding a card to a customer's account ("add to my account"), unbinding, nicknames.

Binding is a compare-and-swap on ``owner IS NULL``: of two customers binding the same card
at once, exactly one wins and the other gets 409 ``device_bound_elsewhere``. Binding a card
that is already mine again is not an error: it answers with the card (and updates the
nickname when one is given), so a retried request is harmless.
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from simtopup.accounts.models import Customer
from simtopup.core.errors import DomainError, FieldError
from simtopup.devices.identifiers import find_device
from simtopup.devices.models import Device


def not_found() -> DomainError:
    return DomainError("not_found", _("There is no such card in your account."), 404)


def my_devices(customer: Customer) -> QuerySet[Device]:
    return Device.objects.filter(owner=customer)


def my_device(customer: Customer, device_id: int) -> Device:
    """One of the customer's cards; another customer's card is ``not_found`` (never reveal it
    exists)."""
    device = my_devices(customer).select_related("credit_account").filter(pk=device_id).first()
    if device is None:
        raise not_found()
    return device


def bind_device(customer: Customer, identifier: str, nickname: str = "") -> tuple[Device, bool]:
    """Bind the card ``identifier`` (IMEI, ICCID, EID or serial) to ``customer``:
    (the card, True if this call bound it; False if it was already theirs)."""
    device = find_device(identifier)
    now = timezone.now()
    if Device.objects.filter(pk=device.pk, owner__isnull=True).update(
        owner=customer, bound_at=now, nickname=nickname
    ):
        device.refresh_from_db()
        return device, True
    if nickname:
        Device.objects.filter(pk=device.pk, owner=customer).update(nickname=nickname)
    device.refresh_from_db()
    if device.owner_id == customer.pk:
        return device, False
    message = _(
        "This card is already in another account. If it is yours, ask its current holder to "
        "remove it, or contact customer service."
    )
    raise DomainError(
        "device_bound_elsewhere",
        message,
        409,
        errors=[FieldError("device", "device_bound_elsewhere", message)],
    )


def unbind_device(customer: Customer, device_id: int) -> None:
    """Remove the card from the customer's account (its credit and bundles stay on it)."""
    if not Device.objects.filter(pk=device_id, owner=customer).update(
        owner=None, bound_at=None, nickname=""
    ):
        raise not_found()


def rename_device(customer: Customer, device_id: int, nickname: str) -> Device:
    if not Device.objects.filter(pk=device_id, owner=customer).update(nickname=nickname):
        raise not_found()
    return my_device(customer, device_id)
