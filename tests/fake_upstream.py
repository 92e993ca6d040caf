"""A fake Airalo Partner API v2: a small threaded HTTP server on 127.0.0.1.

It follows Airalo's published requests and answers for what simtopup uses:
``POST /v2/token`` (form-encoded client credentials, ``airalo-signature``) →
``{"data": {"access_token", "token_type", "expires_in"}, "meta"}``; ``GET /v2/packages``
(``include=topup``, paginated: ``meta.current_page`` / ``last_page``), packages nested as
destination → operators → packages; ``POST /v2/orders/topups`` (JSON ``package_id``, ``iccid``,
``description``; Bearer token; ``airalo-signature`` = HMAC-SHA512 of the body as the SDK signs
it) → the top-up order; ``GET /v2/orders?filter[description]=…`` → the orders with that
description; ``GET /v2/sims/{iccid}/usage`` → ``remaining`` / ``total`` in MB. Refusals:
422 ``{"code", "reason"}`` (their business codes), 422 ``{"data": {field: message}}``, 401, 404,
429 with ``Retry-After`` (usage: more than 10 requests a minute for one ICCID).

Like Airalo it has **no idempotency key**: every accepted top-up request is a top-up. A top-up
is made when the request arrives, before the answer is sent, so a caller that dies or times
out while waiting leaves a top-up behind — the case the adapter's lookup by reference covers.
:attr:`granted` counts the top-ups per description: a correct caller keeps it at ≤ 1.

Tests can make it slow (:meth:`hold` … :meth:`release`), refuse (:attr:`fail_with`: status and
body for every top-up), or limit (:attr:`throttle`: this many next top-ups get 429 with
``Retry-After``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.loopback import LoopbackService

MB = 1024 * 1024


@dataclass(frozen=True)
class Call:
    key: str  # the top-up's description (our reference)
    body: dict[str, Any]


@dataclass
class SimUsage:
    total_mb: int = 0
    remaining_mb: int = 0
    status: str = "ACTIVE"
    reads: deque[float] = field(default_factory=deque)


def package(
    package_id: str, mb: int, days: int, net: float, price: float | None = None
) -> dict[str, Any]:
    """One top-up package in Airalo's shape."""
    return {
        "id": package_id,
        "type": "topup",
        "price": price if price is not None else round(net * 1.3, 2),
        "net_price": net,
        "amount": mb,
        "day": days,
        "is_unlimited": False,
        "title": f"{mb // 1024 if mb >= 1024 else mb} {'GB' if mb >= 1024 else 'MB'} - {days} Days",
        "data": f"{mb} MB",
        "short_info": None,
        "voice": None,
        "text": None,
    }


