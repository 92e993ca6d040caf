from django.tasks import task

from simtopup.resellers.webhooks import deliver


@task()
def deliver_webhook_task(delivery_id: int) -> str:
    return deliver(delivery_id)
