"""`simtopup serve`: migrate, then run the web server and the worker until Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand

from simtopup.settings import envint


class Command(BaseCommand):
    help = "Migrate the database, then serve website + API (granian) and the background worker."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=os.environ.get("SIMTOPUP_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=envint("PORT", 8000))
        parser.add_argument(
            "--workers",
            type=int,
            default=envint("WEB_WORKERS", os.cpu_count() or 2),
            help="web processes (default: one per CPU core)",
        )
        parser.add_argument(
            "--threads",
            type=int,
            default=envint("WEB_THREADS", 2),
            help="threads running requests in each web process",
        )
        parser.add_argument(
            "--no-worker", action="store_true", help="do not start the background worker"
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "simtopup.settings"}
        if not os.environ.get("SIMTOPUP_SITE_URL"):
            # Links in receipts and payment pages, and the sandbox gateway's webhooks, point
            # at where this server really listens unless the public URL is configured.
            wildcard = opts["host"] in ("0.0.0.0", "::")  # noqa: S104  (reached via loopback)
            host = "127.0.0.1" if wildcard else opts["host"]
            host = f"[{host}]" if ":" in host else host
            env["SIMTOPUP_SITE_URL"] = f"http://{host}:{opts['port']}"
        # granian: HTTP in Rust, the Django app in each worker process's Python threads.
        web = [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            "wsgi",
            "--host",
            opts["host"],
            "--port",
            str(opts["port"]),
            "--workers",
            str(opts["workers"]),
            "--blocking-threads",
            str(opts["threads"]),
            "--no-ws",
            "--access-log",
            "--workers-kill-timeout",
            "10",
            "simtopup.wsgi:application",
        ]
        children = [subprocess.Popen(web, env=env)]
        if not opts["no_worker"]:
            children.append(
                subprocess.Popen([sys.executable, "-m", "simtopup.cli", "worker"], env=env)
            )
        self.stdout.write(
            f"simtopup serving on http://{opts['host']}:{opts['port']}/ (Ctrl-C stops everything)"
        )
        stopping = False

        def stop(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping and all(c.poll() is None for c in children):
                time.sleep(0.2)
        finally:
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 15
            for child in children:
                try:
                    child.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
        failed = [
            c.returncode
            for c in children
            if c.returncode not in (0, -signal.SIGTERM, -signal.SIGINT)
        ]
        if failed and not stopping:
            raise SystemExit(1)
