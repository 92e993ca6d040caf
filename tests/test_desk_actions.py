"""The desk's actions (issue 14 point 3): retry a stuck fulfilment, re-send a receipt,
goodwill credit with a second staff member's approval above the limit, suspend / reinstate a
card, unbind a card — each domain function (refusals, replays, audit rows, a sound ledger)
and each console page (three languages, permissions, safe ``next``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from simtopup.accounts.models import Customer
from simtopup.accounts.tokens import issue_token
from simtopup.audit.models import Action, AuditEntry
from simtopup.backoffice import roles
from simtopup.core.errors import DomainError
from simtopup.devices import goodwill
from simtopup.devices.binding import my_devices, unbind_card
from simtopup.devices.credit import credit_transfers, movements
from simtopup.devices.models import Device, DeviceStatus, GoodwillCredit, GoodwillStatus
from simtopup.devices.status import reinstate_card, suspend_card
from simtopup.ledger.audit import audit as ledger_audit
from simtopup.ledger.models import Account, Transfer
from simtopup.network.adapters import AdapterError, Grant
from simtopup.orders import service
from simtopup.orders.models import Channel, Order, OrderStatus
from tests.customer_support import app_client, captured_messages
from tests.receipt_support import fulfilled_order, paid_order
from tests.staff_support import console_client, make_staff
from tests.support import Actors

WHO: dict[str, Any] = {"actor": "staff:1:sam", "ip": "203.0.113.9"}


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def ann() -> Customer:
    return Customer.objects.create(phone="+8613800001111", language="zh-hans")


def bind(device: Device, customer: Customer) -> Device:
    Device.objects.filter(pk=device.pk).update(owner=customer, bound_at=timezone.now())
    device.refresh_from_db()
    return device


def age(order: Order, minutes: int = 30) -> Order:
    Order.objects.filter(pk=order.pk).update(created_at=timezone.now() - timedelta(minutes=minutes))
    order.refresh_from_db()
    return order


def stuck_order(actors: Actors, customer: Customer, **fields: Any) -> Order:
    order = age(paid_order(customer, actors.device, actors.plans["day-1g"]))
    if fields:
        Order.objects.filter(pk=order.pk).update(**fields)
        order.refresh_from_db()
    return order


def credit_of(device: Device) -> int:
    return Account.objects.values_list("balance", flat=True).get(pk=device.credit_account_id)


def entries(action: Action) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action).order_by("id"))


def refused(code: str, call: Callable[[], Any]) -> DomainError:
    with pytest.raises(DomainError) as caught:
        call()
    assert caught.value.code == code, caught.value
    return caught.value


# --- retry a stuck fulfilment ---------------------------------------------------------------


def test_a_stuck_paid_order_is_retried_once_and_fulfilled(actors: Actors, ann: Customer) -> None:
    order = stuck_order(actors, ann, next_attempt_at=timezone.now() + timedelta(hours=1))
    assert service.stuck(order)
    assert service.retry_fulfilment(order, reason="customer called", **WHO) == "fulfilled"
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED
    assert order.receipt_no
    (entry,) = entries(Action.FULFILMENT_RETRY)
    assert (entry.reason, entry.actor, entry.ip) == ("customer called", WHO["actor"], WHO["ip"])
    assert entry.before == {"status": "paid", "attempts": 0}
    # A replay (a double click, a second agent) finds nothing left to retry.
    refused("not_stuck", lambda: service.retry_fulfilment(order, reason="again", **WHO))
    assert len(entries(Action.FULFILMENT_RETRY)) == 1
    assert Transfer.objects.filter(idempotency_key=f"order:{order.pk}:revenue").count() == 1
    assert ledger_audit() == []


def test_a_fulfilment_whose_worker_died_is_taken_over(actors: Actors, ann: Customer) -> None:
    order = stuck_order(
        actors,
        ann,
        status=OrderStatus.FULFILLING,
        attempts=1,
        lease_until=timezone.now() - timedelta(minutes=1),
    )
    assert service.retry_fulfilment(order, reason="worker died", **WHO) == "fulfilled"
    order.refresh_from_db()
    assert (order.status, order.attempts) == (OrderStatus.FULFILLED, 2)


def test_a_fulfilling_order_without_a_lease_is_stuck_and_retried(
    actors: Actors, ann: Customer
) -> None:
    """What the story page calls stuck (no live lease: none at all here) can be retried."""
    order = stuck_order(actors, ann, status=OrderStatus.FULFILLING, attempts=1, lease_until=None)
    assert service.stuck(order)
    assert service.retry_fulfilment(order, reason="stuck without a lease", **WHO) == "fulfilled"
    order.refresh_from_db()
    assert (order.status, order.attempts) == (OrderStatus.FULFILLED, 2)


class DownUpstream:
    """A network that is down (retryable)."""

    synchronous = False

    def apply(self, order: Order) -> Grant:
        raise AdapterError("upstream down")


def test_a_retry_the_network_refuses_goes_back_to_the_back_off(
    actors: Actors, ann: Customer, settings: Any
) -> None:
    settings.NETWORK_ADAPTER = "tests.test_desk_actions.DownUpstream"
    order = stuck_order(actors, ann)
    assert service.retry_fulfilment(order, reason="customer called", **WHO) == "retry"
    order.refresh_from_db()
    assert (order.status, order.attempts, order.failure_detail) == ("paid", 1, "upstream down")
    assert order.next_attempt_at is not None
    assert order.next_attempt_at > timezone.now()
    assert order.lease_until is None
    # Still stuck, so the desk may try again; the money stays in clearing meanwhile.
    assert service.stuck(order)
    assert service.retry_fulfilment(order, reason="again", **WHO) == "retry"
    assert len(entries(Action.FULFILMENT_RETRY)) == 2
    assert ledger_audit() == []


def test_a_retry_is_refused_unless_the_order_is_stuck(actors: Actors, ann: Customer) -> None:
    fresh = paid_order(ann, actors.device, actors.plans["day-1g"])  # paid seconds ago
    refused("not_stuck", lambda: service.retry_fulfilment(fresh, reason="x", **WHO))
    busy = stuck_order(
        actors,
        ann,
        status=OrderStatus.FULFILLING,
        lease_until=timezone.now() + timedelta(minutes=1),
    )
    assert not service.stuck(busy)
    refused("fulfilment_in_progress", lambda: service.retry_fulfilment(busy, reason="x", **WHO))
    done = age(fulfilled_order(ann, actors.devices[1], actors.plans["day-1g"]))
    refused("not_stuck", lambda: service.retry_fulfilment(done, reason="x", **WHO))
    failed = stuck_order(actors, ann)
    Order.objects.filter(pk=failed.pk).update(status=OrderStatus.FAILED)
    refused("not_stuck", lambda: service.retry_fulfilment(failed, reason="x", **WHO))
    stuck = stuck_order(actors, ann)
    refused("reason_required", lambda: service.retry_fulfilment(stuck, reason="  ", **WHO))
    stuck.refresh_from_db()
    assert (stuck.status, stuck.attempts) == (OrderStatus.PAID, 0)
    assert entries(Action.FULFILMENT_RETRY) == []


# --- re-send a receipt ----------------------------------------------------------------------


def test_a_receipt_is_sent_again_to_the_customer(actors: Actors, ann: Customer) -> None:
    ann.email = "ann@example.com"
    ann.save(update_fields=["email"])
    order = fulfilled_order(ann, actors.device, actors.plans["day-1g"])
    with captured_messages() as sent:
        contact = service.resend_receipt(order, reason="lost the SMS", **WHO)
    assert (contact.channel, contact.recipient) == ("sms", ann.phone)
    (message,) = sent
    assert message.recipient == ann.phone
    assert (order.receipt_no or "?") in message.body
    assert "收据" in message.body or "凭证" in message.body  # the customer's language
    with captured_messages() as sent:
        service.resend_receipt(order, reason="by email please", channel="email", **WHO)
    assert [(m.channel, m.recipient) for m in sent] == [("email", "ann@example.com")]
    rows = entries(Action.RECEIPT_RESEND)
    assert [(r.reason, (r.after or {})["channel"]) for r in rows] == [
        ("lost the SMS", "sms"),
        ("by email please", "email"),
    ]


def test_a_receipt_is_refused_without_receipt_or_contact(actors: Actors, ann: Customer) -> None:
    unpaid = paid_order(ann, actors.device, actors.plans["day-1g"])
    with captured_messages() as sent:
        refused("no_receipt", lambda: service.resend_receipt(unpaid, reason="x", **WHO))
        done = fulfilled_order(ann, actors.devices[1], actors.plans["day-1g"])
        refused(
            "no_contact",
            lambda: service.resend_receipt(done, reason="x", channel="email", **WHO),
        )
        refused("reason_required", lambda: service.resend_receipt(done, reason="", **WHO))
        Order.objects.filter(pk=done.pk).update(customer=None, channel=Channel.RESELLER)
        done.refresh_from_db()
        refused("no_contact", lambda: service.resend_receipt(done, reason="x", **WHO))
    assert [m for m in sent if "receipt" in m.subject.lower() or "凭证" in m.subject] == []
    assert entries(Action.RECEIPT_RESEND) == []
    # A reseller's sale goes to the card's owner.
    bind(done.device, ann)
    done.refresh_from_db()
    with captured_messages() as sent:
        service.resend_receipt(done, reason="x", **WHO)
    assert [m.recipient for m in sent] == [ann.phone]


# --- goodwill credit ------------------------------------------------------------------------


def test_the_permission_names_are_the_roles(db: None) -> None:
    assert goodwill.GRANT_PERMISSION == roles.GRANT_GOODWILL
    assert goodwill.APPROVE_PERMISSION == roles.APPROVE_GOODWILL
    assert roles.APPROVE_GOODWILL not in roles.SUPPORT_PERMISSIONS
    assert roles.GRANT_GOODWILL in roles.SUPPORT_PERMISSIONS & roles.FINANCE_PERMISSIONS


def test_goodwill_at_the_limit_is_credited_at_once(
    actors: Actors, ann: Customer, settings: Any
) -> None:
    settings.GOODWILL_APPROVAL_ABOVE = 2000
    sam = make_staff("sam", roles.SUPPORT)
    device = bind(actors.device, ann)
    grant = goodwill.request_goodwill(device, 2000, staff=sam, ip="203.0.113.9", reason="outage")
    assert grant.status == GoodwillStatus.POSTED
    assert grant.transfer_key == f"goodwill:{grant.pk}"
    assert credit_of(device) == 2000
    (transfer,) = Transfer.objects.filter(idempotency_key=grant.transfer_key)
    assert (transfer.kind, transfer.amount, transfer.source.code) == (
        "goodwill_credit",
        2000,
        "system:adjustments:CNY",
    )
    assert [e.reason for e in entries(Action.GOODWILL_REQUEST)] == ["outage"]
    (adjustment,) = entries(Action.CREDIT_ADJUSTMENT)
    assert (adjustment.before, (adjustment.after or {})["credit"]) == ({"credit": 0}, 2000)
    # The customer sees it as an adjustment (the API's enum), in its own words.
    (shown,) = movements(list(credit_transfers(device.credit_account_id)), device.credit_account_id)
    assert (shown.kind, shown.incoming, shown.memo) == (
        "adjustment",
        True,
        "Goodwill credit from customer service",
    )
    assert ledger_audit() == []


def test_goodwill_above_the_limit_needs_a_second_approver(
    actors: Actors, ann: Customer, settings: Any
) -> None:
    settings.GOODWILL_APPROVAL_ABOVE = 2000
    sam = make_staff("sam", roles.SUPPORT)
    fay = make_staff("fay", roles.FINANCE)
    flo = make_staff("flo", roles.FINANCE)
    device = actors.device
    grant = goodwill.request_goodwill(device, 2001, staff=fay, ip=None, reason="long outage")
    assert grant.status == GoodwillStatus.PENDING
    assert grant.transfer_key is None
    assert credit_of(device) == 0
    assert list(goodwill.pending()) == [grant]
    refused("own_request", lambda: goodwill.approve_goodwill(grant, staff=fay, ip=None))
    refused("permission_denied", lambda: goodwill.approve_goodwill(grant, staff=sam, ip=None))
    grant.refresh_from_db()
    assert grant.status == GoodwillStatus.PENDING
    assert entries(Action.GOODWILL_APPROVE) == []
    approved = goodwill.approve_goodwill(grant, staff=flo, ip="198.51.100.1", reason="ok")
    assert (approved.status, approved.decided_by) == (GoodwillStatus.POSTED, flo)
    assert credit_of(device) == 2001
    # Replays of the approval, and a late rejection, are refused: credited exactly once.
    refused("already_decided", lambda: goodwill.approve_goodwill(grant, staff=flo, ip=None))
    admin = make_staff("root", roles.ADMIN)
    refused("already_decided", lambda: goodwill.approve_goodwill(grant, staff=admin, ip=None))
    refused(
        "already_decided",
        lambda: goodwill.reject_goodwill(grant, staff=admin, ip=None, reason="no"),
    )
    assert credit_of(device) == 2001
    assert Transfer.objects.filter(kind="goodwill_credit").count() == 1
    assert [e.actor for e in entries(Action.GOODWILL_APPROVE)] == [f"staff:{flo.pk}:flo"]
    assert len(entries(Action.CREDIT_ADJUSTMENT)) == 1
    assert ledger_audit() == []


def test_goodwill_is_rejected_with_a_reason(actors: Actors, settings: Any) -> None:
    settings.GOODWILL_APPROVAL_ABOVE = 100
    sam = make_staff("sam", roles.SUPPORT)
    fay = make_staff("fay", roles.FINANCE)
    grant = goodwill.request_goodwill(actors.device, 900, staff=sam, ip=None, reason="sorry")
    refused(
        "permission_denied",
        lambda: goodwill.reject_goodwill(grant, staff=sam, ip=None, reason="withdraw"),
    )
    refused(
        "reason_required", lambda: goodwill.reject_goodwill(grant, staff=fay, ip=None, reason="")
    )
    rejected = goodwill.reject_goodwill(grant, staff=fay, ip=None, reason="not our fault")
    assert (rejected.status, rejected.decision_reason) == (GoodwillStatus.REJECTED, "not our fault")
    refused("already_decided", lambda: goodwill.approve_goodwill(grant, staff=fay, ip=None))
    assert credit_of(actors.device) == 0
    assert not Transfer.objects.filter(kind="goodwill_credit")
    assert [e.reason for e in entries(Action.GOODWILL_REJECT)] == ["not our fault"]


def test_goodwill_refusals_change_nothing(actors: Actors) -> None:
    nobody = User.objects.create_user("nobody", password="x", is_staff=True)
    sam = make_staff("sam", roles.SUPPORT)
    refused(
        "permission_denied",
        lambda: goodwill.request_goodwill(actors.device, 100, staff=nobody, ip=None, reason="x"),
    )
    refused(
        "reason_required",
        lambda: goodwill.request_goodwill(actors.device, 100, staff=sam, ip=None, reason=" "),
    )
    refused(
        "invalid_amount",
        lambda: goodwill.request_goodwill(actors.device, 0, staff=sam, ip=None, reason="x"),
    )
    assert not GoodwillCredit.objects.exists()
    assert not AuditEntry.objects.exists()


# --- suspend / reinstate, unbind ------------------------------------------------------------


def test_a_lost_card_is_suspended_and_reinstated_once(actors: Actors) -> None:
    device = actors.device
    suspend_card(device, reason="customer lost it", cause="lost", **WHO)
    assert device.status == DeviceStatus.SUSPENDED
    assert not device.rechargeable
    refused("already_suspended", lambda: suspend_card(device, reason="again", cause="lost", **WHO))
    (entry,) = entries(Action.DEVICE_SUSPEND)
    assert (entry.before, entry.after, entry.reason) == (
        {"status": "in_stock"},
        {"status": "suspended", "cause": "lost"},
        "customer lost it",
    )
    reinstate_card(device, reason="found it", **WHO)
    assert device.status == DeviceStatus.IN_STOCK  # never activated
    refused("not_suspended", lambda: reinstate_card(device, reason="again", **WHO))
    assert [e.after for e in entries(Action.DEVICE_REINSTATE)] == [{"status": "in_stock"}]
    Device.objects.filter(pk=device.pk).update(
        status=DeviceStatus.ACTIVE, activated_at=timezone.now()
    )
    device.refresh_from_db()
    suspend_card(device, reason="stolen", cause="stolen", **WHO)
    assert reinstate_card(device, reason="back", **WHO).status == DeviceStatus.ACTIVE
    Device.objects.filter(pk=device.pk).update(status=DeviceStatus.RETIRED)
    refused("not_suspendable", lambda: suspend_card(device, reason="x", **WHO))
    refused("reason_required", lambda: suspend_card(actors.devices[1], reason="", **WHO))
    refused("invalid_cause", lambda: suspend_card(actors.devices[1], reason="x", cause="?", **WHO))
    assert Device.objects.get(pk=actors.devices[1].pk).status == DeviceStatus.IN_STOCK


def test_a_card_unbound_by_the_desk_leaves_the_customers_app(actors: Actors, ann: Customer) -> None:
    device = bind(actors.device, ann)
    raw, _token = issue_token(ann, "phone")
    app = app_client(raw)
    assert [d["id"] for d in app.get("/api/v1/devices").json()["items"]] == [device.pk]
    unbind_card(device, reason="sold on", **WHO)
    assert device.owner_id is None
    assert not my_devices(ann).exists()
    assert app.get("/api/v1/devices").json()["items"] == []
    assert app.get(f"/api/v1/devices/{device.pk}").status_code == 404
    refused("not_bound", lambda: unbind_card(device, reason="again", **WHO))
    (entry,) = entries(Action.DEVICE_UNBIND)
    assert (entry.before, entry.after, entry.reason) == (
        {"owner": ann.pk},
        {"owner": None},
        "sold on",
    )
    other = bind(actors.devices[1], ann)
    refused("reason_required", lambda: unbind_card(other, reason="", **WHO))
    assert Device.objects.get(pk=other.pk).owner_id == ann.pk


# --- console pages --------------------------------------------------------------------------


class Desk:
    """The objects every page acts on."""

    def __init__(self, actors: Actors, customer: Customer) -> None:
        self.device = bind(actors.device, customer)
        self.stuck = stuck_order(actors, customer)
        self.done = fulfilled_order(customer, actors.devices[1], actors.plans["day-1g"])
        self.requester = make_staff("fay", roles.FINANCE)
        self.grant = GoodwillCredit.objects.create(
            device=self.device,
            amount=99999,
            currency="CNY",
            reason="outage",
            requested_by=self.requester,
        )

    def url(self, name: str) -> str:
        ids = {
            "desk-retry": self.stuck.pk,
            "desk-resend": self.done.pk,
            "desk-goodwill": self.device.pk,
            "desk-goodwill-decide": self.grant.pk,
            "desk-suspend": self.device.pk,
            "desk-unbind": self.device.pk,
        }
        from django.urls import reverse

        if name == "desk-goodwill-list":
            return reverse("admin:desk-goodwill-list")
        return reverse(f"admin:{name}", args=[ids[name]])


@pytest.fixture
def desk(actors: Actors, ann: Customer) -> Desk:
    return Desk(actors, ann)


PAGES = {
    # page: (role allowed, {language: words on the page})
    "desk-retry": {"zh-hans": "重试订单", "zh-hant": "重試訂單", "en": "Retry the fulfilment"},
    "desk-resend": {"zh-hans": "重新发送订单", "zh-hant": "重新傳送訂單", "en": "Send the receipt"},
    "desk-goodwill": {"zh-hans": "补偿余额", "zh-hant": "補償餘額", "en": "Goodwill credit for"},
    "desk-goodwill-list": {
        "zh-hans": "待审批的补偿余额",
        "zh-hant": "待審批的補償餘額",
        "en": "Goodwill credit awaiting approval",
    },
    "desk-goodwill-decide": {"zh-hans": "批准", "zh-hant": "核准", "en": "Approve"},
    "desk-suspend": {"zh-hans": "停用上网卡", "zh-hant": "停用上網卡", "en": "Suspend card"},
    "desk-unbind": {
        "zh-hans": "从客户账户中移除",
        "zh-hant": "從客戶帳戶中移除",
        "en": "from its customer",
    },
}


@pytest.mark.parametrize("language", ["zh-hans", "zh-hant", "en"])
@pytest.mark.parametrize("name", sorted(PAGES))
def test_each_page_speaks_three_languages(desk: Desk, name: str, language: str) -> None:
    client = console_client(make_staff("root", roles.ADMIN))
    page = client.get(desk.url(name), headers={"accept-language": language})
    assert page.status_code == 200, page.content[:500]
    text = page.content.decode()
    assert PAGES[name][language] in text
    if name != "desk-goodwill-list":
        assert 'name="reason"' in text
    if language != "en":
        assert "Reason</label>" not in text


# Who may not: every page and action refused, GET and POST, for a role lacking its permission.
DENIED = [
    ("desk-retry", roles.FINANCE),
    ("desk-resend", roles.FINANCE),
    ("desk-suspend", roles.FINANCE),
    ("desk-unbind", roles.FINANCE),
    ("desk-goodwill-list", roles.SUPPORT),
    ("desk-goodwill-decide", roles.SUPPORT),
    *[(name, None) for name in sorted(PAGES)],
]


@pytest.mark.parametrize(("name", "role"), DENIED)
def test_a_role_without_the_permission_is_refused(desk: Desk, name: str, role: str | None) -> None:
    if role is None:
        user = User.objects.create_user("nobody", password="x", is_staff=True)
    else:
        user = make_staff("someone", role)
    client = console_client(user)
    assert client.get(desk.url(name)).status_code == 403
    body = {"reason": "trying", "amount": "1.00", "cause": "lost", "decision": "approve"}
    assert client.post(desk.url(name), body).status_code == 403
    assert not AuditEntry.objects.exclude(action__startswith="staff.").exists()
    assert Device.objects.get(pk=desk.device.pk).owner_id is not None
    assert Device.objects.get(pk=desk.device.pk).status == DeviceStatus.IN_STOCK
    assert GoodwillCredit.objects.get().status == GoodwillStatus.PENDING


def test_anonymous_browsers_are_sent_to_the_login(desk: Desk) -> None:
    for name in PAGES:
        page = Client().get(desk.url(name))
        assert page.status_code == 302
        assert "/login/" in page["Location"]


def test_the_retry_page_fulfils_and_goes_back_to_a_safe_next(desk: Desk) -> None:
    client = console_client(make_staff("sam", roles.SUPPORT))
    story = "/admin/desk/story/?q=1"
    page = client.post(desk.url("desk-retry"), {"reason": "", "next": story})
    assert page.status_code == 200
    assert Order.objects.get(pk=desk.stuck.pk).status == "paid"
    page = client.post(desk.url("desk-retry"), {"reason": "stuck", "next": story})
    assert page.status_code == 302
    assert page["Location"] == story
    assert Order.objects.get(pk=desk.stuck.pk).status == OrderStatus.FULFILLED
    # Again: refused on the form, nothing changed.
    page = client.post(desk.url("desk-retry"), {"reason": "stuck", "next": "https://evil.example/"})
    assert page.status_code == 409
    assert "Only an order paid or fulfilling" in page.content.decode()
    assert len(entries(Action.FULFILMENT_RETRY)) == 1


def test_the_resend_page_sends_and_falls_back_to_the_card(desk: Desk) -> None:
    client = console_client(make_staff("sam", roles.SUPPORT))
    with captured_messages() as sent:
        page = client.post(
            desk.url("desk-resend"), {"reason": "asked", "next": "https://evil.example/x"}
        )
    assert page.status_code == 302
    assert page["Location"] == f"/admin/devices/device/{desk.done.device_id}/change/"
    assert [m.recipient for m in sent] == [desk.done.customer.phone]  # type: ignore[union-attr]
    not_fulfilled = client.get(desk.url("desk-retry").replace("retry", "resend"))
    assert "only a fulfilled order has one" in not_fulfilled.content.decode()


def test_the_goodwill_pages_need_two_people_above_the_limit(desk: Desk, settings: Any) -> None:
    settings.GOODWILL_APPROVAL_ABOVE = 5000
    sam = make_staff("sam", roles.SUPPORT)
    support = console_client(sam)
    page = support.post(desk.url("desk-goodwill"), {"amount": "12.3", "reason": ""})
    assert page.status_code == 200
    assert not GoodwillCredit.objects.filter(requested_by=sam)
    page = support.post(desk.url("desk-goodwill"), {"amount": "12.345", "reason": "x"})
    assert page.status_code == 200
    assert not GoodwillCredit.objects.filter(requested_by=sam)
    page = support.post(desk.url("desk-goodwill"), {"amount": "12.30", "reason": "outage"})
    assert page.status_code == 302
    assert credit_of(desk.device) == 1230
    page = support.post(desk.url("desk-goodwill"), {"amount": "80", "reason": "long outage"})
    assert page.status_code == 302
    assert credit_of(desk.device) == 1230
    big = GoodwillCredit.objects.get(requested_by=sam, amount=8000)
    assert big.status == GoodwillStatus.PENDING
    # The requester (finance) of the fixture's grant cannot approve it; another finance can.
    own = console_client(desk.requester)
    decide = desk.url("desk-goodwill-decide")
    assert "Withdraw my request" in own.get(decide).content.decode()
    page = own.post(decide, {"decision": "approve", "reason": "me"})
    assert page.status_code == 403
    assert credit_of(desk.device) == 1230
    other = console_client(make_staff("flo", roles.FINANCE))
    listing = other.get(desk.url("desk-goodwill-list")).content.decode()
    assert f"/admin/desk/goodwill/{big.pk}/" in listing
    page = other.post(f"/admin/desk/goodwill/{big.pk}/", {"decision": "reject", "reason": ""})
    assert page.status_code == 422
    page = other.post(f"/admin/desk/goodwill/{big.pk}/", {"decision": "approve"})
    assert page.status_code == 302
    assert page["Location"] == "/admin/desk/goodwill/"
    assert credit_of(desk.device) == 9230
    page = other.post(decide, {"decision": "reject", "reason": "too much"})
    assert page.status_code == 302
    assert GoodwillCredit.objects.get(pk=desk.grant.pk).status == GoodwillStatus.REJECTED
    assert other.post(decide, {"decision": "approve"}).status_code == 409
    assert credit_of(desk.device) == 9230
    assert ledger_audit() == []


def test_the_status_page_suspends_then_offers_reinstating(desk: Desk) -> None:
    client = console_client(make_staff("sam", roles.SUPPORT))
    url = desk.url("desk-suspend")
    body = {"action": "suspend", "cause": "stolen", "reason": "phone call"}
    assert client.post(url, body).status_code == 302
    assert Device.objects.get(pk=desk.device.pk).status == DeviceStatus.SUSPENDED
    assert 'value="reinstate"' in client.get(url).content.decode()
    # A replayed suspension never reinstates.
    assert client.post(url, body).status_code == 409
    assert Device.objects.get(pk=desk.device.pk).status == DeviceStatus.SUSPENDED
    assert client.post(url, {"action": "reinstate", "reason": "found"}).status_code == 302
    assert Device.objects.get(pk=desk.device.pk).status == DeviceStatus.IN_STOCK


def test_the_unbind_page_unbinds_once(desk: Desk) -> None:
    client = console_client(make_staff("sam", roles.SUPPORT))
    url = desk.url("desk-unbind")
    assert client.post(url, {"reason": ""}).status_code == 200
    assert Device.objects.get(pk=desk.device.pk).owner_id is not None
    assert client.post(url, {"reason": "sold on"}).status_code == 302
    assert Device.objects.get(pk=desk.device.pk).owner_id is None
    assert client.post(url, {"reason": "sold on"}).status_code == 409
    assert "not in anyone" in client.get(url).content.decode()
    assert len(entries(Action.DEVICE_UNBIND)) == 1


# --- real concurrency -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_approvers_at_once_credit_once(settings: Any) -> None:
    from tests.test_concurrency import run_concurrently

    settings.GOODWILL_APPROVAL_ABOVE = 100
    actors = Actors()
    device = actors.device
    sam = make_staff("sam", roles.SUPPORT)
    approvers = [make_staff(f"fin{i}", roles.FINANCE) for i in range(4)]
    grant = goodwill.request_goodwill(device, 5000, staff=sam, ip=None, reason="outage")

    def approve(user: User) -> Callable[[], str]:
        def run() -> str:
            try:
                goodwill.approve_goodwill(
                    GoodwillCredit.objects.get(pk=grant.pk), staff=user, ip=None
                )
            except DomainError as exc:
                return exc.code
            return "approved"

        return run

    outcomes = run_concurrently([approve(u) for u in approvers], threads=4)
    assert sorted(outcomes) == ["already_decided"] * 3 + ["approved"]
    assert credit_of(device) == 5000
    assert Transfer.objects.filter(kind="goodwill_credit").count() == 1
    assert len(entries(Action.GOODWILL_APPROVE)) == 1
    assert ledger_audit() == []


def test_the_console_lists_every_goodwill_credit_read_only(desk: Desk) -> None:
    for role in (roles.SUPPORT, roles.FINANCE):
        client = console_client(make_staff(f"reader-{role}", role))
        page = client.get("/admin/devices/goodwillcredit/")
        assert page.status_code == 200
        assert "999.99 CNY" in page.content.decode()
        assert (
            client.get(f"/admin/devices/goodwillcredit/{desk.grant.pk}/change/").status_code == 200
        )
        assert (
            client.post(f"/admin/devices/goodwillcredit/{desk.grant.pk}/delete/").status_code == 403
        )
    assert GoodwillCredit.objects.get().status == GoodwillStatus.PENDING
