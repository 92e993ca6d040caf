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
from datetime import timedelta
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
        open_ticket = _open_ticket_of(reply_channel, one_line(reply_to))
        if open_ticket is not None:
            follow_up = _add_customer_message(open_ticket, message.strip(), language)
            transaction.on_commit(partial(notify_operator_of_message, follow_up.pk), robust=True)
            return open_ticket
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


def _open_ticket_of(reply_channel: str, reply_to: str) -> SupportTicket | None:
    """The newest ticket of this phone number or email that is not solved and was written in
    the last ``SUPPORT_THREAD_DAYS`` days, locked: a customer who writes again (after our
    reply, or before it) continues that ticket's thread instead of opening another."""
    since = timezone.now() - timedelta(days=settings.SUPPORT_THREAD_DAYS)
    return (
        SupportTicket.objects.select_for_update()
        .filter(
            reply_channel=reply_channel,
            reply_to=reply_to,
            created_at__gte=since,
            status__in=[TicketStatus.NEW, TicketStatus.WAITING],
        )
        .order_by("-created_at", "-pk")
        .first()
    )


def _add_customer_message(ticket: SupportTicket, body: str, language: str) -> TicketMessage:
    """The customer's next message on ``ticket``'s thread; a ticket waiting on the customer is
    new again (someone has to answer). The thread answers in the language last written in."""
    now = timezone.now()
    follow_up = TicketMessage.objects.create(
        ticket=ticket,
        at=now,
        body=body,
        channel=ticket.reply_channel,
        delivery=Delivery.DELIVERED,
        delivered_at=now,
    )
    SupportTicket.objects.filter(pk=ticket.pk).update(status=TicketStatus.NEW, language=language)
    ticket.status, ticket.language = TicketStatus.NEW, language
    logger.info("support ticket #%s: the customer wrote again", ticket.pk)
    return follow_up


def notify_operator_of_message(message_id: int) -> bool:
    """Email the operator that a customer wrote again on a ticket (``SUPPORT_EMAIL``)."""
    recipient = settings.SUPPORT_EMAIL
    if not recipient:
        return False
    message = TicketMessage.objects.select_related("ticket").get(pk=message_id)
    ticket = message.ticket
    with translation.override(settings.LANGUAGE_CODE):
        subject = _("Ticket #%(number)s: %(reply_to)s wrote again") % {
            "number": ticket.pk,
            "reply_to": ticket.reply_to,
        }
    email = Message("email", recipient, subject, message.body, settings.LANGUAGE_CODE)
    return deliver(email, "support_ticket")


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
        answer = _("To answer, write to us again on the help page with this phone number or email.")
    channel: Channel = "sms" if message.channel == ReplyChannel.PHONE else "email"
    body = f"{intro}\n\n{message.body}\n\n{answer}"
    return Message(channel, ticket.reply_to, subject, body, ticket.language)


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
