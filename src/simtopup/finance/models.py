"""The daily reconciliation: each run compares our payments and refunds of one day with one
provider's own statement of that day, and keeps what it found, so that a finance clerk sees
the history (a run is never changed after it ends; a later run of the same day is a new row).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import pgettext_lazy

from simtopup.payments.models import Payment, Refund


class RunStatus(models.TextChoices):
    COMPLETED = "completed", pgettext_lazy("choice", "completed")
    # The provider could not be reached or its statement could not be read: nothing was
    # compared; the daily job tries again later.
    FAILED = "failed", pgettext_lazy("choice", "failed")


class ReconciliationRun(models.Model):
    provider = models.CharField(max_length=20)
    # The statement's calendar day, in the provider's time zone (``zone``).
    day = models.DateField()
    # 1, 2, … per provider and day: every run is kept.
    run_no = models.PositiveIntegerField()
    zone = models.CharField(max_length=40)
    status = models.CharField(max_length=10, choices=RunStatus.choices)
    # Who ran it: "system" (the daily job), "staff:<id>:<name>", "cli:<os user>".
    actor = models.CharField(max_length=200)
    # Run by the daily job: at most one completed such run per provider and day (a second
    # worker racing for the same day loses on the constraint).
    scheduled = models.BooleanField(default=False)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    error_code = models.CharField(max_length=60, blank=True)
    error_message = models.CharField(max_length=300, blank=True)
    # Counts per outcome (the lines hold the detail).
    statement_lines = models.PositiveIntegerField(default=0)
    matched = models.PositiveIntegerField(default=0)
    missing_ours = models.PositiveIntegerField(default=0)
    missing_theirs = models.PositiveIntegerField(default=0)
    amount_mismatch = models.PositiveIntegerField(default=0)
    state_mismatch = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "day", "run_no"], name="finance_one_run_number_per_day"
            ),
            models.CheckConstraint(condition=Q(run_no__gte=1), name="finance_run_no_from_one"),
            models.UniqueConstraint(
                fields=["provider", "day"],
                condition=Q(scheduled=True, status="completed"),
                name="finance_one_completed_daily_run",
            ),
        ]
        indexes = [models.Index(fields=["provider", "day", "status"])]

    def __str__(self) -> str:
        return f"reconciliation {self.provider} {self.day} #{self.run_no} ({self.status})"

    @property
    def discrepancies(self) -> int:
        return self.missing_ours + self.missing_theirs + self.amount_mismatch + self.state_mismatch


class Outcome(models.TextChoices):
    AMOUNT_MISMATCH = "amount_mismatch", pgettext_lazy("choice", "amount mismatch")
    STATE_MISMATCH = "state_mismatch", pgettext_lazy("choice", "state mismatch")
    MISSING_OURS = "missing_ours", pgettext_lazy("choice", "missing on our side")
    MISSING_THEIRS = "missing_theirs", pgettext_lazy("choice", "missing on theirs")
    MATCHED = "matched", pgettext_lazy("choice", "matched")


# Mismatches first, matched last: the order the console lists them in.
OUTCOME_ORDER = [
    Outcome.AMOUNT_MISMATCH,
    Outcome.STATE_MISMATCH,
    Outcome.MISSING_OURS,
    Outcome.MISSING_THEIRS,
    Outcome.MATCHED,
]


class ReconciliationLine(models.Model):
    run = models.ForeignKey(ReconciliationRun, on_delete=models.CASCADE, related_name="lines")
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    kind = models.CharField(max_length=10)  # payment | refund
    reference = models.CharField(max_length=64, blank=True)
    provider_ref = models.CharField(max_length=128, blank=True)
    currency = models.CharField(max_length=3)
    our_amount = models.BigIntegerField(null=True, blank=True)
    their_amount = models.BigIntegerField(null=True, blank=True)
    our_state = models.CharField(max_length=20, blank=True)
    their_state = models.CharField(max_length=20, blank=True)
    # When it happened, by the statement (theirs) or by our books (ours only).
    at = models.DateTimeField(null=True, blank=True)
    payment = models.ForeignKey(
        Payment, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    refund = models.ForeignKey(
        Refund, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        indexes = [models.Index(fields=["run", "outcome"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.reference or self.provider_ref} ({self.outcome})"
