from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "simtopup.core"
    label = "core"
    verbose_name = "Core"
