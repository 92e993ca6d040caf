"""Two factors for every staff login to the console (issue 14, point 1).

A staff member logs in with their password and a code: the six digits of their authenticator
app (TOTP, django_otp's otp_totp) or one of their recovery codes (otp_static, each good once).
One whose password is right but who has no confirmed authenticator yet is refused (enrolment
goes through a one-time link, backoffice/enrolment.py) unless ``SIMTOPUP_STAFF_ENROL_AT_LOGIN``
lets them enrol one there (a QR code of its otpauth:// URI, confirmed with a code), once:
after that, only an administrator can reset it. Failed attempts are counted per user name and address, per user
name and per address (accounts/ratelimit.py) before the password is checked.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import django_otp
from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth import login as auth_login
from django.contrib.auth.signals import user_login_failed
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from simtopup.accounts.ratelimit import Keys, RateLimited, hit_all, ip_bucket, limits, release
from simtopup.accounts.ratelimit import reset as reset_limit
from simtopup.audit.log import REDACTED, from_request, record, staff_actor
from simtopup.audit.models import Action
from simtopup.core.http import client_ip
from simtopup.core.transactions import durable

RECOVERY_CODES = 10
# The session of a staff member whose password was right and who enrols an authenticator.
ENROL_SESSION_KEY = "backoffice_enrol"
ENROL_SECONDS = 15 * 60
RECOVERY_SESSION_KEY = "backoffice_recovery_codes"
# Set when the codes shown next replace earlier ones (not a first enrolment).
RECOVERY_RENEWED_KEY = "backoffice_recovery_renewed"


@dataclass
class Outcome:
    user: Any = None
    device: Any = None  # set: logged in
    enrol: bool = False  # the password was right, no authenticator yet
    passkey: bool = False  # the password was right: on to the passkey step
    error: str = ""
    status: int = 200


def _keys(request: HttpRequest, username: str) -> tuple[Keys, str]:
    name = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    ip = client_ip(request)
    bucket = ip_bucket(ip) if ip else "-"
    pair = f"staff-login:user-ip:{name}:{bucket}"
    keys: Keys = [
        (pair, limits(settings.STAFF_LOGIN_USER_IP_LIMITS)),
        (f"staff-login:user:{name}", limits(settings.STAFF_LOGIN_USER_LIMITS)),
    ]
    if ip:
        keys.append((f"staff-login:ip:{bucket}", limits(settings.STAFF_LOGIN_IP_LIMITS)))
    return keys, pair


def _refused(request: HttpRequest, username: str) -> None:
    """A refusal the password check did not already report (audit/logins.py records it)."""
    user_login_failed.send(sender=__name__, credentials={"username": username}, request=request)


def refused(request: HttpRequest, username: str) -> None:
    _refused(request, username)


def attempt(
    request: HttpRequest, username: str, password: str, token: str, method: str = "code"
) -> Outcome:
    """Check one console login attempt; on success the staff member is logged in with the
    device that accepted the code. ``method="passkey"``: a right password opens the passkey
    step (backoffice/passkeys.py) for a staff member who has one; the attempt stays counted
    against the limits until the passkey logs them in."""
    keys, pair = _keys(request, username)
    now = timezone.now()
    try:
        # Counted as a failure before anything is checked; given back when it was not one.
        durable(lambda: hit_all(keys, now))
    except RateLimited as exc:
        minutes = max(1, math.ceil(exc.retry_after / 60))
        return Outcome(
            error=_("Too many failed attempts. Please wait %(minutes)s minutes and try again.")
            % {"minutes": minutes},
            status=429,
        )
    wrong = _("Please enter the correct user name, password and code of a staff account.")
    user = authenticate(request, username=username, password=password)
    if user is None:
        return Outcome(error=wrong)
    if not (user.is_active and user.is_staff):
        _refused(request, username)
        return Outcome(error=wrong)
    if not django_otp.user_has_device(user, confirmed=True):
        if not settings.STAFF_ENROL_AT_LOGIN:
            # The password alone enrols nobody: a failed login, counted as one.
            _refused(request, username)
            return Outcome(
                error=_(
                    "Your account has no second factor yet. Ask an administrator for an"
                    " enrolment link."
                )
            )
        _give_back(keys, pair, now)
        request.session.cycle_key()  # a planted session key cannot ride on this enrolment
        request.session[ENROL_SESSION_KEY] = {"user": user.pk, "at": int(time.time())}
        return Outcome(user=user, enrol=True)
    code = "".join(token.split())
    if method == "passkey" and not code:
        from simtopup.backoffice import passkeys

        if not passkeys.has_passkey(user):
            _refused(request, username)
            return Outcome(error=wrong)
        passkeys.start(request, user, username)
        return Outcome(user=user, passkey=True)
    device = django_otp.match_token(user, code) if code else None
    if device is None:
        _refused(request, username)
        return Outcome(error=wrong)
    _give_back(keys, pair, now)
    log_in(request, user, device)
    return Outcome(user=user, device=device)


def _give_back(keys: Keys, pair: str, now: datetime) -> None:
    def give_back() -> None:
        for key, key_limits in keys:
            release(key, key_limits, now)
        reset_limit(pair)

    durable(give_back)


def passkey_login(request: HttpRequest, user: Any, device: Any, username: str) -> None:
    """The passkey step of a login was right: the attempt is given back, and in."""
    keys, pair = _keys(request, username or user.get_username())
    _give_back(keys, pair, timezone.now())
    log_in(request, user, device)


# The second factor of a login as the audit log names it (audit/logins.py).
METHODS = {
    "totpdevice": "authenticator app",
    "staticdevice": "recovery code",
    "webauthncredential": "passkey",
}


def log_in(request: HttpRequest, user: Any, device: Any) -> None:
    request.staff_login_method = METHODS.get(device._meta.model_name, device._meta.model_name)  # type: ignore[attr-defined]
    auth_login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    django_otp.login(request, device)


def enrolling_user(request: HttpRequest) -> Any:
    """The staff member enrolling in this session (password checked minutes ago, still no
    confirmed authenticator), or None."""
    from django.contrib.auth import get_user_model

    pending = request.session.get(ENROL_SESSION_KEY)
    if not isinstance(pending, dict) or time.time() - pending.get("at", 0) > ENROL_SECONDS:
        return None
    user_id = int(pending.get("user") or 0)
    user = (
        get_user_model()._default_manager.filter(pk=user_id, is_active=True, is_staff=True).first()
    )
    if user is None or django_otp.user_has_device(user, confirmed=True):
        return None
    return user


def pending_device(user: Any) -> TOTPDevice:
    """The authenticator being enrolled (the same one, so the QR code stays, until confirmed)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=False)
    return device


