"""SMTP email sender (``smtplib``): STARTTLS, implicit TLS or plain, optional login."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import ClassVar

from django.conf import settings

from simtopup.notifications.senders import Message, SendError


class SmtpSender:
    channels: ClassVar[frozenset[str]] = frozenset({"email"})

    def build(self, message: Message) -> EmailMessage:
        email = EmailMessage()
        email["From"] = settings.EMAIL_FROM
        email["To"] = message.recipient
        email["Subject"] = message.subject
        email["Date"] = formatdate(localtime=False)
        email["Message-ID"] = make_msgid(
            domain=settings.EMAIL_FROM.rpartition("@")[2].strip(">") or None
        )
        email.set_content(message.body)  # UTF-8, for Chinese text
        # After set_content, which replaces every Content-* header.
        email["Content-Language"] = message.language
        return email

    def tls_context(self) -> ssl.SSLContext:
        """Certificate and host name verified, always (against SMTP_CA_FILE if set)."""
        return ssl.create_default_context(cafile=settings.SMTP_CA_FILE or None)

    def send(self, message: Message) -> None:
        email = self.build(message)
        security = settings.SMTP_SECURITY.lower()
        if security not in {"starttls", "ssl", "none"}:
            # Never fall back to plain text on a typo.
            raise SendError(
                f"SIMTOPUP_SMTP_SECURITY must be starttls, ssl or none, not {security!r}"
            )
        timeout = settings.SMTP_TIMEOUT_SECONDS
        try:
            smtp: smtplib.SMTP
            if security == "ssl":
                smtp = smtplib.SMTP_SSL(
                    settings.SMTP_HOST,
                    settings.SMTP_PORT,
                    timeout=timeout,
                    context=self.tls_context(),
                )
            else:
                smtp = smtplib.SMTP(settings.SMTP_HOST, settings.SMTP_PORT, timeout=timeout)
            with smtp:
                if security == "starttls":
                    smtp.starttls(context=self.tls_context())
                if settings.SMTP_USER:
                    smtp.login(settings.SMTP_USER, settings.SMTP_PASSWORD)
                refused = smtp.send_message(email)
        except (OSError, smtplib.SMTPException) as exc:
            raise SendError(f"SMTP delivery to {message.recipient} failed: {exc}") from exc
        if refused:
            raise SendError(f"SMTP server refused {sorted(refused)}")
