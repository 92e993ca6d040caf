from django.apps import AppConfig


class SupportConfig(AppConfig):
    name = "simtopup.support"
    label = "support"
    verbose_name = "Customer service"
