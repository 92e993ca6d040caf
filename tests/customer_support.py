"""Test helpers for customers of the app API (shared by the customer, order and payment tests).

``login_customer`` goes through the real flow: ``POST /api/v1/auth/code``, the code read from
the message the sender delivered, ``POST /api/v1/auth/token``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from django.test import Client, TestCase, override_settings

from simtopup.accounts.models import Customer
from simtopup.notifications.backends import memory
from simtopup.notifications.senders import Message
from tests.support import post_json

CODE = re.compile(r"\b(\d{6})\b")
# Generous limits for helpers that log many customers in; tests of the limits set their own.
NO_LIMITS = {"LOGIN_CODE_IDENTITY_LIMITS": ["1000/60"], "LOGIN_CODE_IP_LIMITS": ["1000/60"]}


def app_client(token: str) -> Client:
    """A test client that sends ``Authorization: Bearer <token>``."""
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


@contextmanager
def captured_messages() -> Iterator[list[Message]]:
    """Route SMS and email to the in-memory sender and run on-commit callbacks at the end of
    the block; the yielded list holds the messages sent inside it (filled on exit)."""
    sent: list[Message] = []
    start = len(memory.outbox)
    with (
        override_settings(SMS_SENDER="memory", EMAIL_SENDER="memory"),
        TestCase.captureOnCommitCallbacks(execute=True),
    ):
        yield sent
    sent.extend(memory.outbox[start:])


def code_in(message: Message) -> str:
    match = CODE.search(message.body)
    assert match, f"no code in {message.body!r}"
    return match.group(1)


def request_code(identity: dict[str, str], client: Client | None = None, **headers: str) -> str:
    """Ask for a code for ``{"phone": …}`` or ``{"email": …}`` and return it."""
    client = client or Client()
    with override_settings(**NO_LIMITS), captured_messages() as sent:
        response = post_json(client, "/api/v1/auth/code", identity, **headers)
    assert response.status_code == 202, response.content
    assert sent, "no message was sent"
    return code_in(sent[-1])


def login_customer(
    phone: str = "+8613800138000",
    *,
    email: str | None = None,
    client: Client | None = None,
    **headers: str,
) -> tuple[str, Customer]:
    """Log in through the API (code by SMS, or by email when ``email`` is given) and return
    (the app token, the customer). The first login creates the customer."""
    client = client or Client()
    identity = {"email": email} if email is not None else {"phone": phone}
    code = request_code(identity, client, **headers)
    response = post_json(client, "/api/v1/auth/token", {**identity, "code": code}, **headers)
    assert response.status_code == 201, response.content
    body = response.json()
    return body["token"], Customer.objects.get(pk=body["customer"]["id"])
