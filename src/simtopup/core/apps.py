from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "simtopup.core"
    label = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from simtopup.core import lookups  # noqa: F401  (registers field__any)
