"""Reconciling our payments and refunds of a day with a provider's own statement of it.

:func:`reconcile` asks the provider for its statement of ``day`` (a calendar day in the
provider's own time zone: Asia/Shanghai for Alipay and WeChat Pay, UTC for Stripe and the
sandbox — ``Provider.statement_zone``), and compares it with our books of the same interval:

- our **payments** through that provider whose money we captured in the interval
  (``captured_at``: every attempt of an order counts, a retried order's too);
- our **refunds** of that provider's payments that succeeded in the interval (``settled_at``).

Each line gets one outcome: ``matched``; ``amount_mismatch`` (same payment, another amount or
currency); ``state_mismatch`` (the provider says succeeded and we say pending or failed, or
the other way round); ``missing_ours`` (on the statement, unknown to us); ``missing_theirs``
(in our books, not on the statement). A statement line whose payment we captured on the day
before or after (a capture a few seconds either side of midnight) is looked up by its
reference and still matched; the other side of that pair shows as ``missing_theirs`` on its
own day until that day's neighbour is reconciled.

A run is stored with its lines and one audit row (``finance.reconciliation``) in one
transaction; a provider that cannot be reached, or a statement that cannot be read, gives a
``failed`` run with the provider's error code, which the daily job retries later. Nothing here
moves money: a discrepancy is for a person to look at.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.db.models import Max, QuerySet
from django.utils import timezone

from simtopup.audit.log import SYSTEM, record
from simtopup.audit.models import Action
from simtopup.finance.models import (
    Outcome,
    ReconciliationLine,
    ReconciliationRun,
    RunStatus,
)
from simtopup.payments.models import Payment, Refund, RefundStatus
from simtopup.payments.providers.base import (
    STATEMENT_PAYMENT,
    STATEMENT_REFUND,
    ProviderError,
    StatementLine,
    day_window,
)
from simtopup.payments.registry import PROVIDER_CLASSES, get_provider, provider_class

logger = logging.getLogger(__name__)

# A failed daily run is tried again this long after it ended.
RETRY_AFTER = timedelta(minutes=30)


@dataclass
class _Compared:
    outcome: str
    kind: str
    reference: str
    provider_ref: str = ""
    currency: str = ""
    our_amount: int | None = None
    their_amount: int | None = None
    our_state: str = ""
    their_state: str = ""
    at: datetime | None = None
    payment: Payment | None = None
    refund: Refund | None = None


def providers() -> list[str]:
    """Every provider name a run may be asked for."""
    return sorted(PROVIDER_CLASSES)


def _provider_refunds(provider: str) -> QuerySet[Refund]:
    """Refunds of ``provider``'s payments that went back through the provider (a refund onto
    the card's credit, where refunds say where they go, never reaches it)."""
    refunds = Refund.objects.select_related("payment").filter(payment__provider=provider)
    if any(f.name == "destination" for f in Refund._meta.get_fields()):
        refunds = refunds.exclude(destination="credit")
    return refunds


def _payment_state(payment: Payment) -> str:
    """A payment's state in the statement's words: once captured it succeeded (a later
    refund is a line of its own)."""
    return "succeeded" if payment.captured_at is not None else str(payment.status)


def _outcome(our_amount: int, our_currency: str, our_state: str, line: StatementLine) -> str:
    if our_amount != line.amount or our_currency.upper() != line.currency.upper():
        return Outcome.AMOUNT_MISMATCH
    if our_state != line.state:
        return Outcome.STATE_MISMATCH
    return Outcome.MATCHED


def _key(kind: str, reference: str, provider_ref: str) -> tuple[str, str]:
    return (kind, reference) if reference else (kind, "~" + provider_ref)


