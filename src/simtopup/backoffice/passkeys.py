"""Passkeys (WebAuthn) as a staff member's second factor (issue 14, point 1), through
django-otp-webauthn: its ceremonies, models (a passkey is a django_otp device, so a session
verified with one passes the console's ``has_permission``) and browser script, served from
its static files (our own origin: the CSP stays as it is; the script reads its settings from
a ``json_script`` tag, no inline code).

Login: the password first (two_factor.attempt). A staff member who chooses *Sign in with a
passkey* and has one gets a passkey step in this session (``PENDING_KEY``, five minutes):
the ceremony offers only that staff member's passkeys and is never passwordless; when it is
right they are logged in with that passkey (``staff.login``, method ``passkey``) and the
failed-login count of the password step is given back; a passkey the server refuses is a
failed login on the audit log. Registration: a staff member logged in with both factors adds
one from *Your sign-in methods*; each passkey added or removed is a ``staff.passkey`` row in
the transaction of the change.

The relying party is the site (``SITE_URL``'s host and origin, read at each request):
browsers offer passkeys only on https:// or http://localhost (:func:`available`).
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django_otp_webauthn import exceptions
from django_otp_webauthn.helpers import WebAuthnHelper
from django_otp_webauthn.models import WebAuthnCredential
from django_otp_webauthn.utils import rewrite_exceptions
from django_otp_webauthn.views import (
    BeginCredentialAuthenticationView,
    BeginCredentialRegistrationView,
    CompleteCredentialAuthenticationView,
    CompleteCredentialRegistrationView,
)

from simtopup.audit.log import from_request, record
from simtopup.audit.models import Action
from simtopup.core.http import safe_url

# The staff member whose password was right and who now uses their passkey.
PENDING_KEY = "backoffice_passkey"
PENDING_SECONDS = 5 * 60


def origin() -> str:
    site = urlsplit(settings.SITE_URL)
    return f"{site.scheme}://{site.netloc}"


def available() -> bool:
    """Whether browsers can use passkeys on this site: https, or http://localhost."""
    site = urlsplit(settings.SITE_URL)
    return site.scheme == "https" or (site.hostname or "") == "localhost"


class Helper(WebAuthnHelper):
    """The library's helper with the relying party read from ``SITE_URL`` at each request
    (OTP_WEBAUTHN_HELPER_CLASS)."""

    def get_relying_party_domain(self) -> str:
        return urlsplit(settings.SITE_URL).hostname or "localhost"

    def get_relying_party_name(self) -> str:
        return str(settings.OPERATOR_NAME)

    def get_allowed_origins(self) -> list[str]:
        return [origin()]

    def create_credential(self, user: Any, *args: Any, **kwargs: Any) -> Any:
        device = super().create_credential(user, *args, **kwargs)
        device.name = f"passkey {timezone.now():%Y-%m-%d %H:%M} UTC"
        return device


def passkeys_of(user: Any) -> Any:
    return WebAuthnCredential.objects.filter(user=user, confirmed=True).order_by("pk")


def has_passkey(user: Any) -> bool:
    return passkeys_of(user).exists()


def start(request: HttpRequest, user: Any, username: str) -> None:
    """The password was right: this session may now finish the login with a passkey."""
    request.session.cycle_key()  # a planted session key cannot ride on this login
    request.session[PENDING_KEY] = {"user": user.pk, "name": username, "at": int(time.time())}


def pending_user(request: HttpRequest) -> Any:
    """The staff member finishing a login with a passkey in this session, or None."""
    pending = request.session.get(PENDING_KEY)
    if not isinstance(pending, dict) or time.time() - pending.get("at", 0) > PENDING_SECONDS:
        return None
    user = (
        get_user_model()
        ._default_manager.filter(pk=int(pending.get("user") or 0), is_active=True, is_staff=True)
        .first()
    )
    return user if user is not None and has_passkey(user) else None


def remove(request: HttpRequest, user: Any, pk: int) -> bool:
    """Remove one of ``user``'s own passkeys, on the audit log; False if there is none."""
    with transaction.atomic():
        device = WebAuthnCredential.objects.select_for_update().filter(user=user, pk=pk).first()
        if device is None:
            return False
        record(
            Action.STAFF_PASSKEY,
            user,
            before={"passkey": device.name, "passkey_id": device.pk},
            after={"passkey": "removed"},
            **from_request(request),
        )
        device.delete()
    return True


def _verified_staff(user: Any) -> bool:
    verified = getattr(user, "is_verified", None)
    return bool(
        user.is_authenticated and user.is_active and user.is_staff and verified and verified()
    )


class _StaffOnly:
    """Registration: only a staff member logged in to the console with both factors."""

    request: HttpRequest

    def check_can_register(self) -> None:
        if not _verified_staff(self.request.user):
            raise exceptions.NotVerified()


class RegisterBegin(_StaffOnly, BeginCredentialRegistrationView):
    pass


class RegisterComplete(_StaffOnly, CompleteCredentialRegistrationView):
    def post(self, *args: Any, **kwargs: Any) -> JsonResponse:
        user = self.get_user()
        state = self.get_state()
        with rewrite_exceptions(logger=None), transaction.atomic():
            device = self.get_helper().register_complete(
                user=user, state=state, data=getattr(self.request, "data", {})
            )
            record(
                Action.STAFF_PASSKEY,
                user,
                after={"passkey": device.name, "passkey_id": device.pk},
                **from_request(self.request),
            )
        return JsonResponse({"id": device.pk})


class LoginBegin(BeginCredentialAuthenticationView):
    """The ceremony's options: the pending staff member's passkeys only (no one pending:
    refused, as passwordless logins are off)."""

    def get_user(self) -> Any:
        return pending_user(self.request)


class LoginComplete(CompleteCredentialAuthenticationView):
    def get_user(self) -> Any:
        return pending_user(self.request)

    def check_device_usable(self, device: Any) -> None:
        super().check_device_usable(device)
        if not device.user.is_staff:
            raise exceptions.UserDisabled()

    def complete_auth(self, device: Any) -> None:
        from simtopup.backoffice import two_factor

        pending = self.request.session.pop(PENDING_KEY, {})
        two_factor.passkey_login(self.request, device.user, device, str(pending.get("name", "")))

    def get_success_url(self) -> str:
        # The JSON ceremony's body holds no "next": only the page's query string does.
        return safe_url(self.request, self.request.GET.get("next") or "", reverse("admin:index"))

    def handle_exception(self, exc: Exception) -> Any:
        pending = self.request.session.get(PENDING_KEY)
        if isinstance(exc, exceptions.OTPWebAuthnApiError) and isinstance(pending, dict):
            from simtopup.backoffice import two_factor

            two_factor.refused(self.request, str(pending.get("name", "")))
        return super().handle_exception(exc)
