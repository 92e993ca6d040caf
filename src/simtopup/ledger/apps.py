from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


def _system_accounts(sender: AppConfig, using: str = "default", **kwargs: Any) -> None:
    from django.conf import settings
    from django.db import connections

    from simtopup.ledger.actions import ensure_system_accounts
    from simtopup.ledger.models import BYTES

    if using != "default" or "ledger_account" not in connections[using].introspection.table_names():
        return
    ensure_system_accounts([settings.CURRENCY, BYTES])


class LedgerConfig(AppConfig):
    name = "simtopup.ledger"
    label = "ledger"
    verbose_name = _("Ledger")

    def ready(self) -> None:
        post_migrate.connect(
            _system_accounts, sender=self, dispatch_uid="simtopup.ledger.system_accounts"
        )
