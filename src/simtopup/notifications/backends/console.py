"""Console sender: writes the message to the server's output (the demo default), so a person
trying simtopup can read their one-time code in the terminal running ``simtopup serve``."""

from __future__ import annotations

import logging
import sys
from typing import ClassVar

from simtopup.notifications.senders import Message

logger = logging.getLogger(__name__)


class ConsoleSender:
    channels: ClassVar[frozenset[str]] = frozenset({"sms", "email"})

    def send(self, message: Message) -> None:
        text = (
            f"--- {message.channel} to {message.recipient} ---\n"
            + (f"Subject: {message.subject}\n" if message.channel == "email" else "")
            + f"{message.body}\n---"
        )
        # Straight to stdout (flushed) so it shows whatever the logging configuration is;
        # the log line leaves a trace in structured logs too.
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        logger.info("console sender: %s message to %s", message.channel, message.recipient)
