from django.apps import AppConfig


class FinanceConfig(AppConfig):
    name = "simtopup.finance"
    label = "finance"
    verbose_name = "Finance"
