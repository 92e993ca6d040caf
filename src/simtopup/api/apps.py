from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "simtopup.api"
    label = "api"
    verbose_name = "API"
