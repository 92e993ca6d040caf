from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


def _install_task_bell(sender: AppConfig, using: str = "default", **kwargs: Any) -> None:
    from django.db import connections

    from simtopup.ops.bell import install

    install(connections[using])


class OpsConfig(AppConfig):
    name = "simtopup.ops"
    label = "ops"
    verbose_name = _("Operations")

    def ready(self) -> None:
        from django.apps import apps

        from simtopup.ops import checks  # noqa: F401  (registers the deployment checks)

        # Sent for apps with models only (ops has none): hang it on the queue's own app.
        post_migrate.connect(
            _install_task_bell,
            sender=apps.get_app_config("django_tasks_database"),
            dispatch_uid="simtopup.ops.task_bell",
        )
