"""Senders (console, SMTP, HTTP SMS) against real local servers, and notify()."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message as EmailMessage
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.db import transaction
from django.test import Client, TestCase, override_settings

from simtopup.accounts.models import Customer, LoginCode
from simtopup.core.signing import verify_body
from simtopup.notifications.actions import notify, render
from simtopup.notifications.backends import memory
from simtopup.notifications.backends.console import ConsoleSender
from simtopup.notifications.backends.http_sms import HttpSmsSender
from simtopup.notifications.backends.smtp import SmtpSender
from simtopup.notifications.senders import Message, SendError, get_sender
from tests.customer_support import captured_messages, code_in, post_json

# --- a real SMTP server on loopback (aiosmtpd), STARTTLS + AUTH -----------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "smtp.crt", tmp / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []
        self.logins: list[tuple[bytes, bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.content, policy=default_policy)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 OK"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            b"mailer",
            b"s3cret",
        )
        if ok:
            self.logins.append((data.login, data.password))
        return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[tuple[Inbox, int, Path]]:
    cert, key = self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_tls,
        require_starttls=True,
        authenticator=inbox.authenticate,
        auth_require_tls=True,
    )
    # aiosmtpd logs every session (and cancelled ones at stop) to "mail.log": keep it quiet.
    mail_log = logging.getLogger("mail.log")
    level = mail_log.level
    mail_log.setLevel(logging.CRITICAL)
    controller.start()
    try:
        yield inbox, port, cert
    finally:
        controller.stop()
        mail_log.setLevel(level)


def smtp_settings(port: int, cert: Path, **extra: Any) -> Any:
    values: dict[str, Any] = {
        "EMAIL_SENDER": "smtp",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": port,
        "SMTP_SECURITY": "starttls",
        "SMTP_USER": "mailer",
        "SMTP_PASSWORD": "s3cret",
        "SMTP_CA_FILE": str(cert),
        "EMAIL_FROM": "Simtopup <no-reply@simtopup.example>",
    }
    return override_settings(**{**values, **extra})


def test_the_login_code_arrives_by_smtp(db: None, smtp_server: tuple[Inbox, int, Path]) -> None:
    inbox, port, cert = smtp_server
    with smtp_settings(port, cert), TestCase.captureOnCommitCallbacks(execute=True):
        response = post_json(
            Client(),
            "/api/v1/auth/code",
            {"email": "Wang.Fang@Example.com"},
            **{"Accept-Language": "en"},
        )
    assert response.status_code == 202, response.content
    assert inbox.logins == [(b"mailer", b"s3cret")]  # after STARTTLS (auth_require_tls)
    assert len(inbox.messages) == 1
    mail_from, rcpt_tos, email = inbox.messages[0]
    assert mail_from == "no-reply@simtopup.example"
    assert rcpt_tos == ["wang.fang@example.com"]
    assert email["To"] == "wang.fang@example.com"
    assert email["Subject"] == "Your simtopup one-time code"
    assert email["Content-Language"] == "en"
    body = email.get_content()
    code = code_in(Message("email", "", "", body))
    row = LoginCode.objects.get()
    assert row.sent_at is not None
    assert row.send_failed is False
    # …and it is the code that logs in.
    login = post_json(
        Client(),
        "/api/v1/auth/token",
        {"email": "wang.fang@example.com", "code": code},
    )
    assert login.status_code == 201, login.content


def test_smtp_sends_utf8_text(smtp_server: tuple[Inbox, int, Path]) -> None:
    inbox, port, cert = smtp_server
    with smtp_settings(port, cert):
        SmtpSender().send(
            Message("email", "li@example.com", "充值成功", "您的验证码是 123456", "zh-hans")
        )
    _from, rcpt, email = inbox.messages[0]
    assert rcpt == ["li@example.com"]
    assert email["Subject"] == "充值成功"
    assert "您的验证码是 123456" in email.get_content()


def test_smtp_refuses_an_untrusted_certificate(smtp_server: tuple[Inbox, int, Path]) -> None:
    inbox, port, cert = smtp_server
    with smtp_settings(port, cert, SMTP_CA_FILE=""), pytest.raises(SendError):
        SmtpSender().send(Message("email", "li@example.com", "s", "b"))
    assert inbox.messages == []
    assert inbox.logins == []


def test_smtp_wrong_password_is_a_send_error(smtp_server: tuple[Inbox, int, Path]) -> None:
    inbox, port, cert = smtp_server
    with smtp_settings(port, cert, SMTP_PASSWORD="wrong"), pytest.raises(SendError):
        SmtpSender().send(Message("email", "li@example.com", "s", "b"))
    assert inbox.messages == []


def test_smtp_unreachable_or_misconfigured_is_a_send_error() -> None:
    unreachable = override_settings(
        SMTP_HOST="127.0.0.1", SMTP_PORT=free_port(), SMTP_SECURITY="none"
    )
    with unreachable, pytest.raises(SendError):
        SmtpSender().send(Message("email", "li@example.com", "s", "b"))
    with override_settings(SMTP_SECURITY="tls"), pytest.raises(SendError, match="starttls"):
        SmtpSender().send(Message("email", "li@example.com", "s", "b"))


# --- a fake HTTP SMS provider on loopback -------------------------------------------------


class FakeSmsProvider:
    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                provider.requests.append((self.path, dict(self.headers.items()), body))
                self.send_response(provider.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"id": "msg-1"}')

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/messages"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeSmsProvider:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def sms_settings(url: str, **extra: Any) -> Any:
    return override_settings(
        SMS_SENDER="http",
        SMS_HTTP_URL=url,
        SMS_HTTP_API_KEY="key-123",
        SMS_HTTP_SIGNING_SECRET="sign-456",
        SMS_HTTP_SENDER_ID="SIMTOPUP",
        SMS_HTTP_TIMEOUT_SECONDS=5,
        **extra,
    )


def test_the_login_code_arrives_through_the_http_sms_provider(db: None) -> None:
    with FakeSmsProvider() as provider:
        with sms_settings(provider.url), TestCase.captureOnCommitCallbacks(execute=True):
            response = post_json(Client(), "/api/v1/auth/code", {"phone": "+85291234567"})
        assert response.status_code == 202
    assert len(provider.requests) == 1
    path, headers, raw = provider.requests[0]
    assert path == "/v1/messages"
    assert headers["Authorization"] == "Bearer key-123"
    assert headers["Content-Type"].startswith("application/json")
    verify_body("sign-456", headers["X-Simtopup-Signature"], raw)  # raises if forged
    body = json.loads(raw)
    assert body["to"] == "+85291234567"
    assert body["from"] == "SIMTOPUP"
    assert len(body["reference"]) == 32
    code = code_in(Message("sms", "", "", body["text"]))
    login = post_json(Client(), "/api/v1/auth/token", {"phone": "+852 9123 4567", "code": code})
    assert login.status_code == 201, login.content
    assert login.json()["customer"]["phone"] == "+85291234567"


def test_a_provider_error_is_logged_and_the_code_request_still_answers_202(
    db: None, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        FakeSmsProvider(status=503) as provider,
        sms_settings(provider.url),
        TestCase.captureOnCommitCallbacks(execute=True),
        caplog.at_level(logging.ERROR),
    ):
        response = post_json(Client(), "/api/v1/auth/code", {"phone": "+8613800138000"})
    assert response.status_code == 202
    assert len(provider.requests) == 1
    assert LoginCode.objects.get().send_failed is True
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors
    assert "503" in str(errors[0].exc_info[1])


def test_http_sms_without_a_url_or_unreachable_is_a_send_error() -> None:
    with override_settings(SMS_HTTP_URL=""), pytest.raises(SendError):
        HttpSmsSender().send(Message("sms", "+8613800138000", "", "hi"))
    with (
        override_settings(SMS_HTTP_URL=f"http://127.0.0.1:{free_port()}/", SMS_HTTP_API_KEY=""),
        pytest.raises(SendError),
    ):
        HttpSmsSender().send(Message("sms", "+8613800138000", "", "hi"))


# --- selection and the console sender -------------------------------------------------------


def test_senders_are_chosen_by_settings_and_capabilities() -> None:
    with override_settings(SMS_SENDER="http", EMAIL_SENDER="smtp"):
        assert isinstance(get_sender("sms"), HttpSmsSender)
        assert isinstance(get_sender("email"), SmtpSender)
    with override_settings(SMS_SENDER="console", EMAIL_SENDER="console"):
        assert isinstance(get_sender("sms"), ConsoleSender)
    with override_settings(SMS_SENDER="smtp"), pytest.raises(ValueError, match="cannot deliver"):
        get_sender("sms")


def test_the_console_sender_writes_recipient_and_text(capsys: pytest.CaptureFixture[str]) -> None:
    ConsoleSender().send(Message("email", "a@example.com", "Hello", "code 654321"))
    out = capsys.readouterr().out
    assert "a@example.com" in out
    assert "Subject: Hello" in out
    assert "code 654321" in out


# --- notify ----------------------------------------------------------------------------------


def test_notify_texts_phone_customers_and_emails_email_customers(db: None) -> None:
    phone = Customer.objects.create(phone="+8613800138000", language="zh-hant")
    email = Customer.objects.create(email="li@example.com", language="en")
    context = {"plan": "month-20g", "device": "8986••••1234", "amount": "¥59.00"}
    with captured_messages() as sent:
        with transaction.atomic():
            notify(phone, "topup_credited", context)
            notify(email, "topup_credited", context)
            before_commit = len(memory.outbox)
        assert len(memory.outbox) == before_commit  # nothing is sent before the commit
    assert [(m.channel, m.recipient, m.language) for m in sent] == [
        ("sms", "+8613800138000", "zh-hant"),
        ("email", "li@example.com", "en"),
    ]
    assert all("8986••••1234" in m.body and "¥59.00" in m.body for m in sent)
    assert sent[1].subject == "Top-up credited"
    assert (sent[0].subject, sent[0].body) == render("topup_credited", context, "zh-hant")


def test_notify_sends_nothing_for_rolled_back_work(db: None) -> None:
    customer = Customer.objects.create(phone="+8613800138000")
    with captured_messages() as sent:
        try:
            with transaction.atomic():
                notify(customer, "payment_failed", {"amount": "¥5.00", "device": "x"})
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
    assert sent == []


def test_notify_refuses_unknown_templates_and_missing_values(db: None) -> None:
    customer = Customer.objects.create(phone="+8613800138000")
    with captured_messages() as sent:
        with pytest.raises(KeyError):
            notify(customer, "no_such_template", {})
        with pytest.raises(KeyError):
            notify(customer, "topup_credited", {"plan": "day-1g"})
    assert sent == []


def test_notify_renders_lazy_values_in_the_customers_language(db: None) -> None:
    from django.utils import translation
    from django.utils.translation import gettext_lazy

    customer = Customer.objects.create(email="li@example.com", language="zh-hant")
    seen: list[str | None] = []

    class Spy:
        def __str__(self) -> str:
            seen.append(translation.get_language())
            return "spy"

    with captured_messages() as sent, translation.override("en"):
        notify(
            customer,
            "auto_topup_failed",
            {"device": "d", "plan": Spy(), "reason": gettext_lazy("Not found")},
        )
    assert seen == ["zh-hant"]
    assert sent[0].language == "zh-hant"
    assert "spy" in sent[0].body


def test_every_template_renders_in_every_language() -> None:
    from simtopup.notifications.templates import TEMPLATES

    context = {
        "code": "123456",
        "minutes": 10,
        "plan": "p",
        "device": "d",
        "amount": "¥1.00",
        "reason": "r",
        "percent": 80,
        "remaining": "1 GB",
        "expires_at": "2026-11-27 08:00 CST",
        # The alerts' (usage/alerts.py): what automatic top-up did, the one-tap link, …
        "auto": "a",
        "link": "https://example.test/topup",
        "credit": "¥2.00",
        "name": "n",
        "threshold": "¥5.00",
        "receipt_no": "20261205-000001",  # the re-sent receipt (orders/service.resend_receipt)
    }
    for key in TEMPLATES:
        for language in ("zh-hans", "zh-hant", "en"):
            subject, body = render(key, context, language)
            assert subject
            assert body
            assert "%(" not in body
