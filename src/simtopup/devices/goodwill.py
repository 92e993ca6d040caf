"""Goodwill credit: customer service puts credit on a card ("we are sorry"), from the
operator's ``adjustments`` ledger account to the card's credit.

Up to ``settings.GOODWILL_APPROVAL_ABOVE`` (minor units) the credit is posted at once; above
it, the grant waits (``pending``) until a *different* staff member holding
:data:`APPROVE_PERMISSION` approves it, or until one rejects it. Every decision is a
compare-and-swap on the grant's status, and the transfer's idempotency key is the grant's
own (``goodwill:<id>``, unique in the ledger and on the grant), so two approvers clicking at
once, or one approval replayed, post the credit exactly once: the loser is refused with
``already_decided``.

The permission names are also those of backoffice/roles.py (which cannot be imported from
here: it sits above this package); tests/test_desk_actions.py checks they agree.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from simtopup.audit.log import record, staff_actor
from simtopup.audit.models import Action
from simtopup.core.errors import DomainError, field_error
from simtopup.devices.models import Device, GoodwillCredit, GoodwillStatus
from simtopup.ledger.actions import Posting, lock_accounts, post, system_account

GRANT_PERMISSION = "devices.grant_goodwill"
APPROVE_PERMISSION = "devices.approve_goodwill"
TRANSFER_KIND = "goodwill_credit"


def transfer_key(grant_id: int) -> str:
    return f"goodwill:{grant_id}"


def needs_approval(amount: int) -> bool:
    return amount > settings.GOODWILL_APPROVAL_ABOVE


def pending() -> QuerySet[GoodwillCredit]:
    """Grants waiting for a decision, oldest first."""
    return (
        GoodwillCredit.objects.filter(status=GoodwillStatus.PENDING)
        .select_related("device", "requested_by")
        .order_by("requested_at", "pk")
    )


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise field_error(
            "reason_required", _("Say why: anything that moves value needs a reason."), "reason"
        )
    return reason


def _refused(message: Any) -> DomainError:
    return DomainError("permission_denied", message, 403)


def request_goodwill(
    device: Device, amount: int, *, staff: Any, ip: str | None, reason: str
) -> GoodwillCredit:
    """Give ``device`` ``amount`` minor units of credit in its credit account's currency, as
    ``staff`` (who needs :data:`GRANT_PERMISSION`), for ``reason``: posted at once when at
    or below the approval limit, else left pending for a second staff member."""
    reason = _reason(reason)
    if not staff.has_perm(GRANT_PERMISSION):
        raise _refused(_("You may not give goodwill credit."))
    if not isinstance(amount, int) or amount <= 0:
        raise field_error("invalid_amount", _("Enter an amount above zero."), "amount")
    currency = device.credit_account.unit
    with transaction.atomic(durable=True):
        grant = GoodwillCredit.objects.create(
            device=device,
            amount=amount,
            currency=currency,
            reason=reason,
            requested_by=staff,
            requested_at=timezone.now(),
        )
        actor = staff_actor(staff)
        record(
            Action.GOODWILL_REQUEST,
            grant,
            actor=actor,
            ip=ip,
            after={"device": device.pk, "amount": amount, "currency": currency},
            reason=reason,
        )
        if not needs_approval(amount):
            # At or below the limit: approved by the rule itself, nobody else.
            _post(grant, actor=actor, ip=ip, reason=reason, approved=GoodwillStatus.PENDING)
    grant.refresh_from_db()
    return grant


def approve_goodwill(
    grant: GoodwillCredit, *, staff: Any, ip: str | None, reason: str = ""
) -> GoodwillCredit:
    """Approve a pending grant and post it, as ``staff`` — who holds
    :data:`APPROVE_PERMISSION` and did not request it (``own_request``). Refused with
    ``already_decided`` unless this call moved it out of ``pending``."""
    _may_decide(grant, staff, approving=True)
    reason = (reason or "").strip() or grant.reason
    actor = staff_actor(staff)
    now = timezone.now()
    with transaction.atomic(durable=True):
        won = GoodwillCredit.objects.filter(pk=grant.pk, status=GoodwillStatus.PENDING).update(
            status=GoodwillStatus.APPROVED, decided_by=staff, decided_at=now
        )
        if won != 1:
            raise _already_decided()
        record(
            Action.GOODWILL_APPROVE,
            grant,
            actor=actor,
            ip=ip,
            before={"status": GoodwillStatus.PENDING},
            after={"status": GoodwillStatus.APPROVED},
            reason=reason,
        )
        _post(grant, actor=actor, ip=ip, reason=reason, approved=GoodwillStatus.APPROVED)
    grant.refresh_from_db()
    return grant


def reject_goodwill(
    grant: GoodwillCredit, *, staff: Any, ip: str | None, reason: str
) -> GoodwillCredit:
    """Reject a pending grant, as ``staff`` holding :data:`APPROVE_PERMISSION` (its requester
    too: withdrawing one's own request moves nothing), for ``reason``."""
    reason = _reason(reason)
    _may_decide(grant, staff, approving=False)
    with transaction.atomic(durable=True):
        won = GoodwillCredit.objects.filter(pk=grant.pk, status=GoodwillStatus.PENDING).update(
            status=GoodwillStatus.REJECTED,
            decided_by=staff,
            decided_at=timezone.now(),
            decision_reason=reason,
        )
        if won != 1:
            raise _already_decided()
        record(
            Action.GOODWILL_REJECT,
            grant,
            actor=staff_actor(staff),
            ip=ip,
            before={"status": GoodwillStatus.PENDING},
            after={"status": GoodwillStatus.REJECTED},
            reason=reason,
        )
    grant.refresh_from_db()
    return grant


def _may_decide(grant: GoodwillCredit, staff: Any, *, approving: bool) -> None:
    if not staff.has_perm(APPROVE_PERMISSION):
        raise _refused(_("You may not approve or reject goodwill credit."))
    if approving and grant.requested_by_id == staff.pk:
        raise DomainError(
            "own_request",
            _("A second staff member must approve it: you cannot approve your own request."),
            403,
        )


def _already_decided() -> DomainError:
    return DomainError("already_decided", _("This goodwill credit was already decided."), 409)


def _post(grant: GoodwillCredit, *, actor: str, ip: str | None, reason: str, approved: str) -> None:
    """Post the grant's transfer and mark it posted (from ``approved``), inside the caller's
    transaction, with its ``credit.adjustment`` audit row (the card's credit before and
    after, as the ledger held them)."""
    device = grant.device
    credit = lock_accounts([device.credit_account_id])[device.credit_account_id]
    before = credit.balance
    key = transfer_key(grant.pk)
    marked = GoodwillCredit.objects.filter(pk=grant.pk, status=approved).update(
        status=GoodwillStatus.POSTED, transfer_key=key
    )
    if marked != 1:
        raise _already_decided()
    (transfer,) = post(
        [
            Posting(
                system_account("adjustments", grant.currency),
                credit,
                grant.amount,
                TRANSFER_KIND,
                key,
                memo=f"goodwill credit {grant.pk}",
            )
        ]
    )
    record(
        Action.CREDIT_ADJUSTMENT,
        device,
        actor=actor,
        ip=ip,
        before={"credit": before},
        after={"credit": transfer.destination_balance, "goodwill": grant.pk, "transfer": key},
        reason=reason,
    )
