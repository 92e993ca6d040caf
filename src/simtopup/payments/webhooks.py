"""Incoming provider notifications: verify, store each event once, apply, acknowledge."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from simtopup.payments.actions import record_event
from simtopup.payments.providers.base import Ack, InvalidNotification
from simtopup.payments.registry import get_provider, is_enabled

logger = logging.getLogger(__name__)


def receive(provider_name: str, headers: Mapping[str, str], body: bytes) -> Ack:
    """Handle one notification request; the answer is the provider's own ack format.

    A forged, tampered or stale notification changes nothing and is refused (logged). Each
    event of an authentic one is stored once and applied once; a duplicate is acknowledged
    so the provider stops retrying.
    """
    provider = get_provider(provider_name)
    try:
        events = provider.parse_notification(headers, body)
    except InvalidNotification as exc:
        logger.warning("refused a %s notification: %s", provider_name, exc.message)
        return provider.ack(False)
    for event in events:
        outcome = record_event(provider, event)
        logger.info(
            "%s event %s (%s) for %s: %s",
            provider_name,
            event.event_id,
            event.kind,
            event.reference,
            outcome,
        )
    return provider.ack(True)


def known(provider_name: str) -> bool:
    return is_enabled(provider_name)
