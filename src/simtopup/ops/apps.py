from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "simtopup.ops"
    label = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        from simtopup.ops import checks  # noqa: F401  (registers the deployment checks)
