"""Senders: backends behind one small protocol with capability flags.

A sender declares the channels it can deliver (``{"sms"}``, ``{"email"}`` or both) and sends
one :class:`Message`. Which sender serves a channel is a setting (``SIMTOPUP_SMS_SENDER``,
``SIMTOPUP_EMAIL_SENDER``): a short name below or a dotted path to a class.

``send`` raises :class:`SendError` (or any exception) when delivery failed; callers log it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol

from django.conf import settings
from django.utils.module_loading import import_string

Channel = Literal["sms", "email"]


@dataclass(frozen=True)
class Message:
    channel: Channel
    recipient: str  # E.164 phone number or email address
    subject: str  # emails only; SMS senders ignore it
    body: str
    language: str = "zh-hans"


class SendError(Exception):
    """The backend could not hand the message over (provider down, refused, timed out)."""


class Sender(Protocol):
    channels: ClassVar[frozenset[str]]

    def send(self, message: Message) -> None: ...


SENDERS = {
    "console": "simtopup.notifications.backends.console.ConsoleSender",
    "memory": "simtopup.notifications.backends.memory.MemorySender",
    "smtp": "simtopup.notifications.backends.smtp.SmtpSender",
    "http": "simtopup.notifications.backends.http_sms.HttpSmsSender",
}


def get_sender(channel: Channel) -> Sender:
    """A sender for ``channel``, as configured. Built on each call: settings may change in
    tests, and construction is cheap (connections are opened in ``send``)."""
    name = settings.SMS_SENDER if channel == "sms" else settings.EMAIL_SENDER
    cls = import_string(SENDERS.get(name, name))
    sender: Sender = cls()
    if channel not in sender.channels:
        raise ValueError(f"sender {name!r} cannot deliver {channel} messages")
    return sender
