"""The operator console: Django admin over every domain, read-only where value moves.

Each page needs its model's Django permission (view, add, change, delete) and each action
states its own (``permissions=[…]`` → ``has_<name>_permission``): the staff roles that hold
them are defined in backoffice/roles.py.

Value never moves from here except through domain actions (admin actions call them), so the
ledger stays provable: transfers, usage records and orders cannot be edited by hand.
Every save, delete and action here writes the audit log (backoffice/audited.py), which the
console lists read-only (backoffice/audit_log.py).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy, ngettext
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_otp_webauthn.models import WebAuthnCredential

from simtopup.accounts.models import AppToken, Customer
from simtopup.accounts.tokens import revoke_token
from simtopup.audit.log import REDACTED, from_request, record
from simtopup.audit.models import Action
from simtopup.backoffice import (
    audit_log,  # noqa: F401  (registers the audit log's admin)
    audited,
    roles,
)
from simtopup.backoffice.audited import AuditedAdmin, audited_action
from simtopup.catalog.models import PaygTariff, Plan
from simtopup.core.errors import DomainError
from simtopup.core.money import to_decimal_string
from simtopup.devices.binding import PIN_MAX_LENGTH, PIN_MIN_LENGTH, hash_pin, pin_problem
from simtopup.devices.models import Device, GoodwillCredit
from simtopup.devices.status import status_action
from simtopup.ledger.models import Account, LedgerAudit, Transfer
from simtopup.orders.models import Order, Quote
from simtopup.payments.models import Payment, PaymentEvent, Refund
from simtopup.resellers import actions as reseller_actions
from simtopup.resellers.models import (
    ApiKey,
    Reseller,
    ResellerMember,
    ResellerPrice,
    WebhookDelivery,
)
from simtopup.support.models import SupportTicket
from simtopup.usage.models import AutoTopupRule, Bundle, UsageRecord

admin.site.site_header = gettext_lazy("simtopup operator console")
admin.site.site_title = "simtopup"


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Plan)
class PlanAdmin(AuditedAdmin):
    audit_add = audit_change = Action.PLAN_CHANGE

    list_display = [
        "code",
        "kind",
        "name_en",
        "name_zh_hans",
        "data_bytes",
        "validity_hours",
        "price_display",
        "active",
    ]
    list_filter = ["kind", "active"]
    search_fields = ["code", "name_en", "name_zh_hans", "name_zh_hant"]

    @admin.display(description=gettext_lazy("price"))
    def price_display(self, plan: Plan) -> str:
        return f"{to_decimal_string(plan.price, plan.currency)} {plan.currency}"

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # orders refer to plans; deactivate instead


@admin.register(PaygTariff)
class PaygTariffAdmin(AuditedAdmin):
    audit_add = audit_change = audit_delete = Action.PRICE_CHANGE

    list_display = ["price_per_mb", "currency", "effective_from", "created_at"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # tariffs are history: add a new row with a later effective_from


class DeviceForm(forms.ModelForm):
    """The binding PIN can be set or replaced here (customer service, for a card sold without
    one) but is never shown: only whether the card has one."""

    new_pin = forms.CharField(
        label=gettext_lazy("New binding PIN"),
        required=False,
        strip=True,
        max_length=40,
        help_text=format_lazy(
            gettext_lazy(
                "{min}–{max} letters or digits (spaces and dashes ignored). Leave empty to keep "
                "the current PIN. Stored hashed: it cannot be shown again."
            ),
            min=PIN_MIN_LENGTH,
            max=PIN_MAX_LENGTH,
        ),
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )

    class Meta:
        model = Device
        fields = ["kind", "imei", "iccid", "eid", "serial", "activation_code", "status"]

    def clean_new_pin(self) -> str:
        pin: str = self.cleaned_data["new_pin"]
        if pin and (problem := pin_problem(pin)):
            raise forms.ValidationError(problem)
        return pin

    def save(self, commit: bool = True) -> Device:
        device: Device = super().save(commit=False)
        if self.cleaned_data.get("new_pin"):
            device.pin_hash = hash_pin(self.cleaned_data["new_pin"])
        if commit:
            device.save()
        return device


@admin.register(Device)
class DeviceAdmin(AuditedAdmin):
    form = DeviceForm
    list_display = [
        "id",
        "kind",
        "iccid",
        "eid",
        "imei",
        "serial",
        "status",
        "payg",
        "has_pin",
        "created_at",
    ]
    list_filter = ["kind", "status", "payg"]
    search_fields = ["iccid", "eid", "imei", "serial"]
    readonly_fields = [
        "has_pin",
        "credit_account",
        "overage_account",
        "payg",
        "created_at",
        "activated_at",
    ]
    fields = [
        "kind",
        "imei",
        "iccid",
        "eid",
        "serial",
        "activation_code",
        "status",
        "new_pin",
        *readonly_fields,
    ]

    audit_change = Action.DEVICE_CHANGE

    def audit_action(self, obj: Any, before: dict[str, Any], after: dict[str, Any]) -> Action:
        # The rule of devices/status.py, which the desk's suspend and reinstate record by.
        return status_action(before.get("status"), after.get("status"))

    @admin.display(boolean=True, description=gettext_lazy("binding PIN"))
    def has_pin(self, device: Device) -> bool:
        return device.has_pin

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # devices come in through `simtopup import-devices`

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # cards have orders and usage (and the database keeps them): retire one


class ResellerForm(forms.ModelForm):
    """The webhook URL obeys the portal's rule: https, on public addresses only."""

    class Meta:
        model = Reseller
        fields = ["name", "currency", "discount_bps", "webhook_url", "webhook_secret"]

    def clean_webhook_url(self) -> str:
        try:
            return reseller_actions.validate_webhook_url(self.cleaned_data["webhook_url"] or "")
        except DomainError as exc:
            raise forms.ValidationError(str(exc.message)) from None


