"""Background tasks of the usage domain."""

from django.tasks import task

from simtopup.usage import autotopup


@task()
def auto_topup_task(device_id: int) -> str:
    return autotopup.run(device_id)
