"""The libraries' apps the console shows, with section names in the console's languages.

Each is the library's own app config with only ``verbose_name`` replaced (same name and
label, so their migrations and permissions are unchanged): INSTALLED_APPS names these instead
of the originals. Their models' names are the libraries' own; django_otp_webauthn's and
django_tasks_db's are marked for translation, so our catalogues translate them, django_otp's
("TOTP device", "static device") are plain strings and stay English.
"""

from django.utils.translation import gettext_lazy as _
from django_otp.plugins.otp_static.apps import DefaultConfig as StaticConfig
from django_otp.plugins.otp_totp.apps import DefaultConfig as TOTPConfig
from django_otp_webauthn.apps import OtpWebauthnConfig
from django_tasks_db.apps import TasksAppConfig


class AuthenticatorAppsConfig(TOTPConfig):
    verbose_name = _("Authenticator apps")


class RecoveryCodesConfig(StaticConfig):
    verbose_name = _("Recovery codes")


class PasskeysConfig(OtpWebauthnConfig):
    verbose_name = _("Passkeys")


class BackgroundTasksConfig(TasksAppConfig):
    verbose_name = _("Background tasks")  # type: ignore[assignment]
