from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class BackofficeConfig(AppConfig):
    name = "simtopup.backoffice"
    label = "backoffice"
    verbose_name = _("Operator console")

    def ready(self) -> None:
        from simtopup.backoffice import roles

        # After every migrate: the staff roles (groups) with their permissions.
        post_migrate.connect(
            roles.ensure_roles, sender=self, dispatch_uid="simtopup.backoffice.roles"
        )
