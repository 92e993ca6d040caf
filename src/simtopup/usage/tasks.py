"""Background tasks of the usage domain."""

from django.tasks import task

from simtopup.usage import alerts, autotopup


@task()
def auto_topup_task(device_id: int) -> str:
    return autotopup.run(device_id)


@task()
def deliver_alerts_task(keys: list[str]) -> dict[str, dict[str, str]]:
    """Deliver the alerts ``keys`` raised in a transaction that has committed."""
    return {key: alerts.deliver_alert(key) for key in keys}
