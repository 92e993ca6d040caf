"""Telling a customer something: by SMS to their phone, else by email.

Sending is a side effect: :func:`notify` schedules it for after the current transaction
commits (nothing is sent for work that was rolled back). A failed delivery is logged and
never undoes the caller's work.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial
from typing import Any, Protocol

from django.db import transaction
from django.utils import translation

from simtopup.notifications.senders import Channel, Message, get_sender
from simtopup.notifications.templates import TEMPLATES

logger = logging.getLogger(__name__)


class Customer(Protocol):
    """Whom to tell (``simtopup.accounts.models.Customer`` is one). Named by the fields read:
    accounts sends its login codes through this package, so this one does not import it."""

    @property
    def phone(self) -> str | None: ...
    @property
    def email(self) -> str | None: ...
    @property
    def language(self) -> str: ...


def render(template_key: str, context: Mapping[str, Any], language: str) -> tuple[str, str]:
    """(subject, body) of a template in ``language``. Unknown keys raise KeyError."""
    template = TEMPLATES[template_key]
    with translation.override(language):
        values = {k: str(v) for k, v in context.items()}
        return str(template.subject), str(template.body) % values


def channel_for(customer: Customer, channel: Channel | None = None) -> tuple[Channel, str]:
    """Phone customers get an SMS, email customers an email; ``channel``: this one, which the
    customer must have (ValueError otherwise)."""
    if channel is not None:
        recipient = customer.phone if channel == "sms" else customer.email
        if not recipient:
            raise ValueError(f"the customer has no {channel} contact")
        return channel, recipient
    if customer.phone:
        return "sms", customer.phone
    assert customer.email, "a customer has a phone or an email (database constraint)"
    return "email", customer.email


def deliver(message: Message, template_key: str = "") -> bool:
    """Hand ``message`` to the configured sender now; True when accepted. Failures are
    logged, never raised: a message is a side effect and must not undo the caller's work."""
    try:
        get_sender(message.channel).send(message)
    except Exception:
        logger.exception(
            "could not send %s message %r to %s", message.channel, template_key, message.recipient
        )
        return False
    return True


def send_now(
    channel: Channel,
    recipient: str,
    template_key: str,
    context: Mapping[str, Any],
    language: str,
) -> bool:
    """Render and send at once (the caller is already past its commit)."""
    subject, body = render(template_key, context, language)
    return deliver(Message(channel, recipient, subject, body, language), template_key)


def notify(
    customer: Customer,
    template_key: str,
    context: Mapping[str, Any],
    *,
    channel: Channel | None = None,
) -> None:
    """Tell ``customer`` something (``TEMPLATES[template_key]``) by SMS to their phone, else
    by email (or by ``channel``, see :func:`channel_for`), in their language, once the
    current transaction commits. Safe to call inside ``transaction.atomic()``; nothing is
    sent if it rolls back.

    Rendered now, so an unknown template or a missing placeholder fails at the call site.
    Pass lazy translations (``gettext_lazy``) as context values to have them rendered in the
    customer's language too.
    """
    via, recipient = channel_for(customer, channel)
    subject, body = render(template_key, context, customer.language)
    message = Message(via, recipient, subject, body, customer.language)
    transaction.on_commit(partial(deliver, message, template_key), robust=True)
