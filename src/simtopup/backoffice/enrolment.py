"""One-time enrolment links for staff (``simtopup staff add`` / ``staff link``).

A link is signed (django.core.signing, its own salt), expires after
``SIMTOPUP_STAFF_ENROL_HOURS`` and is good once: it names a :class:`StaffInvite` and carries a
random part whose hash only is stored; using it sets ``used_at`` by compare-and-swap
(``UPDATE … WHERE used_at IS NULL``) in the transaction that sets the password and confirms
the authenticator, so two tabs cannot both use it. The staff member sets a password there and
enrols an authenticator app (replacing a lost one: a new link is the way back in).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from simtopup.audit.log import record
from simtopup.audit.models import Action
from simtopup.backoffice import roles
from simtopup.backoffice.models import StaffInvite
from simtopup.core.errors import DomainError

SALT = "simtopup.backoffice.staff-enrol"


def add_staff(
    email: str, role: str, *, actor: str, ip: str | None = None, request_id: str = ""
) -> tuple[Any, StaffInvite, str]:
    """A new staff member (user name = the email, no password yet) in ``role`` and their
    one-time enrolment link, with one audit row, in one transaction: ``simtopup staff add``
    and the console's *Add a staff member* page both call this."""
    email = normalise_email(email)
    if role not in roles.ROLES:
        raise DomainError("unknown_role", _("Unknown role."))
    model = get_user_model()
    with transaction.atomic():
        if model._default_manager.filter(username__iexact=email).exists():
            raise DomainError(
                "staff_exists", _("%(email)s has a login already.") % {"email": email}
            )
        user = model._default_manager.create_user(username=email, email=email)
        user.set_unusable_password()
        user.is_staff = True
        user.save()
        roles.give_role(user, role)
        invite, url = issue(user, actor)
        record(
            Action.STAFF_CHANGE,
            user,
            actor=actor,
            ip=ip,
            request_id=request_id,
            after={
                "username": email,
                "is_staff": True,
                "role": role,
                "enrolment_link_until": invite.expires_at,
            },
        )
    return user, invite, url


def new_link(user: Any, *, actor: str) -> tuple[StaffInvite, str]:
    """A new one-time enrolment link for a staff member (earlier ones stop working), on the
    audit log: ``simtopup staff link`` and the demo's operator."""
    with transaction.atomic():
        invite, url = issue(user, actor)
        record(
            Action.STAFF_CHANGE,
            user,
            actor=actor,
            after={"enrolment_link_until": invite.expires_at},
        )
    return invite, url


def normalise_email(text: str) -> str:
    email = text.strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise DomainError("invalid_email", _("Enter a valid email address.")) from None
    return email


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue(user: Any, created_by: str) -> tuple[StaffInvite, str]:
    """A new link for ``user`` (earlier unused ones stop working): the invite and the URL."""
    now = timezone.now()
    StaffInvite.objects.filter(user=user, used_at__isnull=True).update(expires_at=now)
    secret = secrets.token_urlsafe(24)
    invite = StaffInvite.objects.create(
        user=user,
        token_hash=_hash(secret),
        created_at=now,
        expires_at=now + timedelta(hours=settings.STAFF_ENROL_HOURS),
        created_by=created_by[:200],
    )
    token = signing.dumps([invite.pk, secret], salt=SALT, compress=False)
    path = reverse("admin:enrol-link", kwargs={"token": token})
    return invite, settings.SITE_URL.rstrip("/") + path


def find(token: str) -> StaffInvite | None:
    """The invite a link names, if the link is genuine, unused and not expired."""
    try:
        invite_id, secret = signing.loads(
            token, salt=SALT, max_age=timedelta(hours=settings.STAFF_ENROL_HOURS)
        )
    except (signing.BadSignature, ValueError, TypeError):
        return None
    invite = (
        StaffInvite.objects.select_related("user")
        .filter(
            pk=invite_id,
            token_hash=_hash(str(secret)),
            used_at__isnull=True,
            expires_at__gt=timezone.now(),
        )
        .first()
    )
    if invite is None or not invite.user.is_active or not invite.user.is_staff:
        return None
    return invite


def use(invite: StaffInvite) -> bool:
    """Mark the invite used, once: False when another request used it first (or it expired).
    Inside the transaction of what the link does."""
    return bool(
        StaffInvite.objects.filter(
            pk=invite.pk, used_at__isnull=True, expires_at__gt=timezone.now()
        ).update(used_at=timezone.now())
    )
