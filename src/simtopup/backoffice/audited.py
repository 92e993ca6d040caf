"""Every change made in the console goes on the audit log (audit/), in the same transaction.

:class:`AuditedAdmin` records what a save or a delete changed (before → after of the changed
fields, many-to-many ones included: a staff member's groups are their roles), with the staff
member, their IP and the action the model's admin names. The console's own actions record
through :func:`audited_action`, with the reason typed beside the action menu
(:class:`ReasonActionForm`): required where the action moves value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.db import models, transaction
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from simtopup.audit.log import changes, from_request, record, snapshot
from simtopup.audit.models import Action


class ReasonActionForm(helpers.ActionForm):
    reason = forms.CharField(
        label=_("Reason"),
        required=False,
        max_length=500,
        help_text=_("Recorded on the audit log with the action."),
    )


def action_reason(request: HttpRequest) -> str:
    return str(request.POST.get("reason", "")).strip()[:500]


@contextmanager
def audited_action(request: HttpRequest) -> Iterator[Callable[..., Any]]:
    """One transaction for an action's effect and its audit rows: yields ``record`` with the
    staff member, their IP and the reason filled in."""
    who = from_request(request)
    reason = action_reason(request)

    def write(action: Action, obj: Any, **values: Any) -> Any:
        return record(action, obj, reason=values.pop("reason", reason), **who, **values)

    with transaction.atomic():
        yield write


def _m2m(instance: models.Model) -> dict[str, list[Any]]:
    if instance.pk is None:
        return {}
    return {
        f.name: sorted(getattr(instance, f.name).values_list("pk", flat=True))
        for f in instance._meta.many_to_many
    }


class AuditedAdmin(admin.ModelAdmin):
    """Saves and deletes in the console write one audit row each (the admin's change and
    delete views already run in a transaction; bulk deletes get one here)."""

    action_form = ReasonActionForm
    # The audit actions of an add, a change and a delete of this model.
    audit_add: Action = Action.RECORD_ADD
    audit_change: Action = Action.RECORD_CHANGE
    audit_delete: Action = Action.RECORD_DELETE

    def audit_action(self, obj: Any, before: dict[str, Any], after: dict[str, Any]) -> Action:
        """The action a change is recorded as (a device's status change is its own)."""
        return self.audit_change

    def _stored(self, obj: models.Model) -> dict[str, Any]:
        if obj.pk is None:
            return {}
        stored = type(obj)._default_manager.filter(pk=obj.pk).first()
        return {} if stored is None else snapshot(stored) | _m2m(stored)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        request._audit_before = self._stored(obj) if change else {}  # type: ignore[attr-defined]
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        obj = form.instance
        stored_before: dict[str, Any] = getattr(request, "_audit_before", {})
        before, after = changes(stored_before, snapshot(obj) | _m2m(obj))
        if change and not after and not before:
            return  # saved without a change
        action = self.audit_action(obj, before, after) if change else self.audit_add
        record(action, obj, before=before if change else None, after=after, **from_request(request))

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        before = snapshot(obj) | _m2m(obj)
        with transaction.atomic():
            record(self.audit_delete, obj, before=before, **from_request(request))
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        with transaction.atomic():
            for obj in queryset:
                record(
                    self.audit_delete,
                    obj,
                    before=snapshot(obj) | _m2m(obj),
                    reason=action_reason(request),
                    **from_request(request),
                )
            super().delete_queryset(request, queryset)
