"""Customer service actions: store a message from the contact form, tell the operator.

A ticket is stored first; the operator is emailed after the commit (``SUPPORT_EMAIL``, through
the configured email sender). Without an address, or when the email fails, the ticket is
still stored and logged: the operator sees it in the console either way. Messages are rate
limited per client IP (``SUPPORT_IP_LIMITS``) so the form cannot be used to flood the queue.
"""

from __future__ import annotations

import logging
import re
from functools import partial

from django.conf import settings
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from simtopup.accounts import ratelimit
from simtopup.accounts.models import Customer
from simtopup.notifications.actions import deliver
from simtopup.notifications.senders import Message
from simtopup.support.models import ReplyChannel, SupportTicket

logger = logging.getLogger(__name__)

# Line breaks and other control characters (C0, DEL, C1, and the Unicode line and paragraph
# separators): in a one-line field they would start a line of their own in the operator's
# email ("Name: x" followed by a forged "Reply to:" line).
_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def one_line(text: str) -> str:
    """A one-line field as stored and shown: control characters become one space."""
    return " ".join(_BREAKS.sub(" ", text).split())


def create_ticket(
    *,
    reply_channel: str,
    reply_to: str,
    message: str,
    name: str = "",
    device: str = "",
    language: str = "zh-hans",
    ip: str | None = None,
    customer: Customer | None = None,
) -> SupportTicket:
    """Store a support ticket (inputs already validated by the caller's form). Raises
    ``RateLimited`` when this IP sent too many messages; nothing is stored then."""
    if reply_channel not in ReplyChannel.values:
        raise ValueError(f"unknown reply channel {reply_channel!r}")
    with transaction.atomic(durable=True):
        if ip:
            limits = ratelimit.limits(settings.SUPPORT_IP_LIMITS)
            ratelimit.hit(f"support-ip:{ratelimit.ip_bucket(ip)}", limits)
        ticket = SupportTicket.objects.create(
            customer=customer,
            name=one_line(name)[:100],
            reply_channel=reply_channel,
            reply_to=one_line(reply_to),
            device=one_line(device)[:64],
            message=message.strip(),
            language=language,
            ip=ip,
        )
        logger.info("support ticket #%s from %s (%s, %s)", ticket.pk, reply_to, language, ip or "-")
        transaction.on_commit(partial(notify_operator, ticket.pk), robust=True)
    return ticket


def operator_message(ticket: SupportTicket, recipient: str) -> Message:
    """The email to the operator, in the site's default language."""
    with translation.override(settings.LANGUAGE_CODE):
        subject = _("Support ticket #%(number)s from %(reply_to)s") % {
            "number": ticket.pk,
            "reply_to": ticket.reply_to,
        }
        lines = [
            _("A message arrived through the contact form of the official website."),
            "",
            _("Ticket: #%(number)s") % {"number": ticket.pk},
            _("Name: %(name)s") % {"name": ticket.name or "-"},
            _("Reply to: %(reply_to)s") % {"reply_to": ticket.reply_to},
            _("Device: %(device)s") % {"device": ticket.device or "-"},
            _("Language: %(language)s") % {"language": ticket.language},
            "",
            ticket.message,
        ]
    return Message("email", recipient, subject, "\n".join(lines), settings.LANGUAGE_CODE)


def notify_operator(ticket_id: int) -> bool:
    """Email the operator about a ticket, once (``notified_at`` claimed by compare-and-swap).
    Without ``SUPPORT_EMAIL`` the ticket is only stored and logged."""
    recipient = settings.SUPPORT_EMAIL
    if not recipient:
        logger.info("support ticket #%s stored (SIMTOPUP_SUPPORT_EMAIL is not set)", ticket_id)
        return False
    if not SupportTicket.objects.filter(pk=ticket_id, notified_at=None).update(
        notified_at=timezone.now()
    ):
        return False
    ticket = SupportTicket.objects.get(pk=ticket_id)
    sent = deliver(operator_message(ticket, recipient), "support_ticket")
    if not sent:
        SupportTicket.objects.filter(pk=ticket_id).update(notified_at=None)
    return sent
