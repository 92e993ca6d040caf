"""The libraries' apps the console shows, with section names in the console's languages.

Each is the library's own app config with only ``verbose_name`` replaced (same name and
label, so their migrations and permissions are unchanged): INSTALLED_APPS names these instead
of the originals. Their models' names are the libraries' own; django_otp_webauthn's and
django_tasks_db's are marked for translation, so our catalogues translate them; django_otp's
("TOTP device", "static device") are plain strings, renamed at start-up (``_name_model``).
"""

from typing import Any

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _
from django_otp.plugins.otp_static.apps import DefaultConfig as StaticConfig
from django_otp.plugins.otp_totp.apps import DefaultConfig as TOTPConfig
from django_otp_webauthn.apps import OtpWebauthnConfig
from django_tasks_db.apps import TasksAppConfig


class AuthenticatorAppsConfig(TOTPConfig):
    verbose_name = _("Authenticator apps")

    def ready(self) -> None:
        super().ready()
        _name_model(self, "totpdevice", _("authenticator app"), _("authenticator apps"))


class RecoveryCodesConfig(StaticConfig):
    verbose_name = _("Recovery codes")

    def ready(self) -> None:
        super().ready()
        _name_model(self, "staticdevice", _("recovery code set"), _("recovery code sets"))


def _name_model(config: AppConfig, model: str, singular: Any, plural: Any) -> None:
    """django_otp names its models in plain strings: give them translated names. Only the
    names shown change (``_meta.original_attrs``, which migrations read, stays the library's),
    so no migration follows."""
    meta = config.get_model(model)._meta
    meta.verbose_name = singular
    meta.verbose_name_plural = plural


class PasskeysConfig(OtpWebauthnConfig):
    verbose_name = _("Passkeys")


class BackgroundTasksConfig(TasksAppConfig):
    verbose_name = _("Background tasks")  # type: ignore[assignment]
