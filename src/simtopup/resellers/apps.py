from django.apps import AppConfig


class ResellersConfig(AppConfig):
    name = "simtopup.resellers"
    label = "resellers"
    verbose_name = "Resellers"
