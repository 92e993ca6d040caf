from typing import Any

from django.core.management.base import BaseCommand, CommandError

from simtopup.ledger.audit import audit


class Command(BaseCommand):
    help = "Verify every ledger invariant on the live database; exit 1 on any violation."

    def handle(self, *args: Any, **options: Any) -> None:
        problems = audit()
        if problems:
            for line in problems:
                self.stderr.write(f"VIOLATION: {line}")
            raise CommandError(f"ledger check failed: {len(problems)} violation(s)", returncode=1)
        self.stdout.write("ledger OK: double entry, cached balances, floors and clearing all hold")
