"""Outgoing signed webhooks to resellers, retried with backoff until delivered.

Where a webhook may go — one rule, checked when a URL is set (portal, CLI, operator console:
``check_url``) and again at every delivery, on the addresses actually used:

* https only (``SIMTOPUP_WEBHOOK_ALLOW_PRIVATE=1``, for test installations, also allows plain
  http);
* the host resolves, in one lookup, to public unicast addresses only — not loopback,
  private (RFC 1918, IPv6 ULA), shared (CGNAT 100.64/10), link-local (the cloud metadata
  address 169.254.169.254), multicast, unspecified, reserved or documentation addresses,
  nor an IPv6 form carrying one of those (IPv4-mapped, NAT64). One address that is not
  public refuses the URL (``SIMTOPUP_WEBHOOK_ALLOW_PRIVATE=1`` allows private and loopback
  ones). The delivery then connects to exactly the addresses it vetted — no second lookup a
  rebinding DNS server could answer differently — while the Host header, TLS SNI and the
  certificate check use the URL's host name;
* no redirect is followed: a 3xx answer is a failed attempt.

Each delivery has one total deadline, ``SIMTOPUP_WEBHOOK_TIMEOUT_SECONDS``, for all of it:
the lookup, connect, TLS handshake, sending, and reading the answer (of which at most
``MAX_RESPONSE_BYTES`` are read). A receiver trickling a byte every few seconds is cut off
when the deadline passes. Deliveries run on their own queue (``WEBHOOK_QUEUE``), which the
worker serves in threads of their own (``simtopup worker``'s webhook lane): a slow receiver
never holds up payments or fulfilment.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from django.conf import settings
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from simtopup.core import requestid
from simtopup.core.signing import HEADER, sign
from simtopup.resellers.bodies import topup_body
from simtopup.resellers.models import DeliveryStatus, Reseller, WebhookDelivery

if TYPE_CHECKING:
    from django.utils.functional import _StrOrPromise

    from simtopup.orders.models import Order

logger = logging.getLogger(__name__)

# The task queue webhook deliveries run on: the worker serves it in a lane of its own.
WEBHOOK_QUEUE = "webhooks"
# At most this much of a receiver's answer is read (its status line and headers included).
MAX_RESPONSE_BYTES = 64 * 1024

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


# --- where a webhook may go ------------------------------------------------------------------


class UrlRefused(Exception):
    """A URL the policy refuses: ``str()`` says why for the delivery log, ``message`` says
    it to the person setting the URL (translated)."""

    def __init__(self, detail: str, message: _StrOrPromise) -> None:
        super().__init__(detail)
        self.message = message


def is_public_address(ip: IPAddress) -> bool:
    """A public unicast address: globally reachable by IANA's special-purpose registries (as
    Python's ``is_global`` reads them: not loopback, private, shared, link-local,
    documentation, benchmarking, reserved …), and not multicast. IPv6 addresses that carry
    an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::a.b.c.d``) are judged by
    the IPv4 address they carry; deprecated site-local ``fec0::/10`` is not public."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_public_address(ip.ipv4_mapped)
        if ip in _NAT64:
            return is_public_address(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.is_site_local:
            return False
    return ip.is_global and not ip.is_multicast and not ip.is_reserved


def allowed_address(ip: IPAddress) -> bool:
    """Where a webhook may connect: a public address; with ``WEBHOOK_ALLOW_PRIVATE`` (a test
    installation) also private and loopback ones — never multicast or unspecified."""
    if is_public_address(ip):
        return True
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    unusable = any(a.is_multicast or a.is_unspecified for a in (ip, mapped) if a is not None)
    return bool(settings.WEBHOOK_ALLOW_PRIVATE) and not unusable


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to, in the resolver's order (one lookup)."""
    found: list[IPAddress] = []
    for family, _type, _proto, _name, sockaddr in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    ):
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in found:
            found.append(ip)
    return found


@dataclass(frozen=True)
class Target:
    """A webhook URL taken apart for a request."""

    scheme: str
    host: str  # ASCII (IDNA) host name, or an IP address without brackets
    port: int
    target: str  # the request target: path and query
    literal: IPAddress | None  # the host, when it is an IP address

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


