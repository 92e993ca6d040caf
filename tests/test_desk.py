"""The console's customer-service desk (backoffice/desk.py, support/lookup.py,
support/story.py, support/actions.py): one search box for whatever a customer reads out,
the card's and the customer's story, a ticket's thread with replies by email and SMS and
its status, each page and action behind its permission."""

from __future__ import annotations

import re
from datetime import timedelta
from itertools import count
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from simtopup.accounts.models import Customer
from simtopup.audit.models import AuditEntry
from simtopup.catalog.models import Plan
from simtopup.devices.inventory import create_device
from simtopup.devices.models import Device
from simtopup.notifications.backends.memory import MemorySender
from simtopup.notifications.senders import SendError
from simtopup.orders.customer import place_balance_order
from simtopup.orders.models import Order, OrderStatus
from simtopup.payments.models import Payment, PaymentStatus, Refund
from simtopup.support.actions import create_ticket
from simtopup.support.lookup import find
from simtopup.support.models import Delivery, SupportTicket, TicketMessage, TicketStatus
from simtopup.usage.models import Alert, AlertDelivery, UsageRecord
from tests.customer_support import captured_messages
from tests.payments_support import bind, give_credit
from tests.staff_support import console_client, make_staff
from tests.support import MB, Actors, imei

LANGUAGES = ("zh-hans", "zh-hant", "en")
_seq = count(1)


class Story:
    """Wang Li (phone +86 138 0013 8000, email Wang.Li@example.com) holds card 0: ¥20.00 of
    credit, a 1 GB day pass bought from it (fulfilled, receipt number), 300 MB used
    yesterday; a card order paid by card and refunded; a reseller's sale with reference
    ALICE-REF-77; a support ticket; an alert sent by SMS. A hotspot with an IMEI and a
    serial number is nobody's."""

    def __init__(self, actors: Actors) -> None:
        self.actors = actors
        self.customer = Customer.objects.create(
            phone="+8613800138000", email="wang.li@example.com", language="zh-hans"
        )
        self.device = actors.device
        bind(self.device, self.customer)
        give_credit(self.device, 2000, "test:desk-credit")
        self.balance_order = place_balance_order(self.customer, self.device, actors.plans["day-1g"])
        self.balance_order.refresh_from_db()
        self.card_order = paid_order(self.device, self.customer, refunded=True)
        self.reseller_order = Order.objects.create(
            channel="reseller",
            status=OrderStatus.FULFILLED,
            device=self.device,
            plan=actors.plans["day-1g"],
            reseller=actors.alice,
            reference="ALICE-REF-77",
            amount=460,
            retail_amount=500,
            currency="CNY",
        )
        yesterday = timezone.now() - timedelta(days=1)
        UsageRecord.objects.create(
            record_id=f"desk-{next(_seq)}",
            device=self.device,
            bytes=300 * MB,
            bundle_bytes=300 * MB,
            started_at=yesterday - timedelta(hours=1),
            ended_at=yesterday,
        )
        self.ticket = create_ticket(
            reply_channel="phone",
            reply_to="+8613800138000",
            message="My data stopped working",
            device=self.device.iccid or "",
            language="zh-hans",
            customer=self.customer,
        )
        alert = Alert.objects.create(
            key=f"b:desk:{next(_seq)}",
            kind="used_80",
            device=self.device,
            created_at=timezone.now(),
            planned_at=timezone.now(),
        )
        AlertDelivery.objects.create(
            alert=alert,
            channel="sms",
            status="sent",
            next_attempt_at=timezone.now(),
            sent_at=timezone.now(),
        )
        self.hotspot = create_device(kind="hotspot", imei=imei(7), serial="HS-2024-0007")


