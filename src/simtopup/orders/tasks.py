"""Background tasks of the orders domain (Django's tasks framework, database backend)."""

from django.tasks import task

from simtopup.core import requestid
from simtopup.orders.actions import fulfil_pending


@task()
def fulfil_order_task(order_id: int, request_id: str = "") -> str:
    """``request_id``: the request that queued it, if one did; the task runs as part of it."""
    with requestid.bound(request_id):
        return fulfil_pending(order_id)