_SHAPE = _("Enter a complete address such as https://example.com/hooks.")


def parse(url: str) -> Target:
    """Take ``url`` apart; raises ``UrlRefused`` unless it is an https URL (or http with
    ``WEBHOOK_ALLOW_PRIVATE``) with a host and no user name or password. No DNS here."""
    if not url:
        raise UrlRefused("no webhook URL", _SHAPE)
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise UrlRefused("the URL contains spaces or control characters", _SHAPE)
    try:
        parts = urlsplit(url)
        port = parts.port
        hostname = parts.hostname
    except ValueError:
        raise UrlRefused("not a URL", _SHAPE) from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not hostname:
        raise UrlRefused("not an http(s) URL with a host", _SHAPE)
    if scheme == "http" and not settings.WEBHOOK_ALLOW_PRIVATE:
        raise UrlRefused("plain http", _("Use an https:// address: plain http is not accepted."))
    if parts.username is not None or parts.password is not None:
        raise UrlRefused(
            "user name or password in the URL",
            _("The address must not contain a user name or password."),
        )
    try:
        literal: IPAddress | None = ipaddress.ip_address(hostname)
    except ValueError:
        literal = None
    if literal is None:
        try:
            host = hostname.encode("idna").decode("ascii")
        except UnicodeError:
            raise UrlRefused("the host name is not valid", _SHAPE) from None
    else:
        host = str(literal)
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    query = quote(parts.query, safe="/?%:@!$&'()*+,;=-._~")
    return Target(
        scheme=scheme,
        host=host,
        port=port or (443 if scheme == "https" else 80),
        target=path + (f"?{query}" if query else ""),
        literal=literal,
    )


def vet(target: Target, deadline: float) -> list[IPAddress]:
    """The addresses to connect to for ``target``: its IP address, or what its host name
    resolves to (looked up once, by ``deadline``). Raises ``UrlRefused`` when the name does
    not resolve or any address is not allowed."""
    if target.literal is not None:
        addresses = [target.literal]
    else:
        try:
            addresses = _resolve_by(target.host, target.port, deadline)
        except (OSError, UnicodeError) as exc:
            raise UrlRefused(
                f"{target.host} does not resolve ({exc})",
                _("%(host)s could not be found: check the address.") % {"host": target.host},
            ) from None
        if not addresses:
            raise UrlRefused(
                f"{target.host} has no address",
                _("%(host)s could not be found: check the address.") % {"host": target.host},
            )
    for ip in addresses:
        if not allowed_address(ip):
            raise UrlRefused(
                f"{ip} is not a public address"
                if target.literal is not None
                else f"{target.host} resolves to {ip}, which is not a public address",
                _(
                    "%(host)s leads to %(address)s, a private, local or reserved address: "
                    "webhooks go to public addresses only."
                )
                % {"host": target.host, "address": ip},
            )
    return addresses


def check_url(url: str) -> None:
    """Raise ``UrlRefused`` unless a webhook may be sent to ``url`` (looked up now)."""
    vet(parse(url), time.monotonic() + settings.WEBHOOK_TIMEOUT_SECONDS)


def _resolve_by(host: str, port: int, deadline: float) -> list[IPAddress]:
    """``resolve()`` that gives up at ``deadline`` (the system resolver has no timeout of its
    own to ask for; a lookup still running is left to finish in its daemon thread)."""
    outcome: list[Any] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            outcome.append(resolve(host, port))
        except BaseException as exc:  # handed to the waiting thread
            outcome.append(exc)
        done.set()

    threading.Thread(target=lookup, name="webhook-dns", daemon=True).start()
    if not done.wait(max(0.0, deadline - time.monotonic())):
        raise TimeoutError("the DNS lookup timed out")
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    result: list[IPAddress] = outcome[0]
    return result


# --- one HTTP request, all of it within a deadline ----------------------------------------------


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    return left


def tls_context() -> ssl.SSLContext:
    """Certificates checked against the system's trust store, for the URL's host name."""
    return ssl.create_default_context()