@admin.register(GoodwillCredit)
class GoodwillCreditAdmin(ReadOnlyAdmin):
    """Every goodwill credit and what became of it, read-only: grants are made, approved and
    rejected on the desk's pages (backoffice/desk_actions.py, devices/goodwill.py)."""

    list_display = [
        "id",
        "device",
        "amount_display",
        "status",
        "requested_by",
        "requested_at",
        "decided_by",
        "decided_at",
    ]
    list_filter = ["status"]
    list_select_related = ["device", "requested_by", "decided_by"]
    search_fields = ["device__iccid", "device__eid", "device__imei", "device__serial"]

    @admin.display(description=gettext_lazy("amount"))
    def amount_display(self, grant: GoodwillCredit) -> str:
        return f"{to_decimal_string(grant.amount, grant.currency)} {grant.currency}"


@admin.register(Reseller)
class ResellerAdmin(AuditedAdmin):
    form = ResellerForm
    list_display = ["id", "name", "code", "status", "discount_bps", "float_display", "created_at"]
    list_filter = ["status"]
    search_fields = ["name", "code"]
    readonly_fields = ["code", "float_account", "status", "suspended_at", "created_at"]
    fields = ["name", "currency", "discount_bps", "webhook_url", "webhook_secret", *readonly_fields]
    actions = ["suspend_selected", "reinstate_selected"]
    audit_change = Action.RESELLER_CHANGE

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # `simtopup reseller create` makes the float account and the first key

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # orders refer to resellers (and the database keeps them): suspend instead

    @admin.display(description=gettext_lazy("float"))
    def float_display(self, reseller: Reseller) -> str:
        return f"{to_decimal_string(reseller.float_account.balance, reseller.currency)} {reseller.currency}"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Reseller]:
        return super().get_queryset(request).select_related("float_account")

    def has_suspend_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(roles.SUSPEND_RESELLER)

    @admin.action(description=gettext_lazy("Suspend selected resellers"), permissions=["suspend"])
    def suspend_selected(self, request: HttpRequest, queryset: QuerySet[Reseller]) -> None:
        n = 0
        for reseller in queryset:
            with audited_action(request) as audit:
                if reseller_actions.suspend(reseller):
                    n += 1
                    audit(
                        Action.RESELLER_SUSPEND,
                        reseller,
                        before={"status": "active"},
                        after={"status": "suspended"},
                    )
        self.message_user(
            request,
            ngettext("%(n)s reseller suspended.", "%(n)s resellers suspended.", n) % {"n": n},
            messages.SUCCESS,
        )

    @admin.action(description=gettext_lazy("Reinstate selected resellers"), permissions=["suspend"])
    def reinstate_selected(self, request: HttpRequest, queryset: QuerySet[Reseller]) -> None:
        n = 0
        for reseller in queryset:
            with audited_action(request) as audit:
                if reseller_actions.reinstate(reseller):
                    n += 1
                    audit(
                        Action.RESELLER_REINSTATE,
                        reseller,
                        before={"status": "suspended"},
                        after={"status": "active"},
                    )
        self.message_user(
            request,
            ngettext("%(n)s reseller reinstated.", "%(n)s resellers reinstated.", n) % {"n": n},
            messages.SUCCESS,
        )


