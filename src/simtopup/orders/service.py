"""Customer service's actions on an order (the console's desk, issue 14): retry a stuck
fulfilment, send a receipt again. Each takes the staff member, their IP and a reason, and
writes its audit row in the transaction of its effect.

A retry claims the order exactly as the worker does (a compare-and-swap to ``fulfilling``
with a fresh lease) and then makes one attempt at once (:func:`attempt_claimed`), so a
replayed or concurrent retry finds the order claimed, or no longer stuck, and is refused:
one retry, one attempt, and at most one fulfilment whatever happens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _

from simtopup.accounts.models import Customer
from simtopup.audit.log import record
from simtopup.audit.models import Action
from simtopup.core.errors import DomainError
from simtopup.core.money import format_money
from simtopup.notifications.actions import channel_for, notify
from simtopup.orders.actions import attempt_claimed, claim_lease
from simtopup.orders.models import Order, OrderStatus
from simtopup.orders.receipts import verification_url
from simtopup.orders.reports import stuck_before

ReceiptChannel = Literal["sms", "email"]


def reason_required() -> DomainError:
    return DomainError("reason_required", _("Say why: every desk action needs a reason."), 422)


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise reason_required()
    return reason


def stuck(order: Order) -> bool:
    """Is ``order`` stuck: paid or fulfilling for longer than the dashboard's limit
    (orders/reports.py), and not being attempted right now (a live lease)?"""
    moment = timezone.now()
    return (
        order.status in (OrderStatus.PAID, OrderStatus.FULFILLING)
        and order.created_at < stuck_before(moment)
        and not (
            order.status == OrderStatus.FULFILLING
            and order.lease_until is not None
            and order.lease_until >= moment
        )
    )


def retry_fulfilment(order: Order, *, actor: str, ip: str | None, reason: str) -> str:
    """Fulfil a stuck order now, on customer service's request: what became of the attempt
    (``fulfilled``, ``retry`` — scheduled again by the usual back-off —, ``failed`` —
    refunded — or ``already_done``).

    Only an order paid or fulfilling past the stuck limit (``orders.reports.stuck_after``)
    whose lease, if any, has run out can be retried: ``not_stuck`` otherwise (a fulfilled,
    failed or refunded order has nothing to retry: a failed one was refunded already),
    ``fulfilment_in_progress`` while an attempt holds a live lease. The claim and its audit
    row commit together before the network is called."""
    reason = _reason(reason)
    now = timezone.now()
    # What stuck() calls stuck: paid, or fulfilling with no live lease (none, or run out).
    due = Q(status=OrderStatus.PAID) | (
        Q(status=OrderStatus.FULFILLING) & (Q(lease_until__isnull=True) | Q(lease_until__lt=now))
    )
    with transaction.atomic(durable=True):
        row = (
            Order.objects.select_for_update()
            .filter(pk=order.pk)
            .values_list("status", "attempts")
            .first()
        )
        before = {"status": row[0], "attempts": row[1]} if row else {}
        claimed = Order.objects.filter(due, pk=order.pk, created_at__lt=stuck_before(now)).update(
            status=OrderStatus.FULFILLING,
            lease_until=claim_lease(),
            next_attempt_at=None,
            attempts=F("attempts") + 1,
        )
        if claimed != 1:
            current = Order.objects.filter(pk=order.pk).values_list("status", "lease_until").first()
            if (
                current
                and current[0] == OrderStatus.FULFILLING
                and current[1]
                and current[1] >= now
            ):
                raise DomainError(
                    "fulfilment_in_progress",
                    _("This order is being fulfilled right now: wait a minute and look again."),
                    409,
                )
            raise DomainError(
                "not_stuck",
                _("Only an order paid or fulfilling for longer than usual can be retried."),
                409,
            )
        record(
            Action.FULFILMENT_RETRY,
            order,
            actor=actor,
            ip=ip,
            before=before,
            after={"status": OrderStatus.FULFILLING, "attempts": (row[1] if row else 0) + 1},
            reason=reason,
        )
    outcome = attempt_claimed(order.pk)
    order.refresh_from_db()
    return outcome


@dataclass(frozen=True)
class ReceiptContact:
    customer: Customer
    channel: ReceiptChannel
    recipient: str


def receipt_customer(order: Order) -> Customer | None:
    """Whom a receipt goes to: the customer who placed the order, else the card's owner (a
    reseller's sale has no customer of its own)."""
    return order.customer or order.device.owner


def receipt_contact(order: Order, channel: ReceiptChannel | None = None) -> ReceiptContact:
    """Where :func:`resend_receipt` would send the receipt, or the refusal: ``no_receipt``
    (not fulfilled), ``no_contact`` (nobody to send it to, or not by ``channel``)."""
    if order.status != OrderStatus.FULFILLED or not order.receipt_no:
        raise DomainError(
            "no_receipt", _("This order has no receipt: only a fulfilled order has one."), 409
        )
    customer = receipt_customer(order)
    if customer is None:
        raise DomainError(
            "no_contact", _("Nobody to send it to: the order and the card have no customer."), 409
        )
    try:
        via, recipient = channel_for(customer, channel)
    except ValueError:
        raise DomainError(
            "no_contact", _("The customer has no phone number or email address for this."), 409
        ) from None
    return ReceiptContact(customer, via, recipient)


def resend_receipt(
    order: Order,
    *,
    actor: str,
    ip: str | None,
    reason: str,
    channel: ReceiptChannel | None = None,
) -> ReceiptContact:
    """Send the order's receipt (its number, plan, card, amount and the link to view and
    check it) again to its customer, by SMS or email (``channel``; by default as every notice
    goes: SMS to a phone, else email), through the configured senders once the audit row
    commits. Refused as :func:`receipt_contact` says."""
    reason = _reason(reason)
    contact = receipt_contact(order, channel)
    with translation.override(contact.customer.language):
        context = {
            "receipt_no": order.receipt_no,
            "plan": order.plan.name,
            "device": order.device.masked,
            "amount": format_money(order.amount, order.currency),
            "link": verification_url(order.receipt_no or ""),
        }
    with transaction.atomic(durable=True):
        record(
            Action.RECEIPT_RESEND,
            order,
            actor=actor,
            ip=ip,
            after={"receipt_no": order.receipt_no, "channel": contact.channel},
            reason=reason,
        )
        notify(contact.customer, "receipt_resent", context, channel=contact.channel)
    return contact
