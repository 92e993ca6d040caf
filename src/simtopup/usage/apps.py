from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class UsageConfig(AppConfig):
    name = "simtopup.usage"
    label = "usage"
    verbose_name = _("Usage")

    def ready(self) -> None:
        from simtopup.orders.payers import register_bundle_opener
        from simtopup.usage.bundles import open_bundle

        # Fulfilling a bundle plan opens a bundle; orders sits below usage (orders/payers.py).
        register_bundle_opener(open_bundle)
