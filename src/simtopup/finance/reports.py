"""What the console and the CSV show of reconciliation runs (reads only)."""

from __future__ import annotations

from django.db.models import Case, IntegerField, QuerySet, Value, When

from simtopup.finance.models import OUTCOME_ORDER, ReconciliationLine, ReconciliationRun


def recent_runs(provider: str = "", limit: int = 50) -> list[ReconciliationRun]:
    """The latest runs (newest day first, then newest run), of one provider or of all."""
    runs = ReconciliationRun.objects.all()
    if provider:
        runs = runs.filter(provider=provider)
    return list(runs.order_by("-day", "-started_at", "-pk")[:limit])


def run_lines(run: ReconciliationRun) -> QuerySet[ReconciliationLine]:
    """A run's lines, mismatches first (amount, state, missing on our side, missing on
    theirs, then matched), each group by time."""
    rank = Case(
        *(When(outcome=o.value, then=Value(i)) for i, o in enumerate(OUTCOME_ORDER)),
        output_field=IntegerField(),
    )
    return (
        ReconciliationLine.objects.filter(run=run)
        .select_related("payment", "refund")
        .annotate(rank=rank)
        .order_by("rank", "at", "pk")
    )
