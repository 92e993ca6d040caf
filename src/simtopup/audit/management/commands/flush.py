"""Django's ``flush`` (empty every table), also able to empty the append-only audit table on
SQLite (audit/guard.py says why only this command can)."""

from __future__ import annotations

from typing import Any

from django.core.management.commands import flush

from simtopup.audit.guard import whole_database_flush


class Command(flush.Command):
    def handle(self, **options: Any) -> None:
        with whole_database_flush():
            super().handle(**options)
