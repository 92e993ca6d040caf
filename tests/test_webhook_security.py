"""Where reseller webhooks may go, and how long one may take (issue 11's SSRF and slow
receiver doors).

Webhook URLs are https on public addresses only: refused when set (portal, CLI, operator
console) and again at each delivery, on the addresses the delivery itself resolved and then
connects to — a DNS answer that changed to a private address (rebinding) is refused, no
second lookup is made, no redirect is followed. Each delivery has one total deadline, also
against a receiver trickling a byte at a time, and deliveries run in the worker's own
webhook lane: a slow receiver does not hold up a customer's payment.

Receivers here are real servers on loopback (the suite's network guard allows nothing
else); host names are answered by patching ``webhooks.resolve``, the one lookup function.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from django_tasks_db.models import DBTaskResult

from simtopup.core.errors import DomainError
from simtopup.ops.janitor import run_janitor
from simtopup.ops.management.commands.worker import sweep_webhooks
from simtopup.orders.models import Order, OrderStatus
from simtopup.resellers import webhooks
from simtopup.resellers.actions import set_webhook
from simtopup.resellers.models import DeliveryStatus, Reseller, WebhookDelivery
from simtopup.resellers.webhooks import deliver, is_public_address, queue_event
from tests.payments_support import app, bind, make_customer, pay_on_page, sandbox_direct
from tests.staff_support import verify_console
from tests.support import Actors, post_json, reseller_client, run_worker

__all__ = ["sandbox_direct"]

PUBLIC = "93.184.215.14"  # a public address (never connected to: the resolver is patched)


# --- receivers: raw servers on loopback ---------------------------------------------------------


def read_request(conn: socket.socket) -> tuple[str, dict[str, str], bytes]:
    """One HTTP request: its request line, headers (lower-case names) and body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the request ended")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    line, *rows = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (r.split(":", 1) for r in rows)}
    while len(body) < int(headers.get("content-length", "0")):
        body += conn.recv(65536)
    return line, headers, body


