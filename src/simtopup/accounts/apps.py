from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "simtopup.accounts"
    label = "accounts"
    verbose_name = "Customers"