def paid_order(device: Device, customer: Customer | None, *, refunded: bool = False) -> Order:
    order = Order.objects.create(
        channel="app",
        status=OrderStatus.REFUNDED if refunded else OrderStatus.FULFILLED,
        device=device,
        plan=Plan.objects.get(code="month-20g"),
        customer=customer,
        payment_method="card",
        amount=5900,
        retail_amount=5900,
        currency="CNY",
    )
    payment = Payment.objects.create(
        order=order,
        provider="sandbox",
        method="card",
        status=PaymentStatus.REFUNDED if refunded else PaymentStatus.SUCCEEDED,
        amount=5900,
        currency="CNY",
        reference=f"pay-desk-{next(_seq)}",
    )
    if refunded:
        Refund.objects.create(
            order=order,
            payment=payment,
            reference=f"ref-desk-{next(_seq)}",
            amount=5900,
            currency="CNY",
            reason="customer could not connect abroad",
            requested_by="staff:1:agent",
            status="succeeded",
        )
    return order


@pytest.fixture
def story(actors: Actors) -> Story:
    return Story(actors)


@pytest.fixture
def agent(db: None) -> User:
    return make_staff("agent", "support")


def device_url(device: Device) -> str:
    return reverse("admin:desk-device", args=[device.pk])


def search(client: Any, q: str) -> Any:
    return client.get(reverse("admin:desk-search"), {"q": q})


def text(response: Any) -> str:
    return response.content.decode()


# --- search ------------------------------------------------------------------------------


def spaced(digits: str, sep: str = " ", width: int = 4) -> str:
    return sep.join(digits[i : i + width] for i in range(0, len(digits), width))


def test_search_finds_a_card_by_each_form_of_its_device_id(story: Story, agent: User) -> None:
    client = console_client(agent)
    card, hotspot = story.device, story.hotspot
    assert card.iccid
    assert card.eid
    assert hotspot.imei
    for typed, device in (
        (card.iccid, card),
        (spaced(card.iccid), card),
        (spaced(card.iccid, "-"), card),
        (card.iccid + "F", card),  # the ICCID's filler, as some readers print it
        (card.eid, card),
        (spaced(card.eid), card),
        (hotspot.imei, hotspot),
        (f"{hotspot.imei[:2]}-{hotspot.imei[2:8]}-{hotspot.imei[8:]}", hotspot),
        ("HS-2024-0007", hotspot),
        ("  HS-2024-0007 ", hotspot),
    ):
        response = search(client, typed)
        assert response.status_code == 302, typed
        assert response["Location"] == device_url(device), typed


def test_search_finds_the_customer_by_phone_in_any_form_and_email_in_any_case(
    story: Story, agent: User
) -> None:
    client = console_client(agent)
    customer_url = reverse("admin:desk-customer", args=[story.customer.pk])
    for typed in (
        "+8613800138000",
        "+86 138 0013 8000",
        "13800138000",
        "138-0013-8000",
        "wang.li@example.com",
        "WANG.LI@Example.COM",
        " Wang.Li@example.com ",
    ):
        response = search(client, typed)
        assert response.status_code == 302, typed
        assert response["Location"] == customer_url, typed


def test_search_finds_orders_by_receipt_number_order_id_and_reseller_reference(
    story: Story, agent: User
) -> None:
    client = console_client(agent)
    receipt = story.balance_order.receipt_no
    assert receipt
    for typed, order in (
        (receipt, story.balance_order),
        (receipt.lower().replace("-", " "), story.balance_order),
        (str(story.card_order.pk), story.card_order),
        (f"#{story.card_order.pk}", story.card_order),
        ("ALICE-REF-77", story.reseller_order),
    ):
        response = search(client, typed)
        assert response.status_code == 302, typed
        assert response["Location"] == f"{device_url(story.device)}#order-{order.pk}", typed


def test_search_finds_a_reseller_by_its_agent_code(story: Story, agent: User) -> None:
    code = story.actors.alice.code
    typed = f" {code[:2].lower()}-{code[2:].lower()} "
    response = search(console_client(agent), typed)
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "admin:resellers_reseller_change", args=[story.actors.alice.pk]
    )