def compare(provider: str, day: date, lines: Iterable[StatementLine]) -> list[_Compared]:
    """The outcome of every statement line and of every payment and refund of ours that the
    statement lacks (see the module's docstring)."""
    start, end = day_window(day, provider_class(provider).statement_zone)
    payments = {
        p.reference: p
        for p in Payment.objects.filter(
            provider=provider, captured_at__gte=start, captured_at__lt=end
        ).order_by("pk")
    }
    refunds = {
        r.reference: r
        for r in _provider_refunds(provider)
        .filter(
            status=RefundStatus.SUCCEEDED,
            settled_at__gte=start,
            settled_at__lt=end,
        )
        .order_by("pk")
    }
    # One line per payment or refund: the statement's latest word on it (a Stripe refund
    # and its failure on the same day).
    theirs: dict[tuple[str, str], StatementLine] = {}
    for line in sorted(lines, key=lambda x: (x.at is None, x.at or start)):
        theirs[_key(line.kind, line.reference, line.provider_ref)] = line

    found: list[_Compared] = []
    for line in theirs.values():
        common: dict[str, Any] = {
            "kind": line.kind,
            "reference": line.reference,
            "provider_ref": line.provider_ref,
            "currency": line.currency,
            "their_amount": line.amount,
            "their_state": line.state,
            "at": line.at,
        }
        if line.kind == STATEMENT_PAYMENT:
            payment = payments.pop(line.reference, None) if line.reference else None
            if payment is None:
                payment = _find_payment(provider, line)
                if payment is not None:  # a line without our reference, named by its id
                    payments.pop(payment.reference, None)
            if payment is None:
                found.append(_Compared(Outcome.MISSING_OURS, **common))
                continue
            state = _payment_state(payment)
            found.append(
                _Compared(
                    _outcome(payment.amount, payment.currency, state, line),
                    **{**common, "reference": payment.reference},
                    our_amount=payment.amount,
                    our_state=state,
                    payment=payment,
                )
            )
        else:
            refund = refunds.pop(line.reference, None) if line.reference else None
            if refund is None and line.reference:
                refund = _provider_refunds(provider).filter(reference=line.reference).first()
            if refund is None and line.provider_ref:
                # A line without our reference, named by the provider's refund id (as payments
                # are by theirs).
                refund = (
                    _provider_refunds(provider)
                    .filter(provider_refund_ref=line.provider_ref)
                    .first()
                )
                if refund is not None:
                    refunds.pop(refund.reference, None)
            if refund is None:
                found.append(_Compared(Outcome.MISSING_OURS, **common))
                continue
            found.append(
                _Compared(
                    _outcome(refund.amount, refund.currency, str(refund.status), line),
                    **common,
                    our_amount=refund.amount,
                    our_state=str(refund.status),
                    payment=refund.payment,
                    refund=refund,
                )
            )
    for payment in payments.values():
        found.append(
            _Compared(
                Outcome.MISSING_THEIRS,
                STATEMENT_PAYMENT,
                payment.reference,
                payment.provider_ref,
                payment.currency,
                our_amount=payment.amount,
                our_state=_payment_state(payment),
                at=payment.captured_at,
                payment=payment,
            )
        )
    for refund in refunds.values():
        found.append(
            _Compared(
                Outcome.MISSING_THEIRS,
                STATEMENT_REFUND,
                refund.reference,
                refund.provider_refund_ref,
                refund.currency,
                our_amount=refund.amount,
                our_state=str(refund.status),
                at=refund.settled_at,
                payment=refund.payment,
                refund=refund,
            )
        )
    return found


def _find_payment(provider: str, line: StatementLine) -> Payment | None:
    """A statement's payment outside the day's captures: by our reference, else by the
    provider's id of it."""
    if line.reference:
        return Payment.objects.filter(provider=provider, reference=line.reference).first()
    if line.provider_ref:
        return Payment.objects.filter(provider=provider, provider_ref=line.provider_ref).first()
    return None


