from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "simtopup.web"
    label = "web"
    verbose_name = "Web"
