from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "simtopup.payments"
    label = "payments"
    verbose_name = "Payments"

    def ready(self) -> None:
        from simtopup.ledger.audit import CLEARING_EXPECTATIONS, EXTRA_CHECKS
        from simtopup.payments.actions import gateway_clearing_expected, payment_consistency

        CLEARING_EXPECTATIONS.append(gateway_clearing_expected)
        EXTRA_CHECKS.append(payment_consistency)
