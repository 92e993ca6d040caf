"""The console's tables: one-time enrolment links for staff (backoffice/enrolment.py).

The module also makes Django send this app's ``post_migrate``, which creates the staff roles
(backoffice/roles.py)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class StaffInvite(models.Model):
    """One enrolment link: good once (``used_at`` set by compare-and-swap), until it expires.
    Only the hash of its random part is kept."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_invites"
    )
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    created_by = models.CharField(max_length=200)

    class Meta:
        verbose_name = _("staff enrolment link")
        verbose_name_plural = _("staff enrolment links")

    def __str__(self) -> str:
        return f"enrolment link {self.pk} for {self.user_id}"