class LinkUsed(Exception):
    """The enrolment link was used (or expired) while this request checked its code."""


def confirm(
    request: HttpRequest,
    user: Any,
    code: str,
    *,
    invite: Any = None,
    password: str | None = None,
) -> list[str] | None:
    """Confirm the pending authenticator with a code from it: the new recovery codes (shown
    once), or None when the code is not right. Logs the staff member in. Through an
    enrolment link (``invite``): the link is used once (:class:`LinkUsed` otherwise), the
    password set, and the staff member's earlier authenticators removed."""
    from simtopup.backoffice import enrolment

    device = pending_device(user)
    if not device.verify_token("".join(code.split())):
        return None
    after: dict[str, Any] = {"second_factor": "authenticator enrolled"}
    with transaction.atomic():
        if invite is not None:
            if not enrolment.use(invite):
                raise LinkUsed
            TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
            after["enrolment_link"] = invite.pk
        if password:
            user.set_password(password)
            user.save(update_fields=["password"])
            after["password"] = f"{REDACTED} (set)"
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        codes = new_recovery_codes(user)
        after["recovery_codes"] = len(codes)
        record(
            Action.STAFF_CHANGE,
            user,
            after=after,
            **(from_request(request) | {"actor": staff_actor(user)}),
        )
    request.session.pop(ENROL_SESSION_KEY, None)
    log_in(request, user, device)
    return codes


def replace_recovery_codes(request: HttpRequest, user: Any) -> list[str]:
    """A staff member's own new recovery codes (the earlier ones stop working), on the audit
    log in the same transaction; shown once by the caller."""
    with transaction.atomic():
        codes = new_recovery_codes(user)
        record(
            Action.STAFF_CHANGE,
            user,
            after={"recovery_codes": f"replaced ({len(codes)})"},
            **from_request(request),
        )
    return codes


def new_recovery_codes(user: Any) -> list[str]:
    """Replace the staff member's recovery codes with new ones (each good once)."""
    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name="recovery codes", confirmed=True)
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=c) for c in codes])
    return codes
