"""A card's or a customer's whole story for the desk (backoffice/desk.py): what a support
agent reads while the customer is on the phone. Read-only, a bounded number of queries
whatever the history's length: each list is its newest ``limit`` rows, and says whether
there are more (the console's lists have the rest).

The caller names the ``sections`` the staff member may see; the others are not read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Prefetch, Q
from django.utils import timezone

from simtopup.accounts.models import Customer
from simtopup.devices.credit import Movement, credit_transfers, movements
from simtopup.devices.models import Device
from simtopup.orders.models import Order
from simtopup.payments.models import Payment, Refund
from simtopup.support.models import SupportTicket, TicketMessage
from simtopup.usage import reports as usage_reports
from simtopup.usage.models import Alert, AlertDelivery, Bundle
from simtopup.usage.reads import bundle_state, remaining_by_device

DEVICE_SECTIONS = frozenset(
    {"owner", "bundles", "credit", "orders", "payments", "refunds", "usage", "alerts", "tickets"}
)
CUSTOMER_SECTIONS = frozenset({"devices", "orders", "payments", "refunds", "tickets"})
USAGE_DAYS = 30


@dataclass(frozen=True)
class BundleLine:
    plan: str
    granted_bytes: int
    remaining_bytes: int
    starts_at: datetime
    expires_at: datetime
    state: str  # active, upcoming, used_up, expired


@dataclass
class Listed[T]:
    rows: list[T] = field(default_factory=list)
    more: bool = False


@dataclass
class DeviceStory:
    device: Device
    credit: int
    currency: str
    remaining_bytes: int = 0
    bundles: Listed[BundleLine] = field(default_factory=Listed)
    movements: Listed[Movement] = field(default_factory=Listed)
    orders: Listed[Order] = field(default_factory=Listed)
    usage: list[usage_reports.Day] = field(default_factory=list)
    alerts: Listed[Alert] = field(default_factory=Listed)
    tickets: Listed[SupportTicket] = field(default_factory=Listed)


@dataclass
class CustomerStory:
    customer: Customer
    devices: list[tuple[Device, int]] = field(default_factory=list)  # card, remaining bytes
    orders: Listed[Order] = field(default_factory=Listed)
    tickets: Listed[SupportTicket] = field(default_factory=Listed)


def _listed[T](rows: list[T], limit: int) -> Listed[T]:
    return Listed(rows[:limit], len(rows) > limit)


def _orders(query: Q, sections: frozenset[str] | set[str], limit: int) -> Listed[Order]:
    """Newest orders first, each with its plan, card and reseller, and (when shown) its
    payment attempts and its refunds: four queries for any number of orders."""
    qs = Order.objects.filter(query).select_related("plan", "device", "reseller").order_by("-pk")
    if "payments" in sections:
        qs = qs.prefetch_related(Prefetch("payments", queryset=Payment.objects.order_by("pk")))
    if "refunds" in sections:
        qs = qs.prefetch_related(Prefetch("refunds", queryset=Refund.objects.order_by("pk")))
    return _listed(list(qs[: limit + 1]), limit)


def _tickets(query: Q, limit: int) -> Listed[SupportTicket]:
    return _listed(list(SupportTicket.objects.filter(query).order_by("-pk")[: limit + 1]), limit)


def device_story(
    device_id: int,
    sections: frozenset[str] | set[str],
    *,
    limit: int = 20,
    now: datetime | None = None,
) -> DeviceStory | None:
    """The card's story, or None when there is no such card."""
    now = now or timezone.now()
    device = Device.objects.select_related("owner", "credit_account").filter(pk=device_id).first()
    if device is None:
        return None
    story = DeviceStory(device, device.credit_account.balance, device.credit_account.unit)
    if "bundles" in sections:
        rows = list(
            Bundle.objects.filter(device_id=device.pk)
            .select_related("plan", "account")
            .order_by("-expires_at", "-pk")[: limit + 1]
        )
        lines = []
        for b in rows:
            state = bundle_state(b.starts_at, b.expires_at, b.account.balance, now)
            left = max(b.account.balance, 0) if state != "expired" else 0
            if state == "active":
                story.remaining_bytes += left
            lines.append(
                BundleLine(b.plan.code, b.granted_bytes, left, b.starts_at, b.expires_at, state)
            )
        story.bundles = _listed(lines, limit)
    if "credit" in sections:
        account = device.credit_account_id
        transfers = list(credit_transfers(account).order_by("-pk")[: limit + 1])
        story.movements = _listed(movements(transfers, account), limit)
    if "orders" in sections:
        story.orders = _orders(Q(device_id=device.pk), sections, limit)
    if "usage" in sections:
        story.usage = usage_reports.used_by_day(device.pk, USAGE_DAYS, now)
    if "alerts" in sections:
        alerts = (
            Alert.objects.filter(device_id=device.pk)
            .prefetch_related(Prefetch("deliveries", queryset=AlertDelivery.objects.order_by("pk")))
            .order_by("-created_at", "-pk")
        )
        story.alerts = _listed(list(alerts[: limit + 1]), limit)
    if "tickets" in sections:
        identifiers = [v for v in (device.iccid, device.eid, device.imei, device.serial) if v]
        query = Q(device__in=identifiers)
        if device.owner_id is not None:
            query |= Q(customer_id=device.owner_id)
        story.tickets = _tickets(query, limit)
    return story


def customer_story(
    customer_id: int,
    sections: frozenset[str] | set[str],
    *,
    limit: int = 20,
    now: datetime | None = None,
) -> CustomerStory | None:
    """The customer's story (their cards with the data left on each, their orders across
    cards, their tickets), or None when there is no such customer."""
    customer = Customer.objects.filter(pk=customer_id).first()
    if customer is None:
        return None
    story = CustomerStory(customer)
    if "devices" in sections:
        devices = list(Device.objects.filter(owner=customer).order_by("bound_at", "pk")[:100])
        left = remaining_by_device([d.pk for d in devices], now)
        story.devices = [(d, left.get(d.pk, 0)) for d in devices]
    if "orders" in sections:
        story.orders = _orders(Q(customer=customer) | Q(device__owner=customer), sections, limit)
    if "tickets" in sections:
        contacts = [c for c in (customer.phone, customer.email) if c]
        story.tickets = _tickets(Q(customer=customer) | Q(reply_to__in=contacts), limit)
    return story


def ticket_thread(ticket_id: int) -> tuple[SupportTicket, list[TicketMessage]] | None:
    """A ticket and its thread after the customer's first message (oldest first)."""
    ticket = SupportTicket.objects.select_related("customer").filter(pk=ticket_id).first()
    if ticket is None:
        return None
    return ticket, list(ticket.messages.order_by("at", "pk"))