@admin.register(ResellerPrice)
class ResellerPriceAdmin(AuditedAdmin):
    audit_add = audit_change = audit_delete = Action.PRICE_CHANGE

    list_display = ["reseller", "plan", "price"]
    list_filter = ["reseller"]


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    list_display = ["id", "reseller", "name", "prefix", "created_at", "revoked_at"]
    list_filter = ["reseller"]


class RefundInline(admin.TabularInline):
    """An order's or a payment's refunds, each with its amount, destination and status
    (automatic ones name no staff member). Read only: refunds are made on the desk's refund
    page (backoffice/desk_refunds.py)."""

    model = Refund
    fk_name = "order"
    extra = 0
    can_delete = False
    fields = readonly_fields = (
        "reference",
        "amount_display",
        "destination",
        "status",
        "requested_by",
        "reason",
        "created_at",
        "settled_at",
    )
    ordering = ["pk"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=gettext_lazy("amount"))
    def amount_display(self, refund: Refund) -> str:
        return f"{to_decimal_string(refund.amount, refund.currency)} {refund.currency}"


class PaymentRefundInline(RefundInline):
    fk_name = "payment"


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    inlines = [RefundInline]
    list_display = [
        "id",
        "channel",
        "status",
        "device",
        "plan",
        "reseller",
        "amount",
        "currency",
        "receipt_no",
        "created_at",
        "fulfilled_at",
    ]
    list_filter = ["status", "channel", "reseller"]
    search_fields = ["receipt_no", "reference", "device__iccid", "device__serial"]
    list_select_related = ["device", "plan", "reseller"]


@admin.register(Bundle)
class BundleAdmin(ReadOnlyAdmin):
    list_display = ["id", "device", "plan", "granted_bytes", "starts_at", "expires_at", "order"]
    list_select_related = ["device", "plan"]


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    list_display = [
        "record_id",
        "device",
        "bytes",
        "bundle_bytes",
        "payg_bytes",
        "charged",
        "overage_bytes",
        "started_at",
    ]
    search_fields = ["record_id", "device__iccid"]
    list_select_related = ["device"]


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ["id", "code", "kind", "unit", "balance", "hot", "clearing"]
    list_filter = ["kind", "unit", "hot"]
    search_fields = ["code"]


@admin.register(Transfer)
class TransferAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "source",
        "destination",
        "amount",
        "unit",
        "kind",
        "idempotency_key",
        "created_at",
    ]
    list_filter = ["kind", "unit"]
    search_fields = ["idempotency_key", "memo"]
    list_select_related = ["source", "destination"]


@admin.register(LedgerAudit)
class LedgerAuditAdmin(ReadOnlyAdmin):
    """The worker's scheduled ledger audits (newest kept); `simtopup check-ledger` runs one now."""

    list_display = ["checked_at", "ok", "violations_count", "accounts", "transfers", "duration_ms"]
    list_filter = ["ok"]
    fields = [
        "checked_at",
        "ok",
        "violations_count",
        "accounts",
        "transfers",
        "duration_ms",
        "violations",
    ]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "reseller",
        "event",
        "status",
        "attempts",
        "next_attempt_at",
        "delivered_at",
        "last_error",
    ]
    list_filter = ["status", "event"]


# --- customers and their payments ---------------------------------------------------------


@admin.register(Customer)
class CustomerAdmin(ReadOnlyAdmin):
    list_display = ["id", "phone", "email", "language", "created_at", "last_login_at"]
    search_fields = ["phone", "email"]


