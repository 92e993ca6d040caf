from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _install_fast_topup(sender: AppConfig, using: str = "default", **kwargs: Any) -> None:
    from django.db import connections

    from simtopup.api.fast_topup import install

    install(connections[using])


class ApiConfig(AppConfig):
    name = "simtopup.api"
    label = "api"
    verbose_name = "API"

    def ready(self) -> None:
        # After every migrate, so the SQL always matches the code that calls it.
        post_migrate.connect(
            _install_fast_topup, sender=self, dispatch_uid="simtopup.api.fast_topup"
        )