class FakeAiralo(LoopbackService):
    def __init__(self, *, hold_timeout: float = 30.0, per_page: int = 2) -> None:
        self.client_id = "fake-" + secrets.token_hex(6)  # fresh: the SDK caches tokens by it
        self.client_secret = secrets.token_hex(16)
        self.token = "tok-" + secrets.token_hex(8)
        self.packages: list[dict[str, Any]] = [
            package("fake-1gb-1d-topup", 1024, 1, 3.5),
            package("fake-3gb-30d-topup", 3072, 30, 7.25),
            package("fake-10gb-30d-topup", 10240, 30, 18.0),
        ]
        self.per_page = per_page
        self.calls: list[Call] = []
        self.topups: list[dict[str, Any]] = []
        self.granted: Counter[str] = Counter()
        self.fail_with: tuple[int, dict[str, Any]] | None = None
        self.throttle = 0  # the next N top-ups are answered 429
        self.retry_after = 2
        self.usage: dict[str, SimUsage] = defaultdict(SimUsage)
        self.usage_reads: Counter[str] = Counter()
        self.token_requests = 0
        self.lookups = 0
        super().__init__(self._handler_class(), name="fake-airalo", hold_timeout=hold_timeout)

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{self.origin}/v2/"

    def settings_env(self) -> dict[str, str]:
        """The SIMTOPUP_* variables that point simtopup at this server."""
        return {
            "SIMTOPUP_NETWORK_ADAPTER": "airalo",
            "SIMTOPUP_AIRALO_URL": self.url,
            "SIMTOPUP_AIRALO_CLIENT_ID": self.client_id,
            "SIMTOPUP_AIRALO_CLIENT_SECRET": self.client_secret,
        }

    def configure(self, settings: Any, timeout: int = 10) -> None:
        """Point the Django settings (pytest-django's fixture) at this server."""
        settings.NETWORK_ADAPTER = "airalo"
        settings.AIRALO_URL = self.url
        settings.AIRALO_CLIENT_ID = self.client_id
        settings.AIRALO_CLIENT_SECRET = self.client_secret
        settings.UPSTREAM_TIMEOUT_SECONDS = timeout

    # --- behaviour ------------------------------------------------------------------------

    def hold(self) -> None:
        """From now on, answer top-ups only once :meth:`release` is called."""
        with self._lock:
            self._holding = True
            self._released.clear()
            self.arrived.clear()

    def calls_for(self, key: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.key == key]

    def topup_for(self, key: str) -> dict[str, Any]:
        with self._lock:
            return next(t for t in self.topups if t["description"] == key)

    def sign(self, raw: bytes) -> str:
        """Airalo's signature of a body: HMAC-SHA512 of its compact JSON, slashes escaped."""
        text = json.dumps(json.loads(raw), separators=(",", ":"), ensure_ascii=False)
        text = text.replace("/", "\\/")
        return hmac.new(self.client_secret.encode(), text.encode(), hashlib.sha512).hexdigest()

    # --- the API --------------------------------------------------------------------------

    def _token(self, raw: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        with self._lock:
            self.token_requests += 1
        if (
            form.get("grant_type") != "client_credentials"
            or form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            return 401, {"data": [], "meta": {"message": "Unauthorized."}}, {}
        data = {"token_type": "Bearer", "expires_in": 31536000, "access_token": self.token}
        return 200, {"data": data, "meta": {"message": "success"}}, {}

    def _packages(self, query: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]]:
        page = int(query.get("page") or 1)
        last = max(1, -(-len(self.packages) // self.per_page))
        chunk = self.packages[(page - 1) * self.per_page : page * self.per_page]
        data = [
            {
                "slug": "discover-global",
                "country_code": "",
                "title": "Discover+",
                "image": None,
                "operators": [{"id": 1, "title": "Discover+", "type": "global", "packages": chunk}],
            }
        ]
        meta = {"message": "success", "current_page": page, "last_page": last, "total": 1}
        return 200, {"data": data if chunk else [], "meta": meta}, {}

    def _topup(self, raw: bytes, signature: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        try:
            body = json.loads(raw)
        except ValueError:
            return 422, {"data": {"body": "malformed"}, "meta": {"message": "invalid"}}, {}
        if not hmac.compare_digest(signature, self.sign(raw)):
            return 401, {"data": [], "meta": {"message": "Invalid signature."}}, {}
        key = str(body.get("description") or "")
        with self._lock:
            self.calls.append(Call(key, body))
            if self.throttle > 0:
                self.throttle -= 1
                retry = {"Retry-After": str(self.retry_after)}
                return 429, {"data": [], "meta": {"message": "Too Many Attempts."}}, retry
            if self.fail_with is not None:
                return self.fail_with[0], self.fail_with[1], {}
            found = next((p for p in self.packages if p["id"] == body.get("package_id")), None)
            if found is None:
                fields = {"package_id": "The selected package is invalid."}
                return 422, {"data": fields, "meta": {"message": "the parameter is invalid"}}, {}
            number = len(self.topups) + 1
            topup = {
                "id": 9000 + number,
                "code": f"20261204-{number:06d}",
                "package_id": found["id"],
                "currency": "USD",
                "quantity": 1,
                "type": "topup",
                "description": key,
                "esim_type": "Prepaid",
                "validity": found["day"],
                "package": found["title"],
                "data": found["data"],
                "price": found["price"],
                "net_price": found["net_price"],
                "created_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
                "iccid": body.get("iccid"),
            }
            self.topups.append(topup)
            self.granted[key] += 1
            sim = self.usage[str(body.get("iccid"))]
            sim.total_mb += found["amount"]
            sim.remaining_mb += found["amount"]
        return 200, {"data": topup, "meta": {"message": "success"}}, {}

    def _orders(self, query: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]]:
        wanted = query.get("filter[description]")
        with self._lock:
            self.lookups += 1
            rows = [t for t in self.topups if wanted is None or t["description"] == wanted]
        meta = {"message": "success", "current_page": 1, "last_page": 1, "total": len(rows)}
        return 200, {"data": rows, "links": {}, "meta": meta}, {}

    def _usage(self, iccid: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        now = time.monotonic()
        with self._lock:
            if iccid not in self.usage:
                return 404, {"data": [], "meta": {"message": "messages.resource_not_found"}}, {}
            sim = self.usage[iccid]
            while sim.reads and sim.reads[0] < now - 60:
                sim.reads.popleft()
            if len(sim.reads) >= 10:
                wait = str(int(60 - (now - sim.reads[0])) + 1)
                return (
                    429,
                    {"data": [], "meta": {"message": "Too Many Attempts."}},
                    {"Retry-After": wait},
                )
            sim.reads.append(now)
            self.usage_reads[iccid] += 1
            data = {
                "remaining": sim.remaining_mb,
                "total": sim.total_mb,
                "expired_at": None,
                "is_unlimited": False,
                "status": sim.status,
                "remaining_voice": 0,
                "remaining_text": 0,
                "total_voice": 0,
                "total_text": 0,
            }
        return 200, {"data": data, "meta": {"message": "success"}}, {}

    def use(self, iccid: str, mb: int) -> None:
        """The card used ``mb`` MB on Airalo's network."""
        with self._lock:
            sim = self.usage[iccid]
            sim.remaining_mb = max(sim.remaining_mb - mb, 0)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _authorised(self) -> bool:
                if self.headers.get("Authorization") == f"Bearer {fake.token}":
                    return True
                self._send(401, {"data": [], "meta": {"message": "Unauthenticated."}}, {})
                return False

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if not self._authorised():
                    return
                if url.path == "/v2/packages":
                    self._send(*fake._packages(query))
                elif url.path == "/v2/orders":
                    self._send(*fake._orders(query))
                elif url.path.startswith("/v2/sims/") and url.path.endswith("/usage"):
                    self._send(*fake._usage(url.path.split("/")[3]))
                else:
                    self._send(404, {"data": [], "meta": {"message": "not found"}}, {})

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = urlsplit(self.path).path
                if path == "/v2/token":
                    self._send(*fake._token(raw))
                    return
                if path != "/v2/orders/topups":
                    self._send(404, {"data": [], "meta": {"message": "not found"}}, {})
                    return
                if not self._authorised():
                    return
                answer = fake._topup(raw, self.headers.get("airalo-signature") or "")
                with fake._lock:
                    holding = fake._holding
                fake.arrived.set()
                if holding:
                    fake._released.wait(fake.hold_timeout)
                self._send(*answer)

            def _send(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the caller gave up while we were slow: the top-up stays made
                self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def link_plans(provider: str = "airalo", **plans: str) -> None:
    """Link our plans to the fake's packages (what sync-catalogue records), by plan code:
    ``link_plans(**{"day-1g": "fake-1gb-1d-topup"})``."""
    from django.utils import timezone

    from simtopup.catalog.models import Plan
    from simtopup.network.models import UpstreamPackage

    for code, package_id in plans.items():
        plan = Plan.objects.get(code=code)
        UpstreamPackage.objects.update_or_create(
            plan=plan,
            defaults={
                "provider": provider,
                "package_id": package_id,
                "net_price": 100,
                "currency": plan.currency,
                "data_bytes": plan.data_bytes,
                "validity_hours": plan.validity_hours,
                "synced_at": timezone.now(),
            },
        )


# The same for another process (``simtopup shell -c``), which cannot import the tests.
LINK_DAY_1G = (
    "from django.utils import timezone\n"
    "from simtopup.catalog.models import Plan\n"
    "from simtopup.network.models import UpstreamPackage\n"
    "plan = Plan.objects.get(code='day-1g')\n"
    "UpstreamPackage.objects.create(provider='airalo', package_id='fake-1gb-1d-topup',"
    " plan=plan, net_price=100, currency=plan.currency, data_bytes=plan.data_bytes,"
    " validity_hours=plan.validity_hours, synced_at=timezone.now())\n"
)
