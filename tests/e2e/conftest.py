"""Browser tests: Playwright for Python driving Debian's Chromium against a live server.

Fixtures:
- ``site``: the live server's base URL, with demo-like data ready (plans, devices) and the
  sandbox gateway delivering its webhooks straight to our handler, worked off by a
  background ``worker`` thread — the same code paths as ``make run``, without HTTP hops
  between our own processes.
- ``phone`` / ``desktop``: a fresh browser page, 390×844 (touch) or 1280×800, in a language:
  ``phone("zh-hans")``.
- ``shot(page, name)``: saves a full-page screenshot to ``test-artifacts/screenshots/`` (look
  at them: broken layout or untranslated text is a bug even when the test passes).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from tests.system_deps import need_tools

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
LOCALES = {"zh-hans": "zh-CN", "zh-hant": "zh-TW", "en": "en-US"}
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    need_tools("chromium")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; Django would then refuse
    # database access from the test itself. The test is synchronous code all the same.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS
            )
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class Worker(threading.Thread):
    """The background worker, in a thread: runs ready tasks until stopped."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stopping = threading.Event()

    def run(self) -> None:
        from django_tasks_db.management.commands.db_worker import Worker as DBWorker
        from django_tasks_db.models import DBTaskResult

        worker = DBWorker(
            queue_names=["*"],
            interval=0,
            batch=True,
            backend_name="default",
            startup_delay=False,
            max_tasks=None,
            worker_id="e2e-worker",
            excluded_queue_names=[],
        )
        try:
            while not self.stopping.is_set():
                ready = list(DBTaskResult.objects.ready()[:20])
                for task in ready:
                    task.claim("e2e-worker")
                    worker.run_task(task)
                if not ready:
                    time.sleep(0.1)
        finally:
            connection.close()


@pytest.fixture
def site(live_server: Any, settings: Any, transactional_db: None) -> Iterator[str]:
    from tests.support import Actors

    settings.PAYMENT_PROVIDER = "sandbox"
    settings.PAYMENT_ROUTES = {}
    settings.SANDBOX_WEBHOOK_DELIVERY = "direct"
    settings.SITE_URL = live_server.url
    settings.SMS_SENDER = "memory"
    settings.EMAIL_SENDER = "memory"
    settings.LOGIN_CODE_IDENTITY_LIMITS = ["1000/60"]
    settings.LOGIN_CODE_IP_LIMITS = ["1000/60"]
    Actors()  # plans day-1g / month-20g / credit-50, devices, resellers alice and bob
    worker = Worker()
    worker.start()
    yield live_server.url
    worker.stopping.set()
    worker.join(timeout=10)


def _page(chromium: Any, viewport: dict[str, int], language: str, mobile: bool) -> Any:
    context = chromium.new_context(
        viewport=viewport,
        locale=LOCALES[language],
        extra_http_headers={"Accept-Language": language},
        is_mobile=mobile,
        has_touch=mobile,
        accept_downloads=True,
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    return page


@pytest.fixture
def phone(chromium: Any) -> Iterator[Callable[[str], Any]]:
    pages: list[Any] = []

    def make(language: str = "zh-hans") -> Any:
        page = _page(chromium, {"width": 390, "height": 844}, language, mobile=True)
        pages.append(page)
        return page

    yield make
    for page in pages:
        page.context.close()


@pytest.fixture
def desktop(chromium: Any) -> Iterator[Callable[[str], Any]]:
    pages: list[Any] = []

    def make(language: str = "en") -> Any:
        page = _page(chromium, {"width": 1280, "height": 800}, language, mobile=False)
        pages.append(page)
        return page

    yield make
    for page in pages:
        page.context.close()


def shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
