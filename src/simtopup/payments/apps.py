from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "simtopup.payments"
    label = "payments"
    verbose_name = "Payments"
