"""`simtopup finance reconcile --provider P [--day YYYY-MM-DD]`: reconcile one provider's
statement of one day with our books now (finance/actions.py), recorded in the audit log as
``cli:<os user>``. Without ``--day``: the provider's latest day whose statement is ready.
Exits non-zero when the statement could not be had (the run is stored as failed)."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from simtopup.audit.log import cli_actor
from simtopup.finance.actions import due_day, providers, reconcile
from simtopup.finance.models import Outcome, RunStatus


class Command(BaseCommand):
    help = "Reconcile payments and refunds with a provider's statement."

    def add_arguments(self, parser: Any) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        run = sub.add_parser("reconcile", help="reconcile one provider's statement of one day")
        run.add_argument("--provider", required=True, choices=providers())
        run.add_argument("--day", default="", help="YYYY-MM-DD, in the provider's time zone")

    def handle(self, *args: Any, action: str, provider: str, day: str, **options: Any) -> None:
        if day:
            try:
                wanted = date.fromisoformat(day)
            except ValueError:
                raise CommandError("--day must be YYYY-MM-DD") from None
        else:
            wanted = due_day(provider, timezone.now())
        run = reconcile(provider, wanted, actor=cli_actor())
        counts = ", ".join(f"{o.value} {getattr(run, o.value)}" for o in Outcome)
        if run.status == RunStatus.FAILED:
            raise CommandError(
                f"run {run.pk} ({provider} {wanted} #{run.run_no}) failed: "
                f"{run.error_code}: {run.error_message}"
            )
        self.stdout.write(
            f"run {run.pk} ({provider} {wanted} #{run.run_no}, {run.zone}): "
            f"{run.statement_lines} statement lines; {counts}"
        )
