"""Granting data bundles (the usage domain owns bundle rows)."""

from __future__ import annotations

from django.utils import timezone

from simtopup.devices.models import Device
from simtopup.ledger.actions import Posting, system_account
from simtopup.ledger.keys import order_key
from simtopup.ledger.models import BYTES, Account, AccountKind
from simtopup.network.adapters import Grant
from simtopup.orders.models import Order
from simtopup.usage.models import Bundle


def open_bundle(order: Order, grant: Grant) -> Posting:
    """Create the order's bundle and return the posting that moves its bytes from issuance
    into it, for the caller to post with the rest of the fulfilment (one ledger write).

    Runs inside the fulfilment transaction; the OneToOne on ``order`` and the unique account
    code both make a second grant for the same order impossible.
    """
    account = Account.objects.create(
        code=f"bundle:order:{order.pk}", kind=AccountKind.BUNDLE, unit=BYTES
    )
    bundle = Bundle.objects.create(
        device_id=order.device_id,
        plan_id=order.plan_id,
        order=order,
        account=account,
        granted_bytes=grant.granted_bytes,
        starts_at=grant.starts_at,
        expires_at=grant.expires_at,
    )
    posting = Posting(
        system_account("data_issued", BYTES),
        account,
        grant.granted_bytes,
        "bundle_grant",
        order_key(order.pk, "grant"),
        f"bundle {bundle.pk} for order {order.pk}",
    )
    return posting


def remaining_bytes(device: Device) -> int:
    """Remaining data over the device's bundles that are valid now."""
    now = timezone.now()
    ids = Bundle.objects.filter(device=device, starts_at__lte=now, expires_at__gt=now).values(
        "account_id"
    )
    return sum(Account.objects.filter(id__in=ids, balance__gt=0).values_list("balance", flat=True))
