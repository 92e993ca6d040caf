"""Network API — ``/network/v1`` (docs/api.md), HMAC-signed with the network secret."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Router

from simtopup.api.auth import NetworkSignature
from simtopup.api.schemas import AuthorizationOut, Problem, UsageBatchIn, UsageOut
from simtopup.core.errors import DomainError
from simtopup.devices.identifiers import normalise_digits
from simtopup.usage.rating import ingest
from simtopup.usage.reads import authorization_by_iccid

router = Router(auth=NetworkSignature(), tags=["network"])
ERRORS = {400: Problem, 401: Problem, 404: Problem, 413: Problem, 422: Problem}
MAX_RECORDS = 1000


@router.post(
    "/usage", response={200: UsageOut, **ERRORS}, summary="Report usage records (up to 1,000)"
)
def report_usage(request: HttpRequest, payload: UsageBatchIn) -> dict[str, object]:
    """Rate usage records exactly once per record id, all in one transaction: bundles
    soonest-expiring first, then a pay-per-use card's credit per started MB, the rest as
    overage. A repeated id counts as a duplicate; a record for an unknown ICCID or ending
    before it starts is rejected on its own, without refusing the batch."""
    if len(payload.records) > MAX_RECORDS:
        raise DomainError(
            "too_many_records",
            _("A batch holds at most %(max)s records.") % {"max": MAX_RECORDS},
            422,
        )
    result = ingest(payload.records)
    return {
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "rejected": result.rejected,
    }


@router.get(
    "/devices/{iccid}/authorization",
    response={200: AuthorizationOut, **ERRORS},
    summary="May this device use data?",
)
def device_authorization(request: HttpRequest, iccid: str) -> dict[str, object]:
    """``allowed`` while bundle data valid now remains (reason ``bundle``) or a pay-per-use
    card's credit buys at least one MB (``payg_credit``); otherwise ``no_data``,
    ``insufficient_balance`` or ``device_not_rechargeable`` (suspended or retired)."""
    answer = authorization_answer(iccid)
    if answer is None:
        raise DomainError("unknown_device", _("There is no device with this ICCID."), 404)
    return answer


def authorization_answer(iccid: str) -> dict[str, object] | None:
    """The authorization of the device with the ICCID as written in the path (None: no such
    device); also the hot path's (api/hot_reads.py)."""
    return authorization_by_iccid(normalise_digits(iccid))
