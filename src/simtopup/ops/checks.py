"""System checks that keep an unsafe configuration out of production.

With ``SIMTOPUP_DEBUG=0`` they refuse (``Error``): the sandbox payment provider on any
payment method unless ``SIMTOPUP_SANDBOX_ALLOWED=1`` says the installation is a test one; a
development secret key or network secret, whatever its length; a ``SIMTOPUP_SITE_URL`` that
is not https while secure cookies are on; a payment route naming no known method or
provider. They warn about secrets generated in the data directory (one host only), such a
file readable by others, a short network secret and private webhook targets allowed.

They are deployment checks (``simtopup check --deploy``), and ``serve`` and ``worker`` run
them before they start (:func:`refuse_unsafe_start`): an error stops them. Every message
names the variable to change and how. With ``SIMTOPUP_DEBUG=1`` (development) they are off.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.checks import CheckMessage
from django.core.management.base import SystemCheckError

from simtopup.core.keyfile import mode_too_open
from simtopup.payments.providers.base import METHODS
from simtopup.payments.registry import PROVIDER_CLASSES

TAG = "simtopup"

# Development values, refused whatever their length: the keys the code used to fall back to
# ("insecure-dev-key-<data dir>", "dev-network-secret") and Django's startproject prefix.
DEV_SECRET_KEY_PREFIXES = ("insecure-dev-key", "django-insecure")
DEV_NETWORK_SECRET_PREFIXES = ("dev-network-secret",)
NETWORK_SECRET_MIN_LENGTH = 32

SANDBOX_FIX = (
    "Set SIMTOPUP_PAYMENT_PROVIDER (and SIMTOPUP_PAYMENT_ROUTES for per-method choices) to"
    " stripe, alipay or wechatpay. On a test installation, set SIMTOPUP_SANDBOX_ALLOWED=1."
)
RANDOM_VALUE = "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"


def sandbox_routes() -> dict[str, str]:
    """The payment methods the sandbox serves, each with the setting that sends it there."""
    found = {}
    for method in METHODS:
        if method in settings.PAYMENT_ROUTES:
            if settings.PAYMENT_ROUTES[method] == "sandbox":
                found[method] = "SIMTOPUP_PAYMENT_ROUTES"
        elif settings.PAYMENT_PROVIDER == "sandbox":
            found[method] = "SIMTOPUP_PAYMENT_PROVIDER=sandbox (its default)"
    return found


def _active() -> bool:
    return not settings.DEBUG


@checks.register(TAG, checks.Tags.security, deploy=True)
def check_payment_providers(
    app_configs: Sequence[Any] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    if not _active():
        return []

    messages: list[CheckMessage] = []
    unknown = [
        f"{method}={provider}"
        for method, provider in settings.PAYMENT_ROUTES.items()
        if method not in METHODS or provider not in PROVIDER_CLASSES
    ]
    if settings.PAYMENT_PROVIDER not in PROVIDER_CLASSES:
        messages.append(
            checks.Error(
                f"SIMTOPUP_PAYMENT_PROVIDER names an unknown provider: {settings.PAYMENT_PROVIDER!r}.",
                hint="Set SIMTOPUP_PAYMENT_PROVIDER to one of: "
                + ", ".join(sorted(PROVIDER_CLASSES))
                + ".",
                id="simtopup.E005",
            )
        )
    if unknown:
        messages.append(
            checks.Error(
                "SIMTOPUP_PAYMENT_ROUTES has entries naming no payment method or no provider: "
                + ", ".join(unknown)
                + ".",
                hint=f"Use method=provider pairs; methods: {', '.join(METHODS)}; providers: "
                + ", ".join(sorted(PROVIDER_CLASSES))
                + ".",
                id="simtopup.E006",
            )
        )
    sandbox = sandbox_routes()
    if sandbox and not settings.SANDBOX_ALLOWED:
        by_setting: dict[str, list[str]] = {}
        for method, setting in sandbox.items():
            by_setting.setdefault(setting, []).append(method)
        where = "; ".join(
            f"{', '.join(methods)} by {setting}" for setting, methods in by_setting.items()
        )
        messages.append(
            checks.Error(
                "The sandbox payment provider takes payments (its payment page pays any order"
                f" for free): {where}.",
                hint=SANDBOX_FIX,
                id="simtopup.E001",
            )
        )
    return messages


@checks.register(TAG, checks.Tags.security, deploy=True)
def check_secrets(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    if not _active():
        return []
    messages: list[CheckMessage] = []
    if str(settings.SECRET_KEY).startswith(DEV_SECRET_KEY_PREFIXES):
        messages.append(
            checks.Error(
                "SIMTOPUP_SECRET_KEY is a development key: sessions, signed links and the"
                " secrets derived from it can be forged by anyone who knows it.",
                hint="Set SIMTOPUP_SECRET_KEY (or SIMTOPUP_SECRET_KEY_FILE) to a long random"
                f" value, e.g. the output of {RANDOM_VALUE}; or unset it on a single host to"
                " use one generated in the data directory.",
                id="simtopup.E002",
            )
        )
    network_secret = str(settings.NETWORK_SECRET)
    if network_secret.startswith(DEV_NETWORK_SECRET_PREFIXES):
        messages.append(
            checks.Error(
                "SIMTOPUP_NETWORK_SECRET is the development secret: anyone can sign usage"
                " reports with it.",
                hint="Set SIMTOPUP_NETWORK_SECRET (or SIMTOPUP_NETWORK_SECRET_FILE) to a long"
                f" random value, e.g. the output of {RANDOM_VALUE}, and give the same value to"
                " the network's usage sender.",
                id="simtopup.E003",
            )
        )
    elif len(network_secret) < NETWORK_SECRET_MIN_LENGTH:
        messages.append(
            checks.Warning(
                f"SIMTOPUP_NETWORK_SECRET is shorter than {NETWORK_SECRET_MIN_LENGTH} characters.",
                hint=f"Set SIMTOPUP_NETWORK_SECRET to a long random value ({RANDOM_VALUE}).",
                id="simtopup.W003",
            )
        )
    generated = dict(settings.GENERATED_SECRETS)
    if generated:
        names = " and ".join(f"SIMTOPUP_{name}" for name in generated)
        files = ", ".join(generated.values())
        are = "are" if len(generated) > 1 else "is"
        messages.append(
            checks.Warning(
                f"{names} {are} not set: using random values generated for this installation"
                f" in {files}.",
                hint="Fine for one host. When several hosts serve this installation (web nodes,"
                f" workers), set {names} to the same value on each (the file's content will do);"
                " back the files up with the data directory.",
                id="simtopup.W001",
            )
        )
        for path in generated.values():
            if mode_too_open(Path(path)):
                messages.append(
                    checks.Warning(
                        f"{path} may be read by other users.",
                        hint=f"chmod 600 {path}",
                        id="simtopup.W002",
                    )
                )
    return messages


@checks.register(TAG, checks.Tags.security, deploy=True)
def check_site_url(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    if not _active():
        return []
    messages: list[CheckMessage] = []
    if settings.SESSION_COOKIE_SECURE and not str(settings.SITE_URL).startswith("https://"):
        messages.append(
            checks.Error(
                f"SIMTOPUP_SITE_URL is {settings.SITE_URL!r}, not https, while"
                " SIMTOPUP_SECURE_COOKIES=1: browsers would not send their session cookie"
                " back, and links in receipts and payment pages would be plain http.",
                hint="Set SIMTOPUP_SITE_URL to the public https:// address of the site (e.g."
                " https://topup.example.com).",
                id="simtopup.E004",
            )
        )
    if getattr(settings, "WEBHOOK_ALLOW_PRIVATE", False):
        messages.append(
            checks.Warning(
                "SIMTOPUP_WEBHOOK_ALLOW_PRIVATE=1: outgoing webhooks may go to private and"
                " loopback addresses over plain http.",
                hint="Unset SIMTOPUP_WEBHOOK_ALLOW_PRIVATE unless this is a test installation.",
                id="simtopup.W004",
            )
        )
    return messages


def refuse_unsafe_start(command: str, *, django_security: bool = True) -> None:
    """Raise ``SystemCheckError`` listing every error of simtopup's checks and (unless
    ``django_security`` is false) Django's security checks, deployment checks included;
    silenced ones (``SILENCED_SYSTEM_CHECKS``) aside. Warnings are for ``check --deploy``.
    (Every command runs the other checks itself before it starts.)"""
    tags = [TAG, checks.Tags.security] if django_security else [TAG]
    found = checks.run_checks(include_deployment_checks=True, tags=tags)
    errors = [m for m in found if m.level >= checks.ERROR and not m.is_silenced()]
    if errors:
        report = "\n".join(str(message) for message in errors)
        raise SystemCheckError(
            f"{command} refuses to start with this configuration:\n\n{report}\n\n"
            "See the Security section of the README; `simtopup check --deploy` lists"
            " warnings too."
        )


def installation_notes() -> list[str]:
    """What makes this a demo or test installation, and what to set before going live."""
    notes = []
    if settings.DEBUG:
        notes.append(
            "Debug mode (SIMTOPUP_DEBUG=1): development only; the deployment checks are off."
        )
    sandbox = sandbox_routes()
    if sandbox:
        notes.append(
            "This is a demo/test installation: payments by "
            + ", ".join(sandbox)
            + " go through the sandbox gateway, whose payment page pays any order for free."
            " Going live: a real provider in SIMTOPUP_PAYMENT_PROVIDER / SIMTOPUP_PAYMENT_ROUTES,"
            " and no SIMTOPUP_SANDBOX_ALLOWED."
        )
    generated = settings.GENERATED_SECRETS
    if "SECRET_KEY" in generated:
        notes.append(
            f"Secret key: generated for this installation in {generated['SECRET_KEY']}"
            " (several hosts: set SIMTOPUP_SECRET_KEY, the same on each)."
        )
    if "NETWORK_SECRET" in generated:
        notes.append(
            f"Network secret: generated in {generated['NETWORK_SECRET']}; the network's usage"
            " sender signs its reports with it (or set SIMTOPUP_NETWORK_SECRET)."
        )
    if notes:
        notes.append("Before going live: the Security section of the README.")
    return notes
