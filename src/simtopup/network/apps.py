from django.apps import AppConfig


class NetworkConfig(AppConfig):
    name = "simtopup.network"
    label = "network"
    verbose_name = "Network"
