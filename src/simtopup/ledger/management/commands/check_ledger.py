import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from simtopup.ledger.audit import run_audit


class Command(BaseCommand):
    help = (
        "Verify every ledger invariant on the live database, in one consistent snapshot; "
        "exit 1 on any violation."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--json",
            action="store_true",
            dest="as_json",
            help=(
                "Print one JSON object for machines: ok, violations, checked_at (RFC 3339, "
                "UTC), accounts, transfers, duration_ms. The exit code is the same."
            ),
        )

    def handle(self, *args: Any, as_json: bool = False, **options: Any) -> None:
        result = run_audit()
        problems = result.violations
        if as_json:
            self.stdout.write(json.dumps(result.as_json(), ensure_ascii=False))
        elif problems:
            for line in problems:
                self.stderr.write(f"VIOLATION: {line}")
        else:
            self.stdout.write(
                "ledger OK: double entry, cached balances, floors and clearing all hold"
            )
        if problems:
            raise CommandError(f"ledger check failed: {len(problems)} violation(s)", returncode=1)