@admin.register(AppToken)
class AppTokenAdmin(AuditedAdmin, ReadOnlyAdmin):
    list_display = ["prefix", "customer", "name", "created_at", "last_used_at", "revoked_at"]
    search_fields = ["prefix", "customer__phone", "customer__email"]
    exclude = ["token_hash"]
    actions = ["revoke"]

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(roles.REVOKE_APP_TOKEN)

    @admin.action(
        description=gettext_lazy("Revoke the selected tokens at once"), permissions=["revoke"]
    )
    def revoke(self, request: HttpRequest, queryset: QuerySet[AppToken]) -> None:
        done = 0
        for token in queryset:
            with audited_action(request) as audit:
                if revoke_token(token):
                    done += 1
                    audit(Action.APP_TOKEN_REVOKE, token, after={"revoked": True})
        self.message_user(
            request,
            ngettext("%(n)s token revoked.", "%(n)s tokens revoked.", done) % {"n": done},
            messages.SUCCESS,
        )


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    inlines = [PaymentRefundInline]
    list_display = [
        "reference",
        "order",
        "provider",
        "method",
        "status",
        "amount_display",
        "created_at",
        "captured_at",
        "refunded_at",
    ]
    list_filter = ["provider", "method", "status"]
    search_fields = ["reference", "provider_ref", "order__id"]

    @admin.display(description=gettext_lazy("amount"))
    def amount_display(self, payment: Payment) -> str:
        return f"{to_decimal_string(payment.amount, payment.currency)} {payment.currency}"


