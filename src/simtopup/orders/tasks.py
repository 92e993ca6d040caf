"""Background tasks of the orders domain (Django's tasks framework, database backend)."""

from django.tasks import task

from simtopup.orders.actions import fulfil_pending


@task()
def fulfil_order_task(order_id: int) -> str:
    return fulfil_pending(order_id)
