from django.apps import AppConfig


class DevicesConfig(AppConfig):
    name = "simtopup.devices"
    label = "devices"
    verbose_name = "Devices"
