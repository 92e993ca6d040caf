"""Customer service actions: store a message from the contact form, tell the operator;
reply to a ticket and set where it stands (the console's desk, backoffice/desk.py).

A ticket is stored first; the operator is emailed after the commit (``SUPPORT_EMAIL``, through
the configured email sender). Without an address, or when the email fails, the ticket is
still stored and logged: the operator sees it in the console either way. Messages are rate
limited per client IP (``SUPPORT_IP_LIMITS``) so the form cannot be used to flood the queue.
"""

from __future__ import annotations

import logging
import re
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from simtopup.accounts import ratelimit
from simtopup.accounts.models import Customer
from simtopup.audit.log import record, staff_actor
from simtopup.audit.models import Action
from simtopup.core.errors import DomainError
from simtopup.notifications.actions import deliver
from simtopup.notifications.senders import Channel, Message
from simtopup.support.models import (
    Delivery,
    ReplyChannel,
    SupportTicket,
    TicketMessage,
    TicketStatus,
)

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


# --- the desk's replies ------------------------------------------------------------------

MAX_REPLY = 2000


def _checked_status(status: str) -> str:
    if status not in TicketStatus.values:
        raise DomainError("invalid_ticket_status", gettext_lazy("Pick a status."), 422)
    return status


def reply_to_ticket(
    ticket_id: int, body: str, *, staff: Any, ip: str | None, status_after: str
) -> TicketMessage:
    """A staff member's reply: kept on the ticket's thread, the ticket put in
    ``status_after`` and one ``ticket.reply`` audit row, in one transaction; the reply goes to
    the ticket's ``reply_to`` by email or SMS in the ticket's language after the commit
    (:func:`send_reply`), which records it delivered or failed."""
    text = body.strip()
    if not text:
        raise DomainError("empty_reply", gettext_lazy("Write the reply first."), 422)
    if len(text) > MAX_REPLY:
        raise DomainError(
            "reply_too_long",
            gettext_lazy("A reply has at most %(count)d characters.") % {"count": MAX_REPLY},
            422,
        )
    status = _checked_status(status_after)
    with transaction.atomic(durable=True):
        ticket = SupportTicket.objects.select_for_update().get(pk=ticket_id)
        message = TicketMessage.objects.create(
            ticket=ticket,
            at=timezone.now(),
            staff=staff,
            author=staff.get_username(),
            body=text,
            channel=ticket.reply_channel,
        )
        before = ticket.status
        if before != status:
            SupportTicket.objects.filter(pk=ticket.pk).update(status=status)
        record(
            Action.TICKET_REPLY,
            ticket,
            actor=staff_actor(staff),
            ip=ip,
            before={"status": before},
            after={
                "status": status,
                "message": message.pk,
                "channel": ticket.reply_channel,
                "reply_to": ticket.reply_to,
            },
        )
        transaction.on_commit(partial(send_reply, message.pk), robust=True)
    return message


def reply_message(message: TicketMessage) -> Message:
    """The reply as the customer receives it, in the ticket's language."""
    ticket = message.ticket
    with translation.override(ticket.language):
        intro = _("Customer service of %(operator)s, about your message #%(number)s:") % {
            "operator": settings.OPERATOR_NAME,
            "number": ticket.pk,
        }
        subject = _("Reply to your message #%(number)s") % {"number": ticket.pk}
    channel: Channel = "sms" if message.channel == ReplyChannel.PHONE else "email"
    return Message(channel, ticket.reply_to, subject, f"{intro}\n\n{message.body}", ticket.language)


def send_reply(message_id: int) -> bool:
    """Send a reply once (claimed by compare-and-swap on ``delivered_at``) and record whether
    the sender took it."""
    claimed_at = timezone.now()
    if not TicketMessage.objects.filter(
        pk=message_id, delivery=Delivery.PENDING, delivered_at=None
    ).update(delivered_at=claimed_at):
        return False
    message = TicketMessage.objects.select_related("ticket").get(pk=message_id)
    sent = deliver(reply_message(message), "ticket_reply")
    TicketMessage.objects.filter(pk=message_id).update(
        delivery=Delivery.DELIVERED if sent else Delivery.FAILED,
        delivered_at=claimed_at if sent else None,
    )
    return sent


def set_ticket_status(ticket_id: int, status: str, *, staff: Any, ip: str | None) -> bool:
    """Put a ticket in ``status`` with one ``ticket.status`` audit row; False (nothing
    written) when it is there already."""
    status = _checked_status(status)
    with transaction.atomic(durable=True):
        ticket = SupportTicket.objects.select_for_update().get(pk=ticket_id)
        before = ticket.status
        if (
            not SupportTicket.objects.filter(pk=ticket.pk, status=before)
            .exclude(status=status)
            .update(status=status)
        ):
            return False
        record(
            Action.TICKET_STATUS,
            ticket,
            actor=staff_actor(staff),
            ip=ip,
            before={"status": before},
            after={"status": status},
        )
    return True
