"""orders reaches the domains above it only through what they register at start-up
(orders/payers.py): every channel has its payer, a bundle plan its opener, and a channel
nobody registered is an error, never a refund silently skipped."""

from __future__ import annotations

import pytest

from simtopup.orders import payers
from simtopup.orders.models import Channel, Order
from simtopup.payments.actions import CUSTOMER_PAYER
from simtopup.resellers.actions import RESELLER_PAYER
from simtopup.usage.bundles import open_bundle


def test_every_channel_has_the_payer_of_its_domain() -> None:
    assert payers.payer_of(Order(channel=Channel.RESELLER)) is RESELLER_PAYER
    for channel in (Channel.APP, Channel.WEB, Channel.AUTO):
        assert payers.payer_of(Order(channel=channel)) is CUSTOMER_PAYER
    assert {c.value for c in Channel} <= set(payers._PAYERS)


def test_usage_opens_the_bundles() -> None:
    assert payers.bundle_opener() is open_bundle


def test_a_channel_nobody_registered_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(payers, "_PAYERS", {})
    with pytest.raises(RuntimeError, match="no payer registered for reseller orders"):
        payers.payer_of(Order(channel=Channel.RESELLER))
    monkeypatch.setattr(payers, "_BUNDLE_OPENER", [])
    with pytest.raises(RuntimeError, match="no bundle opener"):
        payers.bundle_opener()
