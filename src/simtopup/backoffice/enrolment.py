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
from django.core import signing
from django.urls import reverse
from django.utils import timezone

from simtopup.backoffice.models import StaffInvite

SALT = "simtopup.backoffice.staff-enrol"


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
