from django.apps import AppConfig


class UsageConfig(AppConfig):
    name = "simtopup.usage"
    label = "usage"
    verbose_name = "Usage"