class NeedsReviewFilter(admin.SimpleListFilter):
    """Notifications that did not match what we expected, flagged for an operator."""

    title = gettext_lazy("review")
    parameter_name = "review"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [
            ("needed", gettext_lazy("needing review")),
            ("done", gettext_lazy("already reviewed")),
            ("flagged", gettext_lazy("all flagged")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        flagged = queryset.filter(flagged_at__isnull=False)
        if self.value() == "needed":
            return flagged.filter(reviewed_at__isnull=True)
        if self.value() == "done":
            return flagged.filter(reviewed_at__isnull=False)
        if self.value() == "flagged":
            return flagged
        return queryset


@admin.register(PaymentEvent)
class PaymentEventAdmin(AuditedAdmin, ReadOnlyAdmin):
    list_display = [
        "received_at",
        "provider",
        "event_id",
        "kind",
        "outcome",
        "payment",
        "detail",
        "flagged_at",
        "reviewed_at",
    ]
    list_filter = [NeedsReviewFilter, "provider", "kind", "outcome"]
    search_fields = ["event_id", "payment__reference"]
    actions = ["mark_reviewed"]

    def has_review_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(roles.REVIEW_PAYMENT_EVENT)

    @admin.action(
        description=gettext_lazy("Mark the selected flagged notifications as reviewed"),
        permissions=["review"],
    )
    def mark_reviewed(self, request: HttpRequest, queryset: QuerySet[PaymentEvent]) -> None:
        # Only the review is recorded: a flagged notification never moves money or orders.
        pending = queryset.filter(flagged_at__isnull=False, reviewed_at__isnull=True)
        done = 0
        for event in pending:
            with audited_action(request) as audit:
                if PaymentEvent.objects.filter(pk=event.pk, reviewed_at__isnull=True).update(
                    reviewed_at=timezone.now(), reviewed_by=request.user.get_username()[:150]
                ):
                    done += 1
                    audit(Action.PAYMENT_EVENT_REVIEW, event, after={"reviewed": True})
        self.message_user(
            request,
            ngettext(
                "%(n)s notification marked reviewed.", "%(n)s notifications marked reviewed.", done
            )
            % {"n": done},
            messages.SUCCESS,
        )


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = [
        "reference",
        "order",
        "payment",
        "amount",
        "currency",
        "destination",
        "status",
        "requested_by",
        "attempts",
        "last_error",
    ]
    list_filter = ["status", "destination"]
    search_fields = ["reference", "payment__reference", "provider_refund_ref", "order__id"]


@admin.register(Quote)
class QuoteAdmin(ReadOnlyAdmin):
    list_display = ["id", "customer", "device", "plan", "amount", "currency", "expires_at"]


@admin.register(AutoTopupRule)
class AutoTopupRuleAdmin(ReadOnlyAdmin):
    list_display = [
        "device",
        "customer",
        "enabled",
        "threshold_bytes",
        "plan",
        "last_attempt_at",
        "last_outcome",
    ]
    list_filter = ["enabled", "last_outcome"]


# Customer service: messages from the website's contact form (support/).


@admin.register(SupportTicket)
class SupportTicketAdmin(ReadOnlyAdmin):
    """Tickets, read-only: the reply, the thread and the status are on the desk's ticket page
    (backoffice/desk.py), linked from each row."""

    list_display = ["id", "created_at", "status", "reply_to", "name", "device", "language", "desk"]
    list_filter = ["status", "reply_channel", "language"]
    search_fields = ["reply_to", "name", "device", "message"]
    readonly_fields = ["customer"]

    @admin.display(description=gettext_lazy("Customer service desk"))
    def desk(self, ticket: SupportTicket) -> str:
        url = reverse("admin:desk-ticket", args=[ticket.pk])
        return format_html('<a href="{}">{}</a>', url, gettext_lazy("Open"))


@admin.register(ResellerMember)
class ResellerMemberAdmin(ReadOnlyAdmin):
    """Reseller portal staff (added with `simtopup reseller staff add`)."""

    list_display = ["user", "reseller", "role", "must_change_password", "created_at"]
    list_filter = ["role", "reseller"]
    search_fields = ["user__username", "user__email", "reseller__code", "reseller__name"]


# --- staff and their roles (Django groups) -----------------------------------------------


admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class StaffUserAdmin(AuditedAdmin, UserAdmin):
    """Django's user admin, audited: a staff account's flags, groups (roles) and permissions."""

    audit_add = audit_change = audit_delete = Action.STAFF_CHANGE

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> Any:
        # Django's own view (not save_model): the change and its audit row in one transaction.
        with transaction.atomic():
            request._audit_password = True  # type: ignore[attr-defined]
            return super().user_change_password(request, id, form_url)

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        entry = super().log_change(request, obj, message)
        if getattr(request, "_audit_password", False):
            changed = "usable" if obj.has_usable_password() else "disabled"
            record(
                Action.STAFF_CHANGE,
                obj,
                before={"password": REDACTED},
                after={"password": f"{REDACTED} ({changed})"},
                **from_request(request),
            )
        return entry


@admin.register(Group)
class RoleAdmin(AuditedAdmin, GroupAdmin):
    """Django's group admin (a group is a staff role), audited."""

    audit_add = audit_change = audit_delete = Action.ROLE_CHANGE


# --- staff second factors (django_otp's devices; backoffice/two_factor.py) --------------------


class StaffDeviceAdmin(admin.ModelAdmin):
    """A staff member's second factors: listed and removed here (a lost phone: then `simtopup
    staff link` for a new enrolment), never added, edited or shown (their keys stay secret);
    each removal on the audit log under the staff member, without the key."""

    list_display = ["user", "name", "confirmed", "created_at", "last_used_at"]
    list_filter = ["confirmed"]
    search_fields = ["user__username", "user__email", "name"]
    readonly_fields = ["user", "name", "confirmed", "created_at", "last_used_at"]
    fields = list(readonly_fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def _record_removal(self, request: HttpRequest, device: Any) -> None:
        record(
            Action.STAFF_CHANGE,
            device.user,
            before={"second_factor": f"{device._meta.verbose_name}: {device.name}"},
            after={"second_factor": "removed"},
            reason=audited.action_reason(request),
            **from_request(request),
        )

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        with transaction.atomic():
            self._record_removal(request, obj)
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        with transaction.atomic():
            for device in queryset.select_related("user"):
                self._record_removal(request, device)
            super().delete_queryset(request, queryset)


for _device_model in (TOTPDevice, StaticDevice):
    if admin.site.is_registered(_device_model):
        admin.site.unregister(_device_model)
    admin.site.register(_device_model, StaffDeviceAdmin)


class StaffPasskeyAdmin(StaffDeviceAdmin):
    """A staff member's passkeys (backoffice/passkeys.py): listed and removed here like the
    other second factors (a lost phone or key), each removal a staff.passkey row."""

    def _record_removal(self, request: HttpRequest, device: Any) -> None:
        record(
            Action.STAFF_PASSKEY,
            device.user,
            before={"passkey": device.name, "passkey_id": device.pk},
            after={"passkey": "removed"},
            reason=audited.action_reason(request),
            **from_request(request),
        )


admin.site.register(WebAuthnCredential, StaffPasskeyAdmin)
