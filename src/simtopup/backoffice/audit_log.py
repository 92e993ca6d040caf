"""The audit log in the console: a list to filter and search, and its CSV export.

Nobody can add, change or delete an entry here (the database refuses it anyway); seeing the
list needs the ``audit.view_auditentry`` permission (superusers have it).
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.translation import gettext as _

from simtopup.audit.models import AuditEntry
from simtopup.core.spreadsheet import Sheet

CSV_LIMIT = 100_000  # rows in one export; filter by date for more


def _json(value: Any) -> str:
    return "" if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = [
        "at",
        "actor",
        "ip",
        "action",
        "object_type",
        "object_id",
        "object_repr",
        "reason",
    ]
    list_filter = [
        "action",
        ("at", admin.DateFieldListFilter),
        "object_type",
        ("actor", admin.AllValuesFieldListFilter),
    ]
    search_fields = ["actor", "ip", "object_id", "object_repr", "reason", "request_id"]
    date_hierarchy = "at"
    readonly_fields = [
        "at",
        "actor",
        "ip",
        "action",
        "object_type",
        "object_id",
        "object_repr",
        "before",
        "after",
        "reason",
        "request_id",
    ]
    fields = list(readonly_fields)
    change_list_template = "backoffice/auditentry_change_list.html"
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        export = path(
            "export.csv",
            self.admin_site.admin_view(self.export_csv),
            name="audit_auditentry_export",
        )
        return [export, *super().get_urls()]

    def export_csv(self, request: HttpRequest) -> HttpResponse:
        """The entries the list shows with the same filters and search, as CSV (UTF-8 with a
        BOM, so spreadsheet programs read Chinese right), newest first."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        changelist = self.get_changelist_instance(request)
        rows = changelist.get_queryset(request).order_by("-at", "-id")[:CSV_LIMIT]
        sheet = Sheet(
            [
                _("When (UTC)"),
                _("Who"),
                _("IP address"),
                _("Action"),
                _("Object type"),
                _("Object id"),
                _("Object"),
                _("Before"),
                _("After"),
                _("Reason"),
                _("Request id"),
            ]
        )
        for e in rows.iterator(chunk_size=2000):
            sheet.row(
                [
                    e.at.astimezone(UTC).isoformat(),
                    e.actor,
                    e.ip,
                    e.action,
                    e.object_type,
                    e.object_id,
                    e.object_repr,
                    _json(e.before),
                    _json(e.after),
                    e.reason,
                    e.request_id,
                ]
            )
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        return sheet.response(f"audit-log-{stamp}.csv")
