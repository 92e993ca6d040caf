from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "simtopup.orders"
    label = "orders"
    verbose_name = "Orders"

    def ready(self) -> None:
        from simtopup.ledger.audit import CLEARING_EXPECTATIONS
        from simtopup.orders.actions import outstanding_clearing

        CLEARING_EXPECTATIONS.append(outstanding_clearing)