def test_several_hits_are_listed_and_none_says_so(story: Story, agent: User) -> None:
    Order.objects.create(
        channel="reseller",
        status=OrderStatus.FULFILLED,
        device=story.hotspot,
        plan=story.actors.plans["day-1g"],
        reseller=story.actors.bob,
        reference="ALICE-REF-77",  # unique per reseller only
        amount=500,
        retail_amount=500,
        currency="CNY",
    )
    client = console_client(agent, HTTP_ACCEPT_LANGUAGE="en")
    several = search(client, "ALICE-REF-77")
    assert several.status_code == 200
    assert "Matches: 2" in text(several)
    assert f'href="{device_url(story.device)}#order-{story.reseller_order.pk}"' in text(several)
    assert f'href="{device_url(story.hotspot)}#order-' in text(several)
    none = search(client, "no-such-thing-42")
    assert none.status_code == 200
    assert 'id="desk-none"' in text(none)
    assert "Nothing matches" in text(none)
    assert find("") == []
    # A mistyped ICCID (wrong check digit) is not a card.
    assert story.device.iccid
    wrong = story.device.iccid[:-1] + str((int(story.device.iccid[-1]) + 1) % 10)
    assert [h for h in find(wrong) if h.kind == "device"] == []


def test_a_ticket_from_a_visitor_is_found_by_its_reply_address(story: Story, agent: User) -> None:
    ticket = create_ticket(
        reply_channel="email", reply_to="visitor@example.com", message="Where is my card?"
    )
    response = search(console_client(agent), "Visitor@Example.com")
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:desk-ticket", args=[ticket.pk])


# --- the stories -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "words"),
    [
        ("zh-hans", ("剩余流量", "余额", "订单")),
        ("zh-hant", ("剩餘流量", "餘額", "訂單")),
        ("en", ("Remaining data", "Credit", "Orders")),
    ],
)
def test_the_card_story_in_each_language(
    story: Story, agent: User, language: str, words: tuple[str, ...]
) -> None:
    response = console_client(agent, HTTP_ACCEPT_LANGUAGE=language).get(device_url(story.device))
    assert response.status_code == 200
    body = text(response)
    for word in words:
        assert word in body, (language, word)
    assert story.device.iccid
    assert story.device.iccid in body
    # ¥20.00 of credit, ¥5.00 of it paid for the day pass.
    assert re.search(r'id="desk-credit">¥15\.00<', body)
    assert "+¥20.00" in body
    assert "-¥5.00" in body
    # 1 GB granted, 300 MB used yesterday from the bundle? The record above is not rated,
    # so the bundle still holds its 1 GB.
    assert re.search(r'id="desk-remaining">1 GB<', body)
    for order in (story.balance_order, story.card_order, story.reseller_order):
        assert f'id="order-{order.pk}"' in body
    assert story.balance_order.receipt_no
    assert story.balance_order.receipt_no in body
    assert "ALICE-REF-77" in body
    assert "customer could not connect abroad" in body  # the refund and its reason
    assert "¥59.00" in body
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in body  # usage per day
    assert "300 MB" in body  # the 30 days' total
    assert 'id="desk-no-usage"' not in body
    assert f'href="/admin/desk/tickets/{story.ticket.pk}/"' in body
    assert "sms" in body  # the alert's delivery
    assert f'href="/admin/desk/customers/{story.customer.pk}/"' in body
    assert "<script" not in body.split('id="content-main"')[1]


@pytest.mark.parametrize(
    ("language", "word"), [("zh-hans", "订单"), ("zh-hant", "訂單"), ("en", "Orders")]
)
def test_the_customer_story_in_each_language(
    story: Story, agent: User, language: str, word: str
) -> None:
    client = console_client(agent, HTTP_ACCEPT_LANGUAGE=language)
    response = client.get(reverse("admin:desk-customer", args=[story.customer.pk]))
    assert response.status_code == 200
    body = text(response)
    assert word in body
    assert "+8613800138000" in body
    assert "wang.li@example.com" in body
    assert f'href="{device_url(story.device)}"' in body
    assert "1 GB" in body  # the card's remaining data
    assert f'id="order-{story.card_order.pk}"' in body
    assert f'id="order-{story.balance_order.pk}"' in body
    assert "My data stopped working" in body


def test_a_card_without_usage_says_so(story: Story, agent: User) -> None:
    body = text(
        console_client(agent, HTTP_ACCEPT_LANGUAGE="zh-hans").get(device_url(story.hotspot))
    )
    assert "这 30 天没有使用流量。" in body
    assert "未绑定客户" in body  # nobody's card


