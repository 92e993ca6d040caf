from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


def _install_fast_sale(sender: AppConfig, using: str = "default", **kwargs: Any) -> None:
    from django.db import connections

    from simtopup.resellers.fast_sale import install

    install(connections[using])


class ResellersConfig(AppConfig):
    name = "simtopup.resellers"
    label = "resellers"
    verbose_name = _("Resellers")

    def ready(self) -> None:
        # After every migrate, so the SQL of the one-statement sale (fast_sale.py) always
        # matches the code that calls it.
        post_migrate.connect(
            _install_fast_sale, sender=self, dispatch_uid="simtopup.resellers.fast_sale"
        )
        from simtopup.orders.models import Channel
        from simtopup.orders.payers import register_payer
        from simtopup.resellers.actions import RESELLER_PAYER

        # A reseller's sale is paid from its float, and orders, below resellers, asks it for
        # the refund of a failed top-up and to tell of a late fulfilment (orders/payers.py).
        register_payer((Channel.RESELLER,), RESELLER_PAYER)
