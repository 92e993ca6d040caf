from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PaymentsConfig(AppConfig):
    name = "simtopup.payments"
    label = "payments"
    verbose_name = _("Payments")

    def ready(self) -> None:
        from simtopup.ledger.audit import CLEARING_EXPECTATIONS, EXTRA_CHECKS
        from simtopup.orders.models import Channel
        from simtopup.orders.payers import register_payer
        from simtopup.orders.receipts import register_refund_lines
        from simtopup.payments.actions import (
            CUSTOMER_PAYER,
            gateway_clearing_expected,
            payment_consistency,
        )
        from simtopup.payments.customer_refunds import refund_lines

        CLEARING_EXPECTATIONS.append(gateway_clearing_expected)
        EXTRA_CHECKS.append(payment_consistency)
        # Customers' orders are paid through payments (the card's credit or a provider), and
        # orders, below payments, asks it for their refunds (orders/payers.py).
        register_payer((Channel.APP, Channel.WEB, Channel.AUTO), CUSTOMER_PAYER)
        # A receipt lists a fulfilled order's refunds (orders/receipts.py).
        register_refund_lines(refund_lines)
