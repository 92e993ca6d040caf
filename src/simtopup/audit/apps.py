from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.utils.translation import gettext_lazy as _


class AuditConfig(AppConfig):
    name = "simtopup.audit"
    label = "audit"
    verbose_name = _("Audit log")

    def ready(self) -> None:
        from django.contrib.auth import signals

        from simtopup.audit import guard, logins

        connection_created.connect(
            guard.register_sqlite_function, dispatch_uid="simtopup.audit.sqlite_guard"
        )
        signals.user_logged_in.connect(logins.logged_in, dispatch_uid="simtopup.audit.login")
        signals.user_login_failed.connect(
            logins.login_failed, dispatch_uid="simtopup.audit.login_failed"
        )