def _connect(target: Target, addresses: list[IPAddress], deadline: float) -> socket.socket:
    """A connection to the first of the vetted ``addresses`` that answers (TLS for https)."""
    error: OSError = OSError("no address to connect to")
    for ip in addresses:
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(_left(deadline))
            sock.connect((str(ip), target.port))
            if target.scheme == "https":
                # The handshake, SNI and the certificate check are for the host name; the
                # timeout bounds the whole handshake (CPython keeps one deadline for it).
                sock.settimeout(_left(deadline))
                sock = tls_context().wrap_socket(sock, server_hostname=target.host)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock
    raise error


class _DeadlineReader(io.RawIOBase):
    """A socket's input that ends at ``deadline`` (each read waits only for what is left)
    and after ``limit`` bytes."""

    def __init__(self, sock: socket.socket, deadline: float, limit: int) -> None:
        self.sock, self.deadline, self.left = sock, deadline, limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.left <= 0:
            return 0
        self.sock.settimeout(_left(self.deadline))
        view = memoryview(buffer)[: self.left]
        count = self.sock.recv_into(view)
        self.left -= count
        return count


class _DeadlineSocket:
    """What ``http.client.HTTPResponse`` needs of a socket: its input, read by deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock, self.deadline = sock, deadline

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self.sock, self.deadline, MAX_RESPONSE_BYTES))


def signed_target(url: str) -> str:
    """PATH of a webhook's v2 signature: the request target :func:`post` sends to ``url``
    (path and query, as :func:`parse` writes them)."""
    try:
        return parse(url).target
    except UrlRefused:
        return "/"  # post() refuses the URL: nothing signed with it is sent


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST ``body`` to ``url`` and return the answer's HTTP status — the policy checked on
    the addresses used, no redirect followed, everything within ``timeout`` seconds. Raises
    ``UrlRefused``, ``OSError`` (``TimeoutError`` past the deadline) or
    ``http.client.HTTPException``."""
    deadline = time.monotonic() + timeout
    target = parse(url)
    addresses = vet(target, deadline)
    sock = _connect(target, addresses, deadline)
    try:
        lines = [
            f"POST {target.target} HTTP/1.1",
            f"Host: {target.host_header}",
            *(f"{name}: {value}" for name, value in headers.items()),
            f"Content-Length: {len(body)}",
            "Connection: close",
        ]
        sock.settimeout(_left(deadline))
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        response = http.client.HTTPResponse(_DeadlineSocket(sock, deadline), method="POST")  # type: ignore[arg-type]
        try:
            response.begin()
            # The rest of the answer, up to the byte limit, in time; cut short (by the
            # receiver, or at the limit), the status stands.
            with contextlib.suppress(http.client.IncompleteRead):
                response.read()
        finally:
            response.close()
        return response.status
    finally:
        sock.close()


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"timed out (the limit is {timeout:g} s)"
    if isinstance(exc, http.client.HTTPException):
        return f"bad HTTP answer: {exc.__class__.__name__}"
    return (str(exc) or exc.__class__.__name__)[:300]


# --- queueing and delivering ----------------------------------------------------------------------


def queue_event(order: Order, event: str) -> None:
    """Queue ``event`` about ``order`` in the caller's transaction (once per event and order)."""
    from simtopup.resellers.tasks import deliver_webhook_task

    if order.reseller_id is None:
        return
    reseller = Reseller.objects.select_related("float_account").get(pk=order.reseller_id)
    if not reseller.webhook_url:
        return
    now = timezone.now()
    payload = {
        "type": event,
        "created_at": now.isoformat().replace("+00:00", "Z"),
        "data": topup_body(order, reseller),
    }
    # Once per event and order, whoever queues it: a conflicting insert is ignored.
    WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                reseller=reseller,
                event=event,
                dedupe_key=f"{event}:order:{order.pk}",
                payload=payload,
                next_attempt_at=now,
                request_id=requestid.current(),
            )
        ],
        ignore_conflicts=True,
    )
    delivery_id = WebhookDelivery.objects.values_list("pk", flat=True).get(
        dedupe_key=f"{event}:order:{order.pk}"
    )
    deliver_webhook_task.enqueue(delivery_id)


