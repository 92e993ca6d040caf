"""`simtopup import-devices FILE.csv`: add devices to inventory from a CSV file."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from simtopup.audit.log import cli_actor
from simtopup.devices.importer import HEADER, ImportRejected, import_devices


class Command(BaseCommand):
    help = (
        f"Import devices from a UTF-8 CSV file with the header {HEADER} (pin: the binding "
        "PIN printed with the card, 6-12 letters or digits; it is stored hashed). "
        "All or nothing: if any row is bad, nothing is written and every problem is listed. "
        "Devices already in inventory with the same identifiers are left unchanged."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="path to the CSV file")

    def handle(self, *args: Any, file: str, verbosity: int = 1, **options: Any) -> None:
        show_progress = verbosity > 0 and self.stdout.isatty()
        try:
            result = import_devices(
                file, actor=cli_actor(), progress=sys.stderr if show_progress else None
            )
        except ImportRejected as rejected:
            for problem in rejected.problems:
                self.stderr.write(str(problem))
            raise CommandError(
                _("%(count)d problem(s) found; nothing was imported.")
                % {"count": len(rejected.problems)}
            ) from None
        summary = _("%(created)d created, %(unchanged)d unchanged") % {
            "created": result.created,
            "unchanged": result.unchanged,
        }
        if result.pins_added:
            summary += ngettext(
                ", %(count)d existing device given its PIN",
                ", %(count)d existing devices given their PIN",
                result.pins_added,
            ) % {"count": result.pins_added}
        self.stdout.write(summary)
