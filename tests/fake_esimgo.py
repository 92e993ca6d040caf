"""A fake eSIM Go API v2.4: a small threaded HTTP server on 127.0.0.1.

What simtopup uses, in eSIM Go's published shapes: ``X-API-Key`` on every request (401
``{"message"}`` without it); ``GET /v2.4/catalogue?page&perPage`` → ``{"bundles": [{"name",
"description", "dataAmount" (MB), "duration" (days), "price", "unlimited", …}], "pageCount",
"pageSize", "rows"}``; ``POST /v2.4/orders`` with ``type`` ``validate`` (checks, charges
nothing: ``{"valid": true, "total", …}``) or ``transaction`` (``assign: true`` with the ICCID:
``{"orderReference", "status": "completed", "assigned": true, …}``), refusals as 400
``{"message"}``; ``GET /v2.4/esims/{iccid}/bundles/{name}`` → the assignments of that bundle
(``assignmentReference`` = the order reference + ``-0``, ``bundleState`` ``processing`` →
``queued`` → ``active``, ``initialQuantity`` / ``remainingQuantity`` in bytes);
``GET /v2.4/esims/{iccid}/bundles`` → every bundle on the card; 429 with ``Retry-After``.

No idempotency key, as at eSIM Go: each transaction is an order. It is made when the request
arrives, before the answer is sent (:meth:`hold` delays answers), so a caller that gives up
leaves an assignment behind. :meth:`callback_headers` signs a callback as eSIM Go's V3 does
(``X-Signature-SHA256``: base64 HMAC-SHA256 of the raw body with the API key).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.loopback import LoopbackService


@dataclass(frozen=True)
class Call:
    kind: str  # validate | transaction
    body: dict[str, Any]


def bundle(name: str, mb: int, days: int, price: float) -> dict[str, Any]:
    return {
        "name": name,
        "description": f"eSIM, {mb // 1000}GB, {days} Days, Global, V2",
        "groups": ["Standard Fixed"],
        "countries": [{"name": "Global", "region": "Global", "iso": "GL"}],
        "dataAmount": mb,
        "duration": days,
        "speed": ["4G", "5G"],
        "autostart": True,
        "unlimited": False,
        "roamingEnabled": [],
        "price": price,
        "billingType": "FixedCost",
    }


class FakeEsimGo(LoopbackService):
    def __init__(self, *, hold_timeout: float = 30.0, per_page: int = 2) -> None:
        self.api_key = secrets.token_hex(16)
        self.bundles = [
            bundle("esim_1GB_1D_GL_V2", 1000, 1, 2.9),
            bundle("esim_3GB_30D_GL_V2", 3000, 30, 6.5),
            bundle("esim_10GB_30D_GL_V2", 10000, 30, 16.0),
        ]
        self.per_page = per_page
        self.calls: list[Call] = []
        self.assignments: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self.orders: Counter[str] = Counter()  # transactions made per ICCID
        self.initial_state = "queued"
        self.fail_with: tuple[str, int, dict[str, Any]] | None = None  # (phase, status, body)
        self.throttle = 0
        self.retry_after = 2
        self.status_reads = 0
        self._hold_kinds: frozenset[str] = frozenset()
        super().__init__(self._handler_class(), name="fake-esimgo", hold_timeout=hold_timeout)

    @property
    def url(self) -> str:
        return f"{self.origin}/v2.4/"

    def configure(self, settings: Any, timeout: int = 10) -> None:
        settings.NETWORK_ADAPTER = "esimgo"
        settings.ESIMGO_URL = self.url
        settings.ESIMGO_API_KEY = self.api_key
        settings.UPSTREAM_TIMEOUT_SECONDS = timeout

    # --- behaviour ------------------------------------------------------------------------

    def hold(self, kinds: frozenset[str] = frozenset({"validate", "transaction"})) -> None:
        """Answer orders of these kinds only once :meth:`release` is called."""
        with self._lock:
            self._hold_kinds = kinds
            self._holding = True
            self._released.clear()
            self.arrived.clear()

    def kinds(self) -> list[str]:
        with self._lock:
            return [c.kind for c in self.calls]

    def settle(self, state: str = "queued") -> None:
        """Every assignment still processing is done (eSIM Go finished applying it)."""
        with self._lock:
            for per_bundle in self.assignments.values():
                for rows in per_bundle.values():
                    for row in rows:
                        if row["bundleState"] == "processing":
                            row["bundleState"] = state

    def use(self, iccid: str, used: int) -> None:
        with self._lock:
            for rows in self.assignments.get(iccid, {}).values():
                for row in rows:
                    take = min(used, row["remainingQuantity"])
                    row["remainingQuantity"] -= take
                    row["bundleState"] = "active" if row["remainingQuantity"] else "depleted"
                    used -= take

    def callback_headers(self, body: bytes, key: str | None = None) -> dict[str, str]:
        digest = hmac.new((key or self.api_key).encode(), body, hashlib.sha256).digest()
        return {"X-Signature-SHA256": base64.b64encode(digest).decode()}

    # --- the API --------------------------------------------------------------------------

    def _catalogue(self, query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        page = int(query.get("page") or 1)
        pages = max(1, -(-len(self.bundles) // self.per_page))
        rows = self.bundles[(page - 1) * self.per_page : page * self.per_page]
        body = {"bundles": rows, "pageCount": pages, "rows": len(self.bundles), "pageSize": 2}
        return 200, body, {}

    def _order(self, raw: bytes) -> tuple[int, Any, dict[str, str]]:
        try:
            body = json.loads(raw)
            kind = body["type"]
            [line] = body["order"]
            name, [iccid] = line["item"], line["iccids"]
        except (ValueError, KeyError, TypeError):
            return 400, {"message": "Invalid request body"}, {}
        with self._lock:
            self.calls.append(Call(kind, body))
            if self.throttle > 0:
                self.throttle -= 1
                return 429, {"message": "Too many requests"}, {"Retry-After": str(self.retry_after)}
            if self.fail_with is not None and self.fail_with[0] in (kind, "any"):
                return self.fail_with[1], self.fail_with[2], {}
            found = next((b for b in self.bundles if b["name"] == name), None)
            if found is None:
                return 400, {"message": f"Bundle {name} not found"}, {}
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            line_out = {
                "type": "bundle",
                "item": name,
                "iccids": [iccid],
                "quantity": 1,
                "subTotal": found["price"],
                "pricePerUnit": found["price"],
            }
            answer: dict[str, Any] = {
                "order": [line_out],
                "total": found["price"],
                "valid": True,
                "currency": "USD",
                "createdDate": now,
                "assigned": False,
            }
            if kind != "transaction":
                return 200, answer, {}
            reference = str(uuid.uuid4())
            size = int(found["dataAmount"]) * 1_000_000
            self.assignments.setdefault(iccid, {}).setdefault(name, []).append(
                {
                    "id": str(100000 + sum(self.orders.values())),
                    "callTypeGroup": "data",
                    "initialQuantity": size,
                    "remainingQuantity": size,
                    "assignmentDateTime": now,
                    "assignmentReference": f"{reference}-0",
                    "bundleState": self.initial_state,
                    "unlimited": False,
                }
            )
            self.orders[iccid] += 1
            answer.update(
                {
                    "assigned": True,
                    "status": "completed",
                    "statusMessage": "Order completed: 1 eSIMs assigned",
                    "orderReference": reference,
                }
            )
            return 200, answer, {}

    def _bundles(self, iccid: str, name: str | None) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.status_reads += 1
            per_bundle = self.assignments.get(iccid)
            if per_bundle is None:
                return 400, {"message": f"eSIM {iccid} not found"}, {}
            if name is not None:
                rows = [dict(r) for r in per_bundle.get(name, [])]
                if not rows:
                    return 404, {"message": "Bundle not found on eSIM"}, {}
                return 200, {"name": name, "assignments": rows}, {}
            listed = [
                {"name": n, "description": n, "assignments": [dict(r) for r in rows]}
                for n, rows in per_bundle.items()
            ]
            return 200, {"bundles": listed}, {}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _authorised(self) -> bool:
                if self.headers.get("X-API-Key") == fake.api_key:
                    return True
                self._send(401, {"message": "Unauthorized"}, {})
                return False

            def do_GET(self) -> None:
                if not self._authorised():
                    return
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                parts = [unquote(p) for p in url.path.split("/")]
                if url.path == "/v2.4/catalogue":
                    self._send(*fake._catalogue(query))
                elif parts[2:3] == ["esims"] and len(parts) == 5 and parts[4] == "bundles":
                    self._send(*fake._bundles(parts[3], None))
                elif parts[2:3] == ["esims"] and len(parts) == 6 and parts[4] == "bundles":
                    self._send(*fake._bundles(parts[3], parts[5]))
                else:
                    self._send(404, {"message": "Not found"}, {})

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not self._authorised():
                    return
                if urlsplit(self.path).path != "/v2.4/orders":
                    self._send(404, {"message": "Not found"}, {})
                    return
                answer = fake._order(raw)
                with fake._lock:
                    kind = fake.calls[-1].kind if fake.calls else ""
                    holding = fake._holding and kind in fake._hold_kinds
                fake.arrived.set()
                if holding:
                    fake._released.wait(fake.hold_timeout)
                self._send(*answer)

            def _send(self, status: int, body: Any, headers: dict[str, str]) -> None:
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
                    pass
                self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
