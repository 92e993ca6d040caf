"""A fake HTTP service on loopback that a test runs in a thread (the wholesale providers'
fakes: tests/fake_upstream.py for Airalo, tests/fake_esimgo.py for eSIM Go), with the
"hold" switch those fakes share: requests wait until the test releases them, or until
``hold_timeout``, so a test can act while a call is in flight (a timeout, a killed worker)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self


class LoopbackService:
    def __init__(
        self, handler: type[BaseHTTPRequestHandler], *, name: str, hold_timeout: float
    ) -> None:
        self.hold_timeout = hold_timeout
        self.arrived = threading.Event()  # a held request has arrived
        self._lock = threading.Lock()
        self._holding = False
        self._released = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=name, daemon=True)

    @property
    def origin(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def release(self) -> None:
        """Let held requests go on (and answer new ones at once)."""
        with self._lock:
            self._holding = False
            self._released.set()

    def start(self) -> Self:
        self._thread.start()
        return self

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