def test_the_story_times_are_in_the_operators_zone(story: Story, agent: User, settings) -> None:
    settings.DISPLAY_TIME_ZONE = "Asia/Shanghai"
    at = timezone.now().replace(hour=20, minute=30, second=0, microsecond=0)
    Order.objects.filter(pk=story.card_order.pk).update(created_at=at)  # 20:30 UTC
    body = text(console_client(agent).get(device_url(story.device)))
    shanghai = (at + timedelta(hours=8)).strftime("%Y-%m-%d 04:30")
    assert shanghai in body


def test_the_story_reads_a_bounded_number_of_queries(
    story: Story, agent: User, django_assert_max_num_queries: Any
) -> None:
    client = console_client(agent)
    client.get(device_url(story.device))  # the session and permissions warmed up
    with CaptureQueriesContext(connection) as few:
        assert client.get(device_url(story.device)).status_code == 200
    for _ in range(30):
        paid_order(story.device, story.customer, refunded=True)
    with CaptureQueriesContext(connection) as many:
        assert client.get(device_url(story.device)).status_code == 200
    assert len(many) == len(few)
    with django_assert_max_num_queries(25):
        response = client.get(device_url(story.device))
    body = text(response)
    assert body.count('class="module desk-order"') == 20
    assert "/admin/orders/order/?device__id__exact=" in body  # the rest in the order list
    with django_assert_max_num_queries(25):
        assert (
            client.get(reverse("admin:desk-customer", args=[story.customer.pk])).status_code == 200
        )


def test_sections_the_staff_may_not_see_are_left_out(story: Story, db: None) -> None:
    finance = make_staff("fin", "finance")
    body = text(console_client(finance).get(device_url(story.device)))
    # Finance sees cards, orders, payments and refunds, not usage, plans' data nor tickets.
    assert f'id="order-{story.card_order.pk}"' in body
    assert "customer could not connect abroad" in body
    assert 'id="desk-usage"' not in body
    assert 'id="desk-bundles"' not in body
    assert 'id="desk-tickets"' not in body


# --- action buttons ----------------------------------------------------------------------


def test_action_buttons_follow_the_permissions_and_come_back_here(story: Story, db: None) -> None:
    from simtopup.backoffice.desk import action_url

    failed = Order.objects.create(
        channel="app",
        status=OrderStatus.FAILED,
        device=story.device,
        plan=story.actors.plans["day-1g"],
        customer=story.customer,
        payment_method="card",
        amount=500,
        retail_amount=500,
        currency="CNY",
    )
    admin = User.objects.create_superuser("boss", "boss@example.com", "pw")
    here = device_url(story.device)
    body = text(console_client(admin).get(here)).replace("&amp;", "&")
    fulfilled = story.balance_order.pk
    for name, kwargs in (
        ("admin:desk-refund", {"order_id": fulfilled}),
        ("admin:desk-resend", {"order_id": fulfilled}),
        ("admin:desk-retry", {"order_id": failed.pk}),
        ("admin:desk-suspend", {"device_id": story.device.pk}),
        ("admin:desk-unbind", {"device_id": story.device.pk}),
        ("admin:desk-goodwill", {"device_id": story.device.pk}),
    ):
        url = action_url(name, here, **kwargs)
        if url is not None:  # the action's page exists (another module's)
            assert url.endswith(f"?next={here.replace('/', '%2F')}")
            assert f'href="{url}"' in body, name
    # No retry for a fulfilled order, no refund for a refunded one: the button is not offered.
    for name, order in (
        ("admin:desk-retry", fulfilled),
        ("admin:desk-refund", story.card_order.pk),
    ):
        url = action_url(name, here, order_id=order)
        if url is not None:
            assert f'href="{url}"' not in body, name
    assert action_url("admin:desk-no-such-action", here, order_id=1) is None
    # Without a permission, no button, whatever exists: finance may not suspend a card.
    finance = make_staff("fin", "finance")
    assert not finance.has_perm("devices.suspend_device")
    assert "desk-action-suspend" not in text(console_client(finance).get(here))


