"""In-memory sender for tests (like Django's locmem email backend): messages are appended to
:data:`outbox`."""

from __future__ import annotations

from typing import ClassVar

from simtopup.notifications.senders import Message

outbox: list[Message] = []


class MemorySender:
    channels: ClassVar[frozenset[str]] = frozenset({"sms", "email"})

    def send(self, message: Message) -> None:
        outbox.append(message)
