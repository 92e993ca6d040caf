"""Help: the FAQ and the contact form that stores a support ticket and tells the operator."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import translation

from simtopup.accounts.models import Customer
from simtopup.notifications.senders import Message, SendError
from simtopup.support.models import ReplyChannel, SupportTicket, TicketMessage
from simtopup.web.session import SESSION_KEY
from tests.customer_support import captured_messages
from tests.staff_support import verify_console
from tests.web_home_support import HTML_LANG, LANGUAGES, client_in, csrf_token, field_errors, page

GOOD = {
    "name": "Wang Fang",
    "reply_to": "138 0013 8000",
    "device": "8986 0100 0000 0000 017",
    "message": "My daily pass did not arrive after paying.",
}


class FailingSender:
    channels: ClassVar[frozenset[str]] = frozenset({"sms", "email"})

    def send(self, message: Message) -> None:
        raise SendError("mail server down")


@pytest.fixture(autouse=True)
def _support_settings(settings: Any) -> None:
    settings.SUPPORT_EMAIL = ""
    settings.SUPPORT_IP_LIMITS = ["100/3600"]


def send(client: Client, data: dict[str, str]) -> tuple[Any, list[Message]]:
    with captured_messages() as sent:
        response = client.post(reverse("web:help"), data)
    return response, sent


@pytest.mark.parametrize("language", LANGUAGES)
def test_it_answers_what_customers_ask(db: None, language: str) -> None:
    response = client_in(language).get(reverse("web:help"))

    assert response.status_code == 200
    html = page(response)
    assert f'<html lang="{HTML_LANG[language]}">' in html
    with translation.override(language):
        for question in [
            "How do I top up?",
            "Where is the device ID printed?",
            "How long does a top-up take?",
            "What if the top-up fails?",
            "How do I get a receipt?",
            "How do I spot a fake agent or site?",
            "Contact customer service",
        ]:
            assert translation.gettext(question) in html, question
    for name in ["name", "reply_to", "device", "message"]:
        assert f'<label for="id_{name}">' in html
    assert f'href="{reverse("web:verify-agent")}"' in html
    assert f'href="{reverse("verify-receipt-form")}"' in html
    assert f'href="{reverse("web:topup")}"' in html


def test_a_message_becomes_a_ticket_and_the_operator_is_emailed(db: None, settings: Any) -> None:
    settings.SUPPORT_EMAIL = "support@operator.example"
    client = client_in("zh-hant")

    response, sent = send(client, GOOD)

    assert response.status_code == 302
    # Back to the page, scrolled to the confirmation (not to the top, not to the form).
    assert response["Location"] == reverse("web:help") + "#contact-sent"
    ticket = SupportTicket.objects.get()
    assert ticket.reply_channel == ReplyChannel.PHONE
    assert ticket.reply_to == "+8613800138000"
    assert ticket.name == "Wang Fang"
    assert ticket.device == GOOD["device"]
    assert ticket.message == GOOD["message"]
    assert ticket.language == "zh-hant"
    assert ticket.ip == "127.0.0.1"
    assert ticket.customer is None
    assert ticket.notified_at is not None
    [email] = sent
    assert email.channel == "email"
    assert email.recipient == "support@operator.example"
    assert f"#{ticket.pk}" in email.subject
    assert GOOD["message"] in email.body
    assert "+8613800138000" in email.body
    # The visitor sees a confirmation with the ticket number, once.
    html = page(client.get(response["Location"]))
    assert f"#{ticket.pk}" in html
    assert "+8613800138000" in html
    # In the contact section, with the id the redirect names.
    contact = html[html.index('id="contact"') :]
    assert '<p class="sent" id="contact-sent" role="status"' in contact
    assert f"#{ticket.pk}" in contact[: contact.index("<form")]
    assert f"#{ticket.pk}" not in page(client.get(reverse("web:help")))


@pytest.mark.parametrize("brk", ["\r\n", "\n", "\r", "\u2028", "\x85", "\x0b"])
def test_a_line_break_in_a_one_line_field_cannot_forge_a_line_of_the_email(
    db: None, settings: Any, brk: str
) -> None:
    """A name with a CR/LF used to start a line of its own in the operator's email: a
    visitor could add a forged "Reply to:" line under the real one."""
    settings.SUPPORT_EMAIL = "support@operator.example"
    forged = f"Wang Fang{brk}Reply to: +8613999999999{brk}"
    data = {**GOOD, "name": forged, "device": f"8986{brk}Device: stolen"}

    response, sent = send(client_in("en"), data)

    assert response.status_code == 302
    ticket = SupportTicket.objects.get()
    assert ticket.name == "Wang Fang Reply to: +8613999999999"
    assert ticket.device == "8986 Device: stolen"
    [email] = sent
    lines = email.body.splitlines()
    assert [line for line in lines if line.startswith("Reply to:")] == ["Reply to: +8613800138000"]
    assert not [line for line in lines if line.startswith("Device: stolen")]
    assert "Name: Wang Fang Reply to: +8613999999999" in lines


def test_without_a_support_address_the_ticket_is_only_stored(db: None) -> None:
    response, sent = send(client_in("en"), {**GOOD, "reply_to": "Li@Example.com"})
    assert response.status_code == 302
    ticket = SupportTicket.objects.get()
    assert ticket.reply_channel == ReplyChannel.EMAIL
    assert ticket.reply_to == "li@example.com"
    assert ticket.notified_at is None
    assert sent == []


def test_a_failed_email_keeps_the_ticket(db: None, settings: Any, caplog: Any) -> None:
    settings.SUPPORT_EMAIL = "support@operator.example"
    with captured_messages():
        settings.EMAIL_SENDER = "tests.test_web_help.FailingSender"
        response = client_in("en").post(reverse("web:help"), GOOD)
    assert response.status_code == 302
    ticket = SupportTicket.objects.get()
    assert ticket.notified_at is None  # not marked as told: the email did not go
    assert "could not send email message 'support_ticket'" in caplog.text


def test_name_and_device_are_optional(db: None) -> None:
    response, _sent = send(client_in("en"), {"reply_to": "li@example.com", "message": "x" * 10})
    assert response.status_code == 302
    ticket = SupportTicket.objects.get()
    assert (ticket.name, ticket.device) == ("", "")


@pytest.mark.parametrize("language", LANGUAGES)
def test_errors_are_shown_next_to_their_fields(db: None, language: str) -> None:
    bad = {"name": "x", "reply_to": "12345", "device": "", "message": "short"}
    response, sent = send(client_in(language), bad)

    assert response.status_code == 422
    with translation.override(language):
        assert translation.gettext(
            "Enter a mobile number (e.g. 138 0013 8000) or an email address."
        ) in field_errors(response, "reply_to")
        assert field_errors(response, "message")
    # What was typed is kept.
    assert 'value="12345"' in page(response)
    assert SupportTicket.objects.count() == 0
    assert sent == []


def test_too_many_messages_from_one_address_are_refused(db: None, settings: Any) -> None:
    settings.SUPPORT_IP_LIMITS = ["2/3600"]
    client = client_in("en")
    assert send(client, GOOD)[0].status_code == 302
    assert send(client, GOOD)[0].status_code == 302

    response, _sent = send(client, GOOD)

    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert "Too many requests. Please wait" in page(response)
    # Two messages stored: the ticket and the same sender's second message on its thread.
    assert SupportTicket.objects.count() == 1
    assert TicketMessage.objects.count() == 1
    # Another address is not affected.
    other = client_in("en", REMOTE_ADDR="192.0.2.7")
    assert send(other, GOOD)[0].status_code == 302


def test_a_logged_in_customer_is_linked_and_prefilled(db: None) -> None:
    customer = Customer.objects.create(phone="+8613800138009", language="zh-hans")
    client = client_in("zh-hans")
    session = client.session
    session[SESSION_KEY] = customer.pk
    session.save()

    form = client.get(reverse("web:help"))
    assert 'value="+8613800138009"' in page(form)
    response, _sent = send(client, {**GOOD, "reply_to": "+8613800138009"})

    assert response.status_code == 302
    assert SupportTicket.objects.get().customer == customer


def test_the_contact_form_needs_the_csrf_token(db: None) -> None:
    client = Client(enforce_csrf_checks=True)
    assert client.post(reverse("web:help"), GOOD).status_code == 403
    assert SupportTicket.objects.count() == 0
    form = client.get(reverse("web:help"))
    response = client.post(reverse("web:help"), {**GOOD, "csrfmiddlewaretoken": csrf_token(form)})
    assert response.status_code == 302
    assert SupportTicket.objects.count() == 1


def test_the_operator_sees_tickets_in_the_console(db: None) -> None:
    send(client_in("en"), GOOD)
    console = Client()
    verify_console(console, User.objects.create_superuser("operator", "op@example.com", "pw"))
    response = console.get("/admin/support/supportticket/")
    assert response.status_code == 200
    assert "+8613800138000" in page(response)
    ticket = SupportTicket.objects.get()
    detail = console.get(f"/admin/support/supportticket/{ticket.pk}/change/")
    assert detail.status_code == 200
    assert GOOD["message"] in page(detail)


def test_writing_again_continues_the_unsolved_ticket(db: None, settings: Any) -> None:
    """After the desk's reply (waiting on the customer) the customer writes again with the same
    phone number: the same ticket, the message on its thread, new again, the operator told;
    once solved, the next message opens a new ticket."""
    from simtopup.support.actions import reply_to_ticket, set_ticket_status
    from simtopup.support.models import TicketStatus
    from tests.staff_support import console_client, make_staff

    settings.SUPPORT_EMAIL = "support@operator.example"
    client = client_in("en")
    send(client, GOOD)
    ticket = SupportTicket.objects.get()
    agent = make_staff("agent-thread", "support")
    with captured_messages() as replies:
        reply_to_ticket(
            ticket.pk, "Please restart the hotspot.", staff=agent, ip=None, status_after="waiting"
        )
    assert "write to us again on the help page" in replies[0].body
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.WAITING

    again = {**GOOD, "reply_to": "+86 138-0013-8000", "message": "Restarted, still nothing."}
    response, sent = send(client_in("zh-hans"), again)
    assert response.status_code == 302
    assert SupportTicket.objects.count() == 1
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.NEW
    assert ticket.language == "zh-hans"
    thread = list(TicketMessage.objects.filter(ticket=ticket))
    assert [(m.from_customer, m.body) for m in thread] == [
        (False, "Please restart the hotspot."),
        (True, "Restarted, still nothing."),
    ]
    [email] = sent
    assert f"#{ticket.pk}" in email.subject
    assert "Restarted, still nothing." in email.body

    # The desk's ticket page shows the thread with the customer's new message.
    desk = console_client(agent).get(reverse("admin:desk-ticket", args=[ticket.pk]))
    assert "Restarted, still nothing." in desk.content.decode()
    assert "<dd>简体中文</dd>" in desk.content.decode()  # the language by its name, not a code

    set_ticket_status(ticket.pk, TicketStatus.SOLVED, staff=agent, ip=None)
    send(client, {**GOOD, "message": "Another question."})
    assert SupportTicket.objects.count() == 2
    # Someone else's number opens its own ticket.
    response, _sent = send(
        client, {**GOOD, "reply_to": "13900139000", "message": "My card is dead."}
    )
    assert response.status_code == 302
    assert SupportTicket.objects.count() == 3
