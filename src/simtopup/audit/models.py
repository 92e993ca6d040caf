"""The audit log's one table. Rows are append-only: migration 0001 makes the database refuse
UPDATE and DELETE (as it refuses them for ledger transfers)."""

from __future__ import annotations

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Action(models.TextChoices):
    """The closed vocabulary of what is recorded (a CHECK constraint keeps it closed)."""

    STAFF_LOGIN = "staff.login", _("staff login")
    STAFF_LOGIN_FAILED = "staff.login_failed", _("failed staff login")
    STAFF_CHANGE = "staff.change", _("staff account changed")
    ROLE_CHANGE = "role.change", _("role changed")
    PLAN_CHANGE = "plan.change", _("plan changed")
    PRICE_CHANGE = "price.change", _("price changed")
    DEVICE_CHANGE = "device.change", _("device changed")
    DEVICE_SUSPEND = "device.suspend", _("device suspended")
    DEVICE_RETIRE = "device.retire", _("device retired")
    DEVICE_REINSTATE = "device.reinstate", _("device reinstated")
    RESELLER_CREATE = "reseller.create", _("reseller created")
    RESELLER_CHANGE = "reseller.change", _("reseller changed")
    RESELLER_CREDIT = "reseller.credit", _("reseller float credited")
    RESELLER_SUSPEND = "reseller.suspend", _("reseller suspended")
    RESELLER_REINSTATE = "reseller.reinstate", _("reseller reinstated")
    RESELLER_STAFF_ADD = "reseller.staff_add", _("reseller staff added")
    RESELLER_STAFF_PASSWORD = "reseller.staff_password", _("reseller staff password reset")
    API_KEY_CREATE = "api_key.create", _("API key created")
    API_KEY_REVOKE = "api_key.revoke", _("API key revoked")
    PARTNER_CREDENTIAL_CREATE = "partner_credential.create", _("partner credential created")
    PARTNER_CREDENTIAL_REVOKE = "partner_credential.revoke", _("partner credential revoked")
    APP_TOKEN_REVOKE = "app_token.revoke", _("app token revoked")
    PAYMENT_EVENT_REVIEW = "payment_event.review", _("payment notification reviewed")
    REFUND = "refund", _("refund")
    CREDIT_ADJUSTMENT = "credit.adjustment", _("credit adjustment")
    DEVICE_UNBIND = "device.unbind", _("card unbound from its customer")
    DEVICE_IMPORT = "device.import", _("cards imported")
    RESELLER_DEPOSIT = "reseller.deposit", _("reseller deposit recorded")
    FULFILMENT_RETRY = "order.retry_fulfilment", _("fulfilment retried")
    RECEIPT_RESEND = "order.resend_receipt", _("receipt re-sent")
    GOODWILL_REQUEST = "credit.goodwill_request", _("goodwill credit requested")
    GOODWILL_APPROVE = "credit.goodwill_approve", _("goodwill credit approved")
    GOODWILL_REJECT = "credit.goodwill_reject", _("goodwill credit rejected")
    TICKET_REPLY = "ticket.reply", _("ticket reply")
    TICKET_STATUS = "ticket.status", _("ticket status changed")
    STAFF_ENROL = "staff.enrol", _("staff second factor enrolled")
    STAFF_PASSKEY = "staff.passkey", _("staff passkey changed")
    RECONCILIATION = "finance.reconciliation", _("reconciliation run")
    RECORD_ADD = "console.add", _("record added in the console")
    RECORD_CHANGE = "console.change", _("record changed in the console")
    RECORD_DELETE = "console.delete", _("record deleted in the console")


# Anything that moves value needs a reason: refused by audit.log.record and by the database.
MOVES_VALUE = frozenset(
    {
        Action.RESELLER_CREDIT,
        Action.RESELLER_DEPOSIT,
        Action.REFUND,
        Action.CREDIT_ADJUSTMENT,
        Action.GOODWILL_REQUEST,
        Action.GOODWILL_APPROVE,
        Action.GOODWILL_REJECT,
    }
)


class AuditEntry(models.Model):
    at = models.DateTimeField(_("when"), default=timezone.now, db_index=True)
    # "staff:<user id>:<username>", "cli:<os user>", "system", "anonymous" (a failed login).
    actor = models.CharField(_("who"), max_length=200, db_index=True)
    # As client_ip read it (a proxy's header may hold anything): text, not an inet column.
    ip = models.CharField(_("IP address"), max_length=45, blank=True, default="")
    action = models.CharField(_("action"), max_length=40, choices=Action.choices)
    object_type = models.CharField(_("object type"), max_length=100)
    object_id = models.CharField(_("object id"), max_length=64, blank=True, default="")
    object_repr = models.CharField(_("object"), max_length=200, blank=True, default="")
    before = models.JSONField(_("before"), null=True, blank=True, encoder=DjangoJSONEncoder)
    after = models.JSONField(_("after"), null=True, blank=True, encoder=DjangoJSONEncoder)
    reason = models.TextField(_("reason"), blank=True, default="")
    request_id = models.CharField(_("request id"), max_length=64, blank=True, default="")

    class Meta:
        verbose_name = _("audit entry")
        verbose_name_plural = _("audit entries")
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["object_type", "object_id"], name="audit_object"),
            models.Index(fields=["action", "at"], name="audit_action_at"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(action__in=Action.values), name="audit_action_known"
            ),
            models.CheckConstraint(
                condition=~Q(action__in=sorted(MOVES_VALUE)) | ~Q(reason=""),
                name="audit_reason_when_value_moves",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.object_type}:{self.object_id}"
