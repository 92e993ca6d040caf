from django.apps import AppConfig


class BackofficeConfig(AppConfig):
    name = "simtopup.backoffice"
    label = "backoffice"
    verbose_name = "Backoffice"