# Alert events (usage/alerts.py): a bundle crossed a threshold (``data.threshold``: used_80,
# used_100, expires_3d, expires_1d), ended, or a pay-per-use card's credit ran low.
ALERT_EVENTS = ("bundle.threshold", "bundle.expired", "credit.low")


def queue_alert_event(reseller_id: int, event: str, subject: str, data: dict[str, Any]) -> None:
    """Queue an alert ``event`` for the reseller in the caller's transaction, once per event
    and ``subject`` (``alert:<id>``)."""
    from simtopup.resellers.tasks import deliver_webhook_task

    assert event in ALERT_EVENTS, event
    reseller = Reseller.objects.filter(pk=reseller_id).first()
    if reseller is None or not reseller.webhook_url:
        return
    now = timezone.now()
    key = f"{event}:{subject}"
    payload = {"type": event, "created_at": now.isoformat().replace("+00:00", "Z"), "data": data}
    WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                reseller=reseller,
                event=event,
                dedupe_key=key,
                payload=payload,
                next_attempt_at=now,
                request_id=requestid.current(),
            )
        ],
        ignore_conflicts=True,
    )
    delivery_id = WebhookDelivery.objects.values_list("pk", flat=True).get(dedupe_key=key)
    deliver_webhook_task.enqueue(delivery_id)


def deliver(delivery_id: int) -> str:
    """Try one delivery now if it is due; schedule the next try on failure."""
    now = timezone.now()
    timeout = settings.WEBHOOK_TIMEOUT_SECONDS
    # Longer than an attempt can take (its deadline): no second worker takes it meanwhile.
    hold = now + timedelta(seconds=timeout * 2 + 5)
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=now
    ).update(next_attempt_at=hold, attempts=F("attempts") + 1, last_attempt_at=now)
    if not claimed:
        return "not_due"
    delivery = WebhookDelivery.objects.select_related("reseller").get(pk=delivery_id)
    reseller = delivery.reseller
    body = json.dumps(delivery.payload, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "simtopup-webhooks/1",
        # v2 over POST and the target post() sends; v1 too, for one release (docs/api.md).
        HEADER: sign(
            reseller.webhook_secret, "POST", signed_target(reseller.webhook_url), body, with_v1=True
        ),
        "X-Simtopup-Event": delivery.event,
        "X-Simtopup-Delivery": str(delivery.pk),
    }
    if delivery.request_id:  # the request that caused the event (core/requestid.py)
        headers["X-Request-Id"] = delivery.request_id
    try:
        status = post(reseller.webhook_url, body, headers, timeout)
    except UrlRefused as exc:
        ok, error = False, f"refused: {exc}"[:300]
        logger.warning("webhook %s to reseller %s refused: %s", delivery.pk, reseller.pk, exc)
    except (OSError, http.client.HTTPException) as exc:
        ok, error = False, _describe(exc, timeout)
    else:
        ok = 200 <= status < 300
        if ok:
            error = ""
        elif 300 <= status < 400:
            error = f"HTTP {status} (redirects are not followed)"
        else:
            error = f"HTTP {status}"
    if ok:
        WebhookDelivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.PENDING).update(
            status=DeliveryStatus.DELIVERED, delivered_at=timezone.now(), last_error=""
        )
        return "delivered"
    backoff = settings.WEBHOOK_BACKOFF
    if delivery.attempts > len(backoff):
        WebhookDelivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.PENDING).update(
            status=DeliveryStatus.FAILED, last_error=error
        )
        logger.error("webhook %s to reseller %s gave up: %s", delivery.pk, reseller.pk, error)
        return "failed"
    delay = timedelta(seconds=backoff[delivery.attempts - 1])
    WebhookDelivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.PENDING).update(
        next_attempt_at=timezone.now() + delay, last_error=error
    )
    return "retry"


def deliver_due(limit: int = 200) -> int:
    """Deliveries whose time has come (retries; their tasks may be long gone). The worker's
    webhook lane runs this, never its main loop: each claim is a compare-and-swap, so the
    lane's threads can run it side by side."""
    ids = list(
        WebhookDelivery.objects.filter(
            status=DeliveryStatus.PENDING, next_attempt_at__lte=timezone.now()
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    return sum(1 for pk in ids if deliver(pk) == "delivered")