# --- tickets -----------------------------------------------------------------------------


def ticket_url(ticket: SupportTicket) -> str:
    return reverse("admin:desk-ticket", args=[ticket.pk])


@pytest.mark.parametrize(
    ("language", "word"),
    [("zh-hans", "回复客户"), ("zh-hant", "回覆客戶"), ("en", "Reply to the customer")],
)
def test_the_ticket_page_in_each_language(
    story: Story, agent: User, language: str, word: str
) -> None:
    response = console_client(agent, HTTP_ACCEPT_LANGUAGE=language).get(ticket_url(story.ticket))
    assert response.status_code == 200
    body = text(response)
    assert word in body
    assert "My data stopped working" in body
    assert f'href="{device_url(story.device)}"' in body


def test_a_reply_goes_by_sms_in_the_tickets_language_and_stays_on_the_thread(
    story: Story, agent: User
) -> None:
    client = console_client(agent)
    with captured_messages() as sent:
        response = client.post(
            ticket_url(story.ticket),
            {"do": "reply", "body": "Please restart the device.", "status_after": "waiting"},
        )
    assert response.status_code == 302
    assert [(m.channel, m.recipient, m.language) for m in sent] == [
        ("sms", "+8613800138000", "zh-hans")
    ]
    assert "Please restart the device." in sent[0].body
    assert f"#{story.ticket.pk}" in sent[0].body
    assert "客服" in sent[0].body
    story.ticket.refresh_from_db()
    assert story.ticket.status == TicketStatus.WAITING
    assert story.ticket.message == "My data stopped working"  # the first message stays
    reply = TicketMessage.objects.get(ticket=story.ticket)
    assert reply.staff == agent
    assert reply.author == "agent"
    assert reply.channel == "phone"
    assert reply.delivery == Delivery.DELIVERED
    assert reply.delivered_at is not None
    entry = AuditEntry.objects.get(action="ticket.reply")
    assert entry.actor == f"staff:{agent.pk}:agent"
    assert entry.before == {"status": "new"}
    assert entry.after == {
        "status": "waiting",
        "message": reply.pk,
        "channel": "phone",
        "reply_to": "+8613800138000",
    }
    page = text(client.get(ticket_url(story.ticket)))
    assert "Please restart the device." in page


def test_a_reply_to_an_email_ticket_goes_by_email_in_english(story: Story, agent: User) -> None:
    ticket = create_ticket(
        reply_channel="email",
        reply_to="visitor@example.com",
        message="Is there a plan for Japan?",
        language="en",
    )
    with captured_messages() as sent:
        client = console_client(agent)
        client.post(
            ticket_url(ticket),
            {"do": "reply", "body": "Yes: 7 days, 5 GB.", "status_after": "solved"},
        )
    assert [(m.channel, m.recipient, m.language) for m in sent] == [
        ("email", "visitor@example.com", "en")
    ]
    assert sent[0].subject == f"Reply to your message #{ticket.pk}"
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.SOLVED


def test_a_reply_the_sender_refuses_is_recorded_failed(
    story: Story, agent: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: Any, message: Any) -> None:
        raise SendError("provider down")

    monkeypatch.setattr(MemorySender, "send", refuse)
    with captured_messages():
        console_client(agent).post(
            ticket_url(story.ticket), {"do": "reply", "body": "Hello", "status_after": "waiting"}
        )
    reply = TicketMessage.objects.get()
    assert reply.delivery == Delivery.FAILED
    assert reply.delivered_at is None


def test_the_status_changes_with_an_audit_row(story: Story, agent: User) -> None:
    client = console_client(agent)
    response = client.post(ticket_url(story.ticket), {"do": "status", "status": "solved"})
    assert response.status_code == 302
    story.ticket.refresh_from_db()
    assert story.ticket.status == TicketStatus.SOLVED
    entry = AuditEntry.objects.get(action="ticket.status")
    assert (entry.before, entry.after) == ({"status": "new"}, {"status": "solved"})
    # The same status again writes nothing.
    client.post(ticket_url(story.ticket), {"do": "status", "status": "solved"})
    assert AuditEntry.objects.filter(action="ticket.status").count() == 1
    # An empty reply or an unknown status is refused, nothing sent or changed.
    with captured_messages() as sent:
        client.post(ticket_url(story.ticket), {"do": "reply", "body": " ", "status_after": "new"})
        client.post(ticket_url(story.ticket), {"do": "status", "status": "open"})
    assert sent == []
    assert TicketMessage.objects.count() == 0
    story.ticket.refresh_from_db()
    assert story.ticket.status == TicketStatus.SOLVED