class Server:
    """A TCP server on 127.0.0.1 answering each connection with ``answer(conn, server)``;
    it records connections, requests and when each connection ended."""

    def __init__(
        self,
        answer: Callable[[socket.socket, Server], None],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.answer = answer
        self.tls = tls
        self.accepted = 0
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.server_names: list[str | None] = []
        self.ended = threading.Event()  # a connection ended (the client went away)
        self.errors: list[BaseException] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closing = threading.Event()
        if tls is not None:
            tls.sni_callback = lambda sock, name, ctx: self.server_names.append(name)  # type: ignore[assignment,misc,unused-ignore]
        threading.Thread(target=self._serve, daemon=True).start()

    def url(self, host: str = "127.0.0.1", path: str = "/hooks", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def _serve(self) -> None:
        while not self.closing.is_set():
            try:
                conn, _addr = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(60)
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            self.requests.append(read_request(conn))
            self.answer(conn, self)
        except (OSError, ConnectionError, ssl.SSLError) as exc:
            self.errors.append(exc)
        finally:
            conn.close()
            self.ended.set()

    def close(self) -> None:
        self.closing.set()
        self.listener.close()


def answer_ok(conn: socket.socket, server: Server) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


def answer_trickle(every: float, first: bytes = b"") -> Callable[[socket.socket, Server], None]:
    """Sends ``first`` at once, then an answer one byte every ``every`` s (minutes of it)."""

    def answer(conn: socket.socket, server: Server) -> None:
        conn.sendall(first)
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"z" * 400:
            # Wait, but notice at once when the client hangs up (its end becomes readable).
            readable, _w, _x = select.select([conn], [], [], every)
            if server.closing.is_set() or (readable and not conn.recv(1)):
                return
            conn.sendall(bytes([byte]))

    return answer


@pytest.fixture
def servers() -> Iterator[Callable[..., Server]]:
    made: list[Server] = []

    def make(answer: Callable[[socket.socket, Server], None] = answer_ok, **kw: Any) -> Server:
        server = Server(answer, **kw)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Host name → address(es) or an exception; every lookup is recorded in ``dns["asked"]``."""
    table: dict[str, Any] = {"asked": []}

    def resolve(host: str, port: int) -> list[Any]:
        table["asked"].append(host)
        answer = table.get(host)
        if answer is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer):
            answer = answer()
        answers = answer if isinstance(answer, list) else [answer]
        return [ipaddress.ip_address(a) for a in answers]

    monkeypatch.setattr(webhooks, "resolve", resolve)
    return table


def webhook_of(reseller: Reseller, url: str, secret: str = "whsec_test") -> None:
    """Store a URL as it is (as an old row, or one set before DNS changed)."""
    Reseller.objects.filter(pk=reseller.pk).update(webhook_url=url, webhook_secret=secret)


def queued_delivery(actors: Actors, reference: str = "sec-1") -> WebhookDelivery:
    response = post_json(
        reseller_client(actors.alice_key),
        "/reseller/v1/topups",
        {"device": actors.device.iccid, "plan": "day-1g", "reference": reference},
    )
    assert response.status_code == 201, response.content
    order = Order.objects.get(pk=response.json()["id"])
    queue_event(order, "topup.fulfilled")
    return WebhookDelivery.objects.get(dedupe_key=f"topup.fulfilled:order:{order.pk}")


def outcome(delivery: WebhookDelivery) -> tuple[str, int, str]:
    delivery.refresh_from_db()
    return delivery.status, delivery.attempts, delivery.last_error


# --- which addresses are public ------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.0.0.5",
        "172.16.3.4",
        "192.168.1.1",
        "100.64.0.1",  # CGNAT shared space
        "169.254.169.254",  # cloud metadata, link-local
        "0.0.0.0",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "192.0.2.10",  # documentation
        "198.18.0.1",  # benchmarking
        "::1",
        "::",
        "fe80::1",
        "fd00::1",
        "fc00::5",
        "fec0::1",  # deprecated site-local
        "ff02::1",
        "ff0e::1",  # global-scope multicast: still not a receiver
        "2001:db8::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.5",
        "::ffff:169.254.169.254",
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
    ],
)
def test_loopback_private_link_local_and_reserved_addresses_are_not_public(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address", [PUBLIC, "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_public_unicast_addresses_are_public(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


# --- refused when set ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("https://127.0.0.1/h", "127.0.0.1"),
        ("https://127.0.0.1:5432/", "127.0.0.1"),
        ("https://10.0.0.5/hooks", "10.0.0.5"),
        ("https://192.168.0.10/h", "192.168.0.10"),
        ("https://100.64.1.1/h", "100.64.1.1"),
        ("https://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("https://0.0.0.0/h", "0.0.0.0"),
        ("https://224.0.0.1/h", "224.0.0.1"),
        ("https://[::1]/h", "::1"),
        ("https://[fd12:3456::1]/h", "fd12:3456::1"),
        ("https://[fe80::1]/h", "fe80::1"),
        ("https://[::ffff:127.0.0.1]/h", "::ffff:127.0.0.1"),
        ("https://[::ffff:a9fe:a9fe]/h", "::ffff:169.254.169.254"),
        ("https://internal.example.com/h", "127.0.0.1"),  # a name for loopback
        ("https://metadata.example.com/h", "169.254.169.254"),
        ("https://mixed.example.com/h", "10.0.0.5"),  # one bad address of two is enough
        ("https://gone.example.com/h", "could not be found"),
        ("http://hooks.example.com/h", "https"),  # public, but plain http
        ("http://127.0.0.1:9000/h", "https"),
        ("https://user:pw@hooks.example.com/h", "user name or password"),
    ],
)
def test_a_webhook_url_must_be_https_on_public_addresses(
    actors: Actors, dns: dict[str, Any], url: str, says: str
) -> None:
    dns.update(
        {
            "hooks.example.com": PUBLIC,
            "internal.example.com": "127.0.0.1",
            "metadata.example.com": "169.254.169.254",
            "mixed.example.com": [PUBLIC, "10.0.0.5"],
        }
    )
    with pytest.raises(DomainError) as refused:
        set_webhook(actors.alice, url)
    assert refused.value.code == "invalid_webhook_url"
    assert refused.value.errors[0].field == "webhook_url"
    assert says in str(refused.value.message)
    actors.alice.refresh_from_db()
    assert (actors.alice.webhook_url, actors.alice.webhook_secret) == ("", "")


def test_a_public_https_url_is_accepted(actors: Actors, dns: dict[str, Any]) -> None:
    dns["hooks.example.com"] = [PUBLIC, "2606:4700:4700::1111"]
    assert set_webhook(actors.alice, "https://hooks.example.com/simtopup")
    actors.alice.refresh_from_db()
    assert actors.alice.webhook_url == "https://hooks.example.com/simtopup"
    assert dns["asked"] == ["hooks.example.com"]


def test_a_test_installation_may_allow_http_and_private_addresses(
    actors: Actors, dns: dict[str, Any], settings: Any
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = True
    dns["internal.example.com"] = "10.0.0.5"
    for url in ("http://127.0.0.1:9000/h", "https://internal.example.com/h", "http://[::1]/h"):
        set_webhook(actors.alice, url)
        actors.alice.refresh_from_db()
        assert actors.alice.webhook_url == url
    # Never multicast or "unspecified", nor an unknown name.
    for url in ("http://224.0.0.1/h", "http://0.0.0.0/h", "https://gone.example.com/h"):
        with pytest.raises(DomainError):
            set_webhook(actors.alice, url)


def test_the_cli_refuses_a_private_webhook_url_before_making_the_reseller(
    db: None, dns: dict[str, Any]
) -> None:
    with pytest.raises(CommandError, match=r"invalid_webhook_url.*10\.0\.0\.5"):
        call_command("reseller", "create", "--name", "Eve", "--webhook-url", "https://10.0.0.5/h")
    assert not Reseller.objects.filter(name="Eve").exists()
    dns["hooks.example.com"] = PUBLIC
    out = []
    call_command(
        "reseller",
        "create",
        "--name",
        "Eve",
        "--webhook-url",
        "https://hooks.example.com/h",
        stdout=type("Out", (), {"write": lambda self, s: out.append(s)})(),
    )
    made = json.loads("".join(out))
    eve = Reseller.objects.get(name="Eve")
    assert eve.webhook_url == "https://hooks.example.com/h"
    assert made["webhook_secret"] == eve.webhook_secret


def test_the_operator_console_refuses_a_private_webhook_url(
    actors: Actors, dns: dict[str, Any]
) -> None:
    console = Client()
    verify_console(console, User.objects.create_superuser("op", "op@example.com", "pw-not-used"))
    path = f"/admin/resellers/reseller/{actors.alice.pk}/change/"
    form = {"name": "Alice Mobile", "currency": "CNY", "discount_bps": "800", "webhook_secret": ""}
    refused = console.post(path, {**form, "webhook_url": "https://169.254.169.254/latest/"})
    assert refused.status_code == 200
    assert "a private, local or reserved address" in refused.content.decode()
    actors.alice.refresh_from_db()
    assert actors.alice.webhook_url == ""
    dns["hooks.example.com"] = PUBLIC
    saved = console.post(path, {**form, "webhook_url": "https://hooks.example.com/h"})
    assert saved.status_code == 302
    actors.alice.refresh_from_db()
    assert actors.alice.webhook_url == "https://hooks.example.com/h"


# --- refused at delivery, on the address the delivery resolved ------------------------------------


def test_a_name_rebound_to_a_private_address_after_it_was_set_is_refused_at_delivery(
    actors: Actors, dns: dict[str, Any], servers: Callable[..., Server]
) -> None:
    receiver = servers()
    dns["hooks.example.com"] = PUBLIC
    set_webhook(actors.alice, receiver.url("hooks.example.com", scheme="https"))
    delivery = queued_delivery(actors)
    dns["hooks.example.com"] = "127.0.0.1"  # the attacker's DNS now answers loopback
    assert deliver(delivery.pk) == "retry"
    status, attempts, error = outcome(delivery)
    assert (status, attempts) == (DeliveryStatus.PENDING, 1)
    assert (
        error == "refused: hooks.example.com resolves to 127.0.0.1, which is not a public address"
    )
    assert receiver.accepted == 0


def test_a_stored_url_breaking_the_rule_is_refused_at_delivery(
    actors: Actors, servers: Callable[..., Server]
) -> None:
    receiver = servers()
    webhook_of(actors.alice, receiver.url())
    delivery = queued_delivery(actors)
    for url, says in [
        (receiver.url(), "refused: plain http"),
        (receiver.url(scheme="https"), "refused: 127.0.0.1 is not a public address"),
        (f"https://[::ffff:127.0.0.1]:{receiver.port}/h", "::ffff:127.0.0.1 is not a public"),
    ]:
        webhook_of(actors.alice, url)
        WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=delivery.created_at)
        assert deliver(delivery.pk) == "retry"
        assert says in outcome(delivery)[2]
    assert receiver.accepted == 0


def test_it_connects_to_the_address_it_vetted_without_a_second_lookup(
    actors: Actors, dns: dict[str, Any], servers: Callable[..., Server], settings: Any
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = True
    receiver = servers()
    answers = iter(["127.0.0.1", "10.255.255.1"])  # a second lookup would get another address
    dns["hooks.example.com"] = lambda: next(answers)
    webhook_of(actors.alice, receiver.url("hooks.example.com", "/in?shop=1"))
    delivery = queued_delivery(actors)
    assert deliver(delivery.pk) == "delivered"
    assert dns["asked"] == ["hooks.example.com"]
    [(line, headers, body)] = receiver.requests
    assert line == "POST /in?shop=1 HTTP/1.1"
    assert headers["host"] == f"hooks.example.com:{receiver.port}"
    assert headers["x-simtopup-delivery"] == str(delivery.pk)
    assert json.loads(body)["type"] == "topup.fulfilled"


@pytest.fixture
def certificates(tmp_path: Path) -> Callable[[str], tuple[ssl.SSLContext, ssl.SSLContext]]:
    """``make(name)``: a server context with a certificate for ``name`` from a test CA, and a
    client context trusting that CA (and nothing else)."""
    key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "simtopup test CA")])
    now = dt.datetime.now(dt.UTC)
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    def make(name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
        leaf_key = ec.generate_private_key(ec.SECP256R1())
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        chain = tmp_path / f"{name}.pem"
        chain.write_bytes(
            leaf.public_bytes(serialization.Encoding.PEM)
            + leaf_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(chain)
        client = ssl.create_default_context(cafile=str(ca_file))
        return server, client

    return make


def test_https_checks_the_certificate_and_sends_sni_for_the_host_name(
    actors: Actors,
    dns: dict[str, Any],
    servers: Callable[..., Server],
    settings: Any,
    certificates: Callable[[str], tuple[ssl.SSLContext, ssl.SSLContext]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = True  # the receiver is on loopback
    server_tls, client_tls = certificates("hooks.example.test")
    monkeypatch.setattr(webhooks, "tls_context", lambda: client_tls)
    receiver = servers(tls=server_tls)
    dns["hooks.example.test"] = "127.0.0.1"
    dns["other.example.test"] = "127.0.0.1"
    webhook_of(actors.alice, receiver.url("hooks.example.test", scheme="https"))
    delivery = queued_delivery(actors)
    assert deliver(delivery.pk) == "delivered", outcome(delivery)
    assert receiver.server_names == ["hooks.example.test"]
    assert receiver.requests[0][1]["host"] == f"hooks.example.test:{receiver.port}"

    # The same server under another name: its certificate does not match, nothing is sent.
    impostor = servers(tls=certificates("hooks.example.test")[0])
    webhook_of(actors.alice, impostor.url("other.example.test", scheme="https"))
    second = queued_delivery(actors, "sec-2")
    assert deliver(second.pk) == "retry"
    assert "certificate verify failed" in outcome(second)[2]
    assert impostor.requests == []


def test_a_redirect_is_not_followed(
    actors: Actors, servers: Callable[..., Server], settings: Any
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = True
    elsewhere = servers()

    def redirect(conn: socket.socket, server: Server) -> None:
        location = elsewhere.url(path="/internal-admin").encode()
        conn.sendall(
            b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n"
        )

    receiver = servers(redirect)
    webhook_of(actors.alice, receiver.url())
    delivery = queued_delivery(actors)
    assert deliver(delivery.pk) == "retry"
    assert outcome(delivery)[2] == "HTTP 302 (redirects are not followed)"
    assert len(receiver.requests) == 1
    assert elsewhere.accepted == 0


# --- one deadline for all of a delivery -------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["status line", "body"])
def test_a_trickling_receiver_is_cut_off_at_the_deadline(
    actors: Actors, servers: Callable[..., Server], settings: Any, where: str
) -> None:
    """A byte every 0.5 s never trips a per-read timeout of 2 s; the total deadline does."""
    settings.WEBHOOK_ALLOW_PRIVATE = True
    settings.WEBHOOK_TIMEOUT_SECONDS = 2
    first = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" if where == "body" else b""
    receiver = servers(answer_trickle(0.5, first))
    webhook_of(actors.alice, receiver.url())
    delivery = queued_delivery(actors)
    began = time.monotonic()
    assert deliver(delivery.pk) == "retry"
    took = time.monotonic() - began
    assert outcome(delivery)[2] == "timed out (the limit is 2 s)"
    assert receiver.ended.wait(5)  # we hung up; the trickle (minutes) had not finished
    assert took < 10  # the deadline, not the receiver, ended it (a byte every 0.5 s for 200 s)


def test_an_endless_answer_is_read_no_further_than_the_limit(
    actors: Actors, servers: Callable[..., Server], settings: Any
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = True
    settings.WEBHOOK_TIMEOUT_SECONDS = 30
    sent = []

    def endless(conn: socket.socket, server: Server) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n\r\n")
        block = b"x" * 16384
        while not server.closing.is_set():
            conn.sendall(block)  # raises once we hang up
            sent.append(len(block))

    receiver = servers(endless)
    webhook_of(actors.alice, receiver.url())
    delivery = queued_delivery(actors)
    assert deliver(delivery.pk) == "delivered"
    assert receiver.ended.wait(10)
    # It stopped reading at 64 KiB (what the sender got rid of also filled socket buffers).
    assert sum(sent) < 64 * 1024 + 16 * 1024 * 1024


def test_a_dns_lookup_that_hangs_counts_against_the_deadline(
    actors: Actors, dns: dict[str, Any], settings: Any
) -> None:
    settings.WEBHOOK_TIMEOUT_SECONDS = 1
    release = threading.Event()

    def slow() -> str:
        release.wait(20)
        return PUBLIC

    dns["hooks.example.com"] = slow
    webhook_of(actors.alice, "https://hooks.example.com/h")
    delivery = queued_delivery(actors)
    try:
        assert deliver(delivery.pk) == "retry"
    finally:
        release.set()
    assert outcome(delivery)[2] == (
        "refused: hooks.example.com does not resolve (the DNS lookup timed out)"
    )


# --- the webhook lane ------------------------------------------------------------------------------


def test_webhooks_go_on_their_own_queue_and_the_reconciler_pass_does_not_deliver_them(
    actors: Actors, servers: Callable[..., Server], settings: Any
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = True
    receiver = servers()
    webhook_of(actors.alice, receiver.url())
    delivery = queued_delivery(actors)
    [task] = DBTaskResult.objects.filter(task_path__endswith="deliver_webhook_task")
    assert task.queue_name == "webhooks"
    run_janitor()  # the main loop's reconciler pass: not its job
    assert receiver.accepted == 0
    assert sweep_webhooks() == 1  # the lane's
    assert outcome(delivery)[0] == DeliveryStatus.DELIVERED


def test_worker_once_delivers_webhooks_after_the_other_tasks(
    actors: Actors, servers: Callable[..., Server], settings: Any
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = True
    receiver = servers()
    webhook_of(actors.alice, receiver.url())
    delivery = queued_delivery(actors)
    run_worker()
    assert outcome(delivery)[0] == DeliveryStatus.DELIVERED
    assert len(receiver.requests) == 1


def worker_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    from tests.test_crash_recovery import worker_database_url

    settings_env = {
        "SIMTOPUP_DATABASE_URL": worker_database_url(),
        "SIMTOPUP_PAYMENT_PROVIDER": "sandbox",
        "SIMTOPUP_SANDBOX_ALLOWED": "1",
        "SIMTOPUP_SANDBOX_WEBHOOK_DELIVERY": "direct",
        "SIMTOPUP_RECONCILE_INTERVAL_SECONDS": "60",
        "SIMTOPUP_LOG_LEVEL": "INFO",
        **{f"SIMTOPUP_{k}": v for k, v in extra.items()},
    }
    inherited = {k: v for k, v in os.environ.items() if k.removesuffix("_FILE") not in settings_env}
    return {**inherited, **settings_env, "PYTHONUNBUFFERED": "1"}


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("sandbox_direct")
def test_a_slow_receiver_does_not_hold_up_a_customers_payment(
    actors: Actors, servers: Callable[..., Server], settings: Any, tmp_path: Path
) -> None:
    """The issue's case: a receiver trickling a byte every 4 s, and a customer paying
    meanwhile. One worker process, one webhook thread: the payment is credited while the
    delivery is still being trickled, and the delivery is cut off at its deadline."""
    from tests.test_crash_recovery import Workers, wait_until

    settings.WEBHOOK_ALLOW_PRIVATE = True
    slow = servers(answer_trickle(4))
    webhook_of(actors.alice, slow.url())
    delivery = queued_delivery(actors, "slow-1")  # queued before the payment

    workers = Workers(
        tmp_path,
        worker_env(
            tmp_path, WEBHOOK_ALLOW_PRIVATE="1", WEBHOOK_TIMEOUT_SECONDS="12", WEBHOOK_WORKERS="1"
        ),
    )
    try:
        worker = workers.start()
        logs = lambda: workers.output(worker)  # noqa: E731
        wait_until(lambda: len(slow.requests) == 1, 30, lambda: "no delivery began:\n" + logs())
        began = time.monotonic()

        token, customer = make_customer("+8613800138009")
        bind(actors.devices[1], customer)
        created = post_json(
            app(token),
            "/api/v1/orders",
            {"device": actors.devices[1].iccid, "plan": "day-1g", "payment_method": "card"},
        )
        assert created.status_code == 201, created.content
        assert pay_on_page(created.json()["payment"]["checkout_url"]).status_code == 302
        order_id = created.json()["id"]
        wait_until(
            lambda: Order.objects.get(pk=order_id).status == OrderStatus.FULFILLED,
            30,
            lambda: "the payment was not credited:\n" + logs(),
        )
        credited = time.monotonic() - began
        # Credited while the slow delivery was still going on: nothing waited for it.
        assert not slow.ended.is_set(), f"the delivery ended first ({credited:.1f} s)"
        status, attempts, error = outcome(delivery)
        assert (status, attempts, error) == (DeliveryStatus.PENDING, 1, "")

        # And the slow delivery ends at its deadline (12 s), long before the trickle would.
        wait_until(lambda: outcome(delivery)[2] != "", 30, lambda: "no outcome:\n" + logs())
        assert outcome(delivery)[2] == "timed out (the limit is 12 s)"
        assert slow.ended.wait(5)  # the worker hung up; the trickle had minutes to go
        assert worker.poll() is None, logs()
    finally:
        for server in [slow]:
            server.close()
        workers.stop_all()
