"""The desk's one search box: whatever a customer reads out over the phone, to the cards,
customers, orders, resellers and tickets it names.

Each kind of identifier is parsed by the package that owns it — a device ID in any of its
forms (devices/identifiers.py), a phone number or an email (accounts/contacts.py), a receipt
number (orders/receipts.py), a reseller's reference and an agent code
(resellers/lookups.py); an order number is the order's id. Every reading that fits is
tried, so a string that is two things (a serial that is also an order number) gives both.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

from django.db.models import Q

from simtopup.accounts.contacts import contact_of, customers_by_contact
from simtopup.core.errors import DomainError
from simtopup.devices.identifiers import find_device, normalise_digits
from simtopup.orders.models import Order
from simtopup.orders.receipts import find_receipt
from simtopup.resellers.lookups import orders_by_reference, reseller_by_agent_code
from simtopup.support.models import SupportTicket

MAX_QUERY = 128
# ``12345``, ``#12345``, ``order 12345``, ``订单12345``: at most 12 digits.
_ORDER_ID = re.compile(r"(?:#|no\.?|order|订单|訂單)?\s*#?\s*(\d{1,12})", re.IGNORECASE)
_TICKET_ID = re.compile(r"(?:ticket|工单|工單)\s*#?\s*(\d{1,12})", re.IGNORECASE)


@dataclass(frozen=True)
class Hit:
    """One thing the query names. ``kind``: device, customer, order, reseller or ticket;
    ``device_id`` / ``customer_id``: whose story it belongs to (an order's card)."""

    kind: str
    pk: int
    matched: str  # which reading matched: iccid, phone, receipt_number, …
    label: str
    device_id: int | None = None
    customer_id: int | None = None


def find(query: str) -> list[Hit]:
    """Every card, customer, order, reseller and ticket ``query`` names (no duplicates)."""
    text = (query or "").strip()[:MAX_QUERY]
    if not text:
        return []
    hits: list[Hit] = []
    hits += _devices(text)
    hits += _customers(text)
    hits += _orders(text)
    reseller = reseller_by_agent_code(text)
    if reseller is not None:
        hits.append(
            Hit("reseller", reseller.pk, "agent_code", f"{reseller.name} ({reseller.code})")
        )
    hits += _tickets(text)
    seen: set[tuple[str, int]] = set()
    unique = []
    for hit in hits:
        if (hit.kind, hit.pk) not in seen:
            seen.add((hit.kind, hit.pk))
            unique.append(hit)
    return unique


def _devices(text: str) -> list[Hit]:
    try:
        device = find_device(text)
    except DomainError:
        return []
    matched = next(
        (
            name
            for name in ("iccid", "eid", "imei", "serial")
            if getattr(device, name) and getattr(device, name) in _forms(text)
        ),
        "serial",
    )
    return [
        Hit(
            "device",
            device.pk,
            matched,
            device.display_identifier,
            device_id=device.pk,
            customer_id=device.owner_id,
        )
    ]


def _forms(text: str) -> set[str]:
    return {text, normalise_digits(text)}


def _customers(text: str) -> list[Hit]:
    contact = contact_of(text)
    if contact is None:
        return []
    return [
        Hit("customer", c.pk, contact[0], str(c), customer_id=c.pk)
        for c in customers_by_contact(text)
    ]


def _order_hit(order: Order, matched: str) -> Hit:
    return Hit(
        "order",
        order.pk,
        matched,
        order.receipt_no or f"#{order.pk}",
        device_id=order.device_id,
        customer_id=order.customer_id,
    )


def _orders(text: str) -> list[Hit]:
    hits = []
    with contextlib.suppress(DomainError):
        hits.append(_order_hit(find_receipt(text), "receipt_number"))
    match = _ORDER_ID.fullmatch(text)
    if match and 0 < int(match.group(1)) < 2**63:
        order = Order.objects.filter(pk=int(match.group(1))).first()
        if order is not None:
            hits.append(_order_hit(order, "order_id"))
    hits += [_order_hit(o, "reference") for o in orders_by_reference(text)]
    return hits


def _tickets(text: str) -> list[Hit]:
    """A ticket by its number (``ticket 12``), or the tickets written from this phone or
    email by someone who is not a customer (a customer's are on their page)."""
    query = Q()
    match = _TICKET_ID.fullmatch(text)
    if match:
        query |= Q(pk=int(match.group(1)))
    contact = contact_of(text)
    if contact is not None:
        query |= Q(reply_to=contact[1], customer=None)
    if not query:
        return []
    return [
        Hit("ticket", t.pk, "ticket", f"#{t.pk} {t.reply_to}", customer_id=t.customer_id)
        for t in SupportTicket.objects.filter(query).order_by("-pk")[:20]
    ]