def test_the_ticket_list_in_the_console_still_works(story: Story, agent: User) -> None:
    client = console_client(agent)
    response = client.get("/admin/support/supportticket/", {"status__exact": "new"})
    assert response.status_code == 200
    assert "+8613800138000" in text(response)
    assert f'href="{ticket_url(story.ticket)}"' in text(response)  # to the desk's page
    solved = client.get("/admin/support/supportticket/", {"status__exact": "solved"})
    assert "+8613800138000" not in text(solved)


def test_the_old_statuses_are_mapped_by_the_migration() -> None:
    from importlib import import_module

    migration = import_module("simtopup.support.migrations.0002_ticket_thread")
    rows = {"a": "open", "b": "closed"}

    class Rows:
        def filter(self, status: str) -> Any:
            keys = [k for k, v in rows.items() if v == status]

            class Update:
                def update(self, status: str) -> None:
                    for k in keys:
                        rows[k] = status

            return Update()

    class Model:
        objects = Rows()

    class Apps:
        def get_model(self, app: str, name: str) -> Any:
            return Model

    migration.FORWARD(Apps(), None)
    assert rows == {"a": "new", "b": "solved"}
    migration.BACKWARD(Apps(), None)
    assert rows == {"a": "open", "b": "closed"}


# --- permissions -------------------------------------------------------------------------


def test_staff_without_the_permissions_get_403_everywhere(story: Story, db: None) -> None:
    nobody = User.objects.create_user("clerk", "clerk@example.com", "pw", is_staff=True)
    client = console_client(nobody)
    for url in (
        reverse("admin:desk-search") + "?q=13800138000",
        device_url(story.device),
        reverse("admin:desk-customer", args=[story.customer.pk]),
        ticket_url(story.ticket),
    ):
        assert client.get(url).status_code == 403, url
    for data in (
        {"do": "reply", "body": "x", "status_after": "solved"},
        {"do": "status", "status": "solved"},
    ):
        assert client.post(ticket_url(story.ticket), data).status_code == 403
    # Finance reads tickets? No: support's business. And may not reply either.
    finance = console_client(make_staff("fin", "finance"))
    assert finance.get(ticket_url(story.ticket)).status_code == 403
    # A staff member who may read tickets but not reply gets 403 on the POSTs.
    reader = User.objects.create_user("reader", "r@example.com", "pw", is_staff=True)
    reader.user_permissions.add(Permission.objects.get(codename="view_supportticket"))
    reader_client = console_client(reader)
    page = reader_client.get(ticket_url(story.ticket))
    assert page.status_code == 200
    assert 'name="body"' not in text(page)
    for data in (
        {"do": "reply", "body": "x", "status_after": "solved"},
        {"do": "status", "status": "solved"},
    ):
        assert reader_client.post(ticket_url(story.ticket), data).status_code == 403
    story.ticket.refresh_from_db()
    assert story.ticket.status == TicketStatus.NEW
    assert TicketMessage.objects.count() == 0
    assert not AuditEntry.objects.filter(action__startswith="ticket.").exists()
    # Not logged in: the console's login page.
    from django.test import Client

    assert Client().get(device_url(story.device)).status_code == 302


def test_the_search_box_is_on_the_console_home(story: Story, agent: User) -> None:
    body = text(console_client(agent).get("/admin/"))
    assert f'action="{reverse("admin:desk-search")}"' in body
    nobody = User.objects.create_user("clerk", "clerk@example.com", "pw", is_staff=True)
    assert 'id="desk-q"' not in text(console_client(nobody).get("/admin/"))
