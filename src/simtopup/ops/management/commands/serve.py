"""`simtopup serve`: migrate, then run and supervise the web server and the worker until
Ctrl-C / SIGINT / SIGTERM.

Nothing but a stop request ends it. granian replaces a web worker process that dies
(``--respawn-failed-workers``); serve restarts granian itself, or the background worker,
when either exits — after 1 s, doubling up to 30 s while it keeps failing, back to 1 s once
it had run for a minute — and logs each restart at WARNING with the exit code or signal.
Each child runs in its own process group (a Ctrl-C at the terminal reaches serve only;
serve decides) and gets SIGTERM should serve itself die.

On Ctrl-C / SIGINT / SIGTERM it sends SIGTERM to both and waits for them up to
``SIMTOPUP_SHUTDOWN_GRACE_SECONDS`` (granian lets its workers finish their requests, the
worker its task), then kills what is left — a second Ctrl-C kills at once — and exits 0.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection

from simtopup.ops.checks import installation_notes, refuse_unsafe_start
from simtopup.ops.management.commands.worker import (
    DB_LOST,
    describe,
    drop_connections,
    retry_delay,
)
from simtopup.settings import envint

logger = logging.getLogger("simtopup.serve")

RESTART_FIRST_SECONDS = 1.0
RESTART_MAX_SECONDS = 30.0
# A child that ran this long before it died is restarted after RESTART_FIRST_SECONDS again.
STABLE_SECONDS = 60.0
# Leftovers of a dead child's process group (web workers of a killed granian) get this long
# after SIGTERM before SIGKILL.
LEFTOVER_GRACE_SECONDS = 3.0
PR_SET_PDEATHSIG = 1


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of the process group ``pgid`` (Linux /proc)."""
    members = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(proc.name))
    return members


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec function: the child gets SIGTERM when serve dies (Linux), so a SIGKILLed
    serve leaves no web server or worker behind."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # serve died before prctl took effect
            os._exit(1)

    return preexec


class Child:
    """One supervised child process (granian's main process, or the worker)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.failures = 0
        self.restart_at = 0.0

    def start(self) -> None:
        self.process = subprocess.Popen(  # preexec_fn only calls prctl (serve is single-threaded)
            self.argv, env=self.env, process_group=0, preexec_fn=_die_with_parent()
        )
        self.started = time.monotonic()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check(self) -> None:
        """Restart when due; notice (and schedule the restart of) a dead process."""
        now = time.monotonic()
        if self.process is None:
            if now >= self.restart_at:
                try:
                    self.start()
                except OSError as exc:  # no process could be made (out of memory, pids)
                    self.restart_at = now + RESTART_MAX_SECONDS
                    logger.warning("serve: cannot start the %s (%s); trying again", self.name, exc)
                    return
                assert self.process is not None
                logger.warning(
                    "serve: the %s is running again (pid %s)", self.name, self.process.pid
                )
            return
        code = self.process.poll()
        if code is None:
            return
        pid = self.process.pid
        self.process = None
        self.kill_leftovers(pid)
        if now - self.started >= STABLE_SECONDS:
            self.failures = 0
        delay = min(RESTART_MAX_SECONDS, RESTART_FIRST_SECONDS * 2 ** min(self.failures, 16))
        self.failures += 1
        self.restart_at = time.monotonic() + delay
        logger.warning(
            "serve: the %s, pid %s, %s; restarting it in %.0f s",
            self.name,
            pid,
            describe_exit(code),
            delay,
        )

    def kill_leftovers(self, pgid: int, grace: float = LEFTOVER_GRACE_SECONDS) -> None:
        """What is left of a dead child's process group (granian's web workers when granian
        itself was killed): SIGTERM, then SIGKILL after ``grace``."""
        if not group_members(pgid):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if group_members(pgid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)

    def terminate(self) -> None:
        if self.alive:
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the child and everything in its process group; reap it."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)


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
        # With DEBUG off, an unsafe configuration (the sandbox gateway in production, a
        # development secret, http with secure cookies) stops serve here (ops/checks.py).
        refuse_unsafe_start("serve")
        try:
            self.migrate()
        except KeyboardInterrupt:
            raise SystemExit(130) from None
        drop_connections()  # serve itself needs no database from here on
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "simtopup.settings"}
        if not os.environ.get("SIMTOPUP_SITE_URL"):
            # Links in receipts and payment pages, and the sandbox gateway's webhooks, point
            # at where this server really listens unless the public URL is configured.
            wildcard = opts["host"] in ("0.0.0.0", "::")  # noqa: S104  (reached via loopback)
            host = "127.0.0.1" if wildcard else opts["host"]
            host = f"[{host}]" if ":" in host else host
            env["SIMTOPUP_SITE_URL"] = f"http://{host}:{opts['port']}"
        grace = max(1, settings.SHUTDOWN_GRACE_SECONDS)
        # granian: HTTP in Rust, the Django app in each worker process's Python threads. It
        # replaces a worker that dies; it gives its workers part of our grace period to
        # finish their requests when stopped, so that it is itself done within the rest.
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
            "--respawn-failed-workers",
            "--workers-kill-timeout",
            str(min(1800, max(1, grace * 2 // 3))),
            "simtopup.wsgi:application",
        ]
        children = [Child("web server (granian)", web, env)]
        if not opts["no_worker"]:
            worker = [sys.executable, "-m", "simtopup.cli", "worker"]
            children.append(Child("background worker", worker, env))

        self.stops = 0

        def stop(signum: int, frame: FrameType | None) -> None:
            self.stops += 1
            if self.stops > 1:
                logger.warning("serve: %s again, killing everything", signal.strsignal(signum))

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        for child in children:
            child.start()
        self.stdout.write(
            f"simtopup serving on http://{opts['host']}:{opts['port']}/ (Ctrl-C stops everything)"
        )
        for note in installation_notes():
            self.stdout.write(f"  {note}")
        self.stdout.flush()
        try:
            while not self.stops:
                for child in children:
                    child.check()
                time.sleep(0.2)
        finally:
            forced = self.shutdown(children, grace)
        if forced:
            raise SystemExit(1)

    def migrate(self) -> None:
        """Apply migrations; a database not reachable yet is waited for (with backoff)."""
        failures = 0
        while True:
            try:
                call_command("migrate", interactive=False, verbosity=0)
            except DB_LOST as exc:
                if connection.vendor == "sqlite":  # a file: nothing to wait for
                    raise
                if not failures:
                    logger.warning(
                        "serve: database unavailable (%s); waiting for it (Ctrl-C stops)",
                        describe(exc),
                    )
                drop_connections()
                time.sleep(retry_delay(failures))
                failures += 1
                continue
            if failures:
                logger.info("serve: database reachable, migrated")
            return

    def shutdown(self, children: list[Child], grace: float) -> bool:
        """SIGTERM to every child, up to ``grace`` seconds for them to finish, then SIGKILL.
        True when a second stop request cut it short."""
        running = [c for c in children if c.alive]
        if running:
            logger.info(
                "serve: stopping %s (up to %s s)", ", ".join(c.name for c in running), grace
            )
        for child in running:
            child.terminate()
        deadline = time.monotonic() + grace
        while any(c.alive for c in children) and time.monotonic() < deadline and self.stops < 2:
            time.sleep(0.1)
        for child in children:
            if child.alive:
                if self.stops < 2:
                    logger.warning(
                        "serve: the %s still runs after %s s; killing it", child.name, grace
                    )
                child.kill()
            if child.process is not None:
                child.kill_leftovers(child.process.pid, grace=0)
        return self.stops > 1
