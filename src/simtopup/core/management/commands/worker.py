"""`simtopup worker`: run background tasks and the reconciler until SIGINT/SIGTERM."""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections
from django_tasks_db.management.commands.db_worker import Worker

from simtopup.core.janitor import run_janitor

logger = logging.getLogger("simtopup.worker")


class Command(BaseCommand):
    help = "Run the background worker: queued tasks (fulfilment, webhooks) and the periodic reconciler."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--once",
            action="store_true",
            help="Run the reconciler and all ready tasks once, then exit.",
        )
        parser.add_argument(
            "--poll", type=float, default=0.2, help="Seconds between queue polls when idle."
        )

    def handle(self, *args: Any, once: bool = False, poll: float = 0.2, **options: Any) -> None:
        self.running = True
        worker = Worker(
            queue_names=["*"],
            interval=0,
            batch=True,
            backend_name="default",
            startup_delay=False,
            max_tasks=None,
            worker_id=f"{socket.gethostname()}-{os.getpid()}"[:64],
            excluded_queue_names=[],
        )

        def stop(signum: int, frame: FrameType | None) -> None:
            logger.info("worker: %s received, finishing the current task", signal.strsignal(signum))
            self.running = False
            worker.running = False

        if not once:
            signal.signal(signal.SIGINT, stop)
            signal.signal(signal.SIGTERM, stop)
            logger.info("worker started (pid %s)", os.getpid())
        next_janitor = 0.0
        while self.running:
            close_old_connections()
            if time.monotonic() >= next_janitor:
                try:
                    run_janitor()
                except Exception:
                    logger.exception("reconciler pass failed; will retry")
                next_janitor = time.monotonic() + settings.RECONCILE_INTERVAL_SECONDS
            worker.running = self.running
            before = worker._run_tasks
            worker.run()
            if once:
                break
            if worker._run_tasks == before:
                time.sleep(poll)
        logger.info("worker stopped")
