"""A fake upstream wholesale eSIM API: a small threaded HTTP server on 127.0.0.1.

It speaks the protocol :class:`simtopup.network.adapters.UpstreamAdapter` expects
(``POST /orders`` → ``{"id", "starts_at", "expires_at", "data_bytes"}``) and honours
``Idempotency-Key`` as a real wholesale API does: the same key gets the same grant, and the
grant is made once, however often (or concurrently) the key is sent. A grant is made when the
request arrives, before the answer is sent — so a caller that dies while waiting for the
answer leaves a grant behind, the case an idempotent retry has to get right.

Tests can make it slow (:meth:`FakeUpstream.hold`: requests wait until :meth:`release`) or
failing (:attr:`FakeUpstream.fail_with`: every request is answered with that status).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class Call:
    key: str
    body: dict[str, Any]


class FakeUpstream:
    def __init__(self, *, hold_timeout: float = 30.0) -> None:
        self.calls: list[Call] = []
        self.grants: dict[str, dict[str, Any]] = {}
        self.granted: Counter[str] = Counter()  # how often each key made a grant: must be ≤ 1
        self.fail_with: int | None = None
        self.hold_timeout = hold_timeout  # held requests are answered after this at the latest
        self.arrived = threading.Event()  # set when a request arrives
        self._lock = threading.Lock()
        self._holding = False
        self._released = threading.Event()
        self._bodies: dict[str, bytes] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-upstream", daemon=True
        )

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeUpstream:
        self._thread.start()
        return self

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- behaviour ------------------------------------------------------------------------

    def hold(self) -> None:
        """From now on, answer requests only once :meth:`release` is called."""
        with self._lock:
            self._holding = True
            self._released.clear()
            self.arrived.clear()

    def release(self) -> None:
        with self._lock:
            self._holding = False
            self._released.set()

    def calls_for(self, key: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.key == key]

    # --- the API --------------------------------------------------------------------------

    def _answer(self, key: str, raw: bytes) -> tuple[int, dict[str, Any], bool]:
        """Record the call and make the grant (once per key). Returns (status, body, hold)."""
        try:
            body = json.loads(raw)
        except ValueError:
            return HTTPStatus.BAD_REQUEST, {"error": "malformed_json"}, False
        with self._lock:
            self.calls.append(Call(key, body))
            holding = self._holding
            if self.fail_with is not None:
                return self.fail_with, {"error": "unavailable"}, holding
            if not key:
                return HTTPStatus.BAD_REQUEST, {"error": "idempotency_key_required"}, holding
            if key in self._bodies and self._bodies[key] != raw:
                return HTTPStatus.UNPROCESSABLE_ENTITY, {"error": "key_reused"}, holding
            if key not in self.grants:
                now = datetime.now(UTC)
                self._bodies[key] = raw
                self.grants[key] = {
                    "id": f"up-{len(self.grants) + 1}",
                    "starts_at": now.isoformat(),
                    "expires_at": (now + timedelta(hours=int(body["validity_hours"]))).isoformat(),
                    "data_bytes": int(body["data_bytes"]),
                }
                self.granted[key] += 1
            return HTTPStatus.CREATED, self.grants[key], holding

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/orders":
                    self._send(HTTPStatus.NOT_FOUND, {"error": "not_found"})
                    return
                status, body, hold = upstream._answer(self.headers.get("Idempotency-Key", ""), raw)
                upstream.arrived.set()
                if hold:
                    upstream._released.wait(upstream.hold_timeout)
                self._send(status, body)

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the caller died while we were slow: its retry gets the same grant
                self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
