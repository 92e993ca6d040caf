from django.apps import AppConfig


class LedgerConfig(AppConfig):
    name = "simtopup.ledger"
    label = "ledger"
    verbose_name = "Ledger"
