"""Background tasks of the payments domain (Django's tasks framework, database backend)."""

from typing import Any

from django.tasks import task

from simtopup.payments.actions import execute_refund


@task()
def refund_task(refund_id: int) -> str:
    return execute_refund(refund_id)


@task()
def deliver_sandbox_event_task(payload: dict[str, Any], notify_url: str, attempt: int) -> str:
    """The sandbox gateway sending one of its webhooks (the gateway side, not ours)."""
    from simtopup.payments.providers.sandbox import deliver

    return deliver(payload, notify_url, attempt)
