from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class OrdersConfig(AppConfig):
    name = "simtopup.orders"
    label = "orders"
    verbose_name = _("Orders")

    def ready(self) -> None:
        from simtopup.ledger.audit import CLEARING_EXPECTATIONS
        from simtopup.orders.actions import outstanding_clearing

        CLEARING_EXPECTATIONS.append(outstanding_clearing)