def reconcile(
    provider: str,
    day: date,
    *,
    actor: str = SYSTEM,
    ip: str | None = None,
    request_id: str = "",
    scheduled: bool = False,
) -> ReconciliationRun:
    """Reconcile ``provider``'s statement of ``day`` with our books; store and return the
    run (``failed`` if the statement could not be had). ``actor`` is recorded in the audit
    log (``staff:…``, ``cli:…``, ``system`` for the daily job)."""
    if provider not in PROVIDER_CLASSES:
        raise LookupError(f"unknown payment provider {provider!r}")
    started = timezone.now()
    zone = provider_class(provider).statement_zone
    try:
        lines = get_provider(provider).statement(day)
        compared = compare(provider, day, lines)
        error: tuple[str, str] | None = None
    except ProviderError as exc:
        logger.warning("reconciliation %s %s failed: %s %s", provider, day, exc.code, exc.message)
        lines, compared, error = [], [], (exc.code, str(exc.message))
    except ImproperlyConfigured as exc:
        logger.warning("reconciliation %s %s: provider not configured: %s", provider, day, exc)
        lines, compared, error = [], [], ("provider_misconfigured", str(exc))
    counts = {outcome.value: 0 for outcome in Outcome}
    for item in compared:
        counts[item.outcome] += 1
    fields: dict[str, Any] = {
        "provider": provider,
        "day": day,
        "zone": getattr(zone, "key", str(zone)),
        "status": RunStatus.FAILED if error else RunStatus.COMPLETED,
        "actor": actor[:200],
        "scheduled": scheduled,
        "started_at": started,
        "error_code": error[0][:60] if error else "",
        "error_message": error[1][:300] if error else "",
        "statement_lines": len(lines),
        **counts,
    }
    for attempt in range(3):
        try:
            return _store(fields, compared, ip=ip, request_id=request_id)
        except IntegrityError:
            existing = _completed_daily_run(provider, day) if scheduled else None
            if existing is not None:
                return existing  # another worker's daily run of the same day won
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _store(
    fields: dict[str, Any], compared: list[_Compared], *, ip: str | None, request_id: str
) -> ReconciliationRun:
    with transaction.atomic():
        latest = ReconciliationRun.objects.filter(
            provider=fields["provider"], day=fields["day"]
        ).aggregate(n=Max("run_no"))["n"]
        run = ReconciliationRun.objects.create(
            run_no=(latest or 0) + 1, finished_at=timezone.now(), **fields
        )
        ReconciliationLine.objects.bulk_create(
            ReconciliationLine(
                run=run,
                outcome=c.outcome,
                kind=c.kind,
                reference=c.reference[:64],
                provider_ref=c.provider_ref[:128],
                currency=c.currency[:3],
                our_amount=c.our_amount,
                their_amount=c.their_amount,
                our_state=c.our_state[:20],
                their_state=c.their_state[:20],
                at=c.at,
                payment=c.payment,
                refund=c.refund,
            )
            for c in compared
        )
        record(
            Action.RECONCILIATION,
            run,
            actor=fields["actor"],
            ip=ip,
            request_id=request_id,
            after={
                "provider": run.provider,
                "day": run.day,
                "run_no": run.run_no,
                "status": run.status,
                "error_code": run.error_code,
                "statement_lines": run.statement_lines,
                **{o.value: getattr(run, o.value) for o in Outcome},
            },
        )
    return run


def _completed_daily_run(provider: str, day: date) -> ReconciliationRun | None:
    return ReconciliationRun.objects.filter(
        provider=provider, day=day, scheduled=True, status=RunStatus.COMPLETED
    ).first()


def due_day(provider: str, now: datetime) -> date:
    """The latest day whose statement ``provider`` has made by ``now``: the day before the
    provider's today, once its ``statement_ready_after`` has passed since that day ended."""
    cls = provider_class(provider)
    return (now - cls.statement_ready_after).astimezone(cls.statement_zone).date() - timedelta(
        days=1
    )


def run_daily(names: Iterable[str], *, now: datetime | None = None) -> dict[str, str]:
    """The daily job (the janitor calls it for every enabled provider): reconcile each
    provider's latest ready day unless a daily run of that day completed, or failed less
    than :data:`RETRY_AFTER` ago. Returns ``{provider: status}`` of the runs it made."""
    now = now or timezone.now()
    made: dict[str, str] = {}
    for name in sorted(set(names)):
        if name not in PROVIDER_CLASSES or not provider_class(name).supports_statement:
            continue
        day = due_day(name, now)
        if _completed_daily_run(name, day) is not None:
            continue
        if ReconciliationRun.objects.filter(
            provider=name,
            day=day,
            scheduled=True,
            status=RunStatus.FAILED,
            finished_at__gt=now - RETRY_AFTER,
        ).exists():
            continue
        run = reconcile(name, day, scheduled=True)
        made[name] = f"{day} {run.status}"
    return made
