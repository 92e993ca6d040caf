from django.tasks import task

from simtopup.resellers.webhooks import WEBHOOK_QUEUE, deliver


# On a queue of its own: the worker serves it in its webhook lane, so that a slow receiver
# never holds up payments or fulfilment.
@task(queue_name=WEBHOOK_QUEUE)
def deliver_webhook_task(delivery_id: int) -> str:
    return deliver(delivery_id)
