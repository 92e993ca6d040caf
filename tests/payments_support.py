"""Test helpers for orders and payments: customers with tokens, the worker's queue run
in-process, the sandbox gateway's hosted page, signed sandbox notifications."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from django.utils import timezone
from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult

from simtopup.accounts.models import Customer
from simtopup.accounts.tokens import issue_token
from simtopup.core.signing import sign_body
from simtopup.devices.models import Device
from simtopup.ledger.actions import Posting, post, system_account
from simtopup.ledger.audit import audit
from simtopup.ledger.models import Account
from simtopup.payments.providers.sandbox import SIGNATURE_HEADER, webhook_secret
from tests.support import post_json  # noqa: F401  (re-exported for tests)


@pytest.fixture
def sandbox_direct(settings: Any) -> None:
    """The sandbox's webhooks reach our handler in the worker process (no HTTP server)."""
    settings.PAYMENT_PROVIDER = "sandbox"
    settings.PAYMENT_ROUTES = {}
    settings.SANDBOX_WEBHOOK_DELIVERY = "direct"
    settings.SANDBOX_WEBHOOK_COPIES = 1
    settings.SANDBOX_OUT_OF_ORDER = False
    settings.SANDBOX_DECLINE_ALL = False
    settings.SANDBOX_WEBHOOK_DELAY_SECONDS = 0


def make_customer(phone: str) -> tuple[str, Customer]:
    customer = Customer.objects.create(phone=phone, language="en")
    token, _row = issue_token(customer, "test")
    return token, customer


def app(token: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def bind(device: Device, customer: Customer) -> None:
    Device.objects.filter(pk=device.pk).update(owner=customer, bound_at=timezone.now())
    device.refresh_from_db()


def give_credit(device: Device, amount: int, key: str) -> None:
    with transaction.atomic():
        post(
            [
                Posting(
                    system_account("adjustments", "CNY"),
                    device.credit_account,
                    amount,
                    "adjustment",
                    key,
                )
            ]
        )


def credit_of(device: Device) -> int:
    return Account.objects.values_list("balance", flat=True).get(pk=device.credit_account_id)


def run_tasks(max_rounds: int = 50) -> list[Any]:
    """Run every task that is ready, as the worker would, until none is left; a task that
    fails fails the test. Returns the tasks' return values in the order they ran."""
    worker = Worker(
        queue_names=["*"],
        interval=0,
        batch=True,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id="test-worker",
        excluded_queue_names=[],
    )
    results: list[Any] = []
    for _round in range(max_rounds):
        ready = list(DBTaskResult.objects.ready())
        if not ready:
            return results
        for task in ready:
            task.claim("test-worker")
            worker.run_task(task)
            task.refresh_from_db()
            assert task.status == "SUCCESSFUL", f"{task.task_path} failed:\n{task.traceback}"
            results.append(task.return_value)
    raise AssertionError("tasks keep coming")


def ready_task_paths() -> list[str]:
    return [t.task_path for t in DBTaskResult.objects.ready()]


CHECKOUT = re.compile(r"/sandbox/checkout/(sbx_[A-Za-z0-9_-]+)")


def checkout_path(checkout_url: str) -> str:
    match = CHECKOUT.search(checkout_url)
    assert match, checkout_url
    return match.group(0)


def pay_on_page(checkout_url: str, outcome: str = "succeed") -> Any:
    """Open the hosted page in a browser (CSRF enforced) and press Pay or Decline."""
    browser = Client(enforce_csrf_checks=True)
    path = checkout_path(checkout_url)
    page = browser.get(path)
    assert page.status_code == 200, page.content
    token = browser.cookies["csrftoken"].value
    return browser.post(path, {"outcome": outcome, "csrfmiddlewaretoken": token})


def sandbox_notification(
    data: dict[str, Any],
    *,
    kind: str = "payment.succeeded",
    event_id: str = "evt_test_1",
    secret: str | None = None,
    timestamp: int | None = None,
) -> tuple[dict[str, str], bytes]:
    body = json.dumps(
        {"id": event_id, "type": kind, "created": int(time.time()), "data": data},
        separators=(",", ":"),
    ).encode()
    return {SIGNATURE_HEADER: sign_body(secret or webhook_secret(), body, timestamp)}, body


def post_notification(client: Client, headers: dict[str, str], body: bytes) -> Any:
    return client.post(
        "/payments/webhooks/sandbox", data=body, content_type="application/json", headers=headers
    )


def assert_ledger_clean() -> None:
    problems = audit()
    assert problems == [], problems
