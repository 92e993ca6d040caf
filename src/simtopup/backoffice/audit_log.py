"""The audit log in the console: a list to filter and search, and its CSV export.

Nobody can add, change or delete an entry here (the database refuses it anyway); seeing the
list needs the ``audit.view_auditentry`` permission (superusers have it).
"""

from __future__ import annotations

import csv
import io
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

CSV_LIMIT = 100_000  # rows in one export; filter by date for more


def _cell(text: str) -> str:
    """Text for a spreadsheet cell: one that starts like a formula is quoted (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


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
        out = io.StringIO()
        out.write("\ufeff")
        writer = csv.writer(out)
        writer.writerow(
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
            writer.writerow(
                [
                    e.at.astimezone(UTC).isoformat(),
                    _cell(e.actor),
                    e.ip,
                    e.action,
                    e.object_type,
                    _cell(e.object_id),
                    _cell(e.object_repr),
                    _cell(_json(e.before)),
                    _cell(_json(e.after)),
                    _cell(e.reason),
                    _cell(e.request_id),
                ]
            )
        response = HttpResponse(out.getvalue().encode(), content_type="text/csv; charset=utf-8")
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="audit-log-{stamp}.csv"'
        return response
