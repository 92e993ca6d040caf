"""App API — /api/v1: automatic top-up rules (``PUT /devices/{id}/auto-topup``)."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Router, Schema
from pydantic import Field, StrictBool, StrictInt

from simtopup.accounts.models import AppToken
from simtopup.api.auth import AppBearer
from simtopup.api.schemas import Problem, Strict
from simtopup.api.serializers import rfc3339
from simtopup.core.errors import DomainError
from simtopup.devices.models import Device
from simtopup.usage import autotopup
from simtopup.usage.models import AutoTopupRule

router = Router(auth=AppBearer(), tags=["app: devices"])
ERRORS = {400: Problem, 401: Problem, 404: Problem, 413: Problem, 422: Problem}


class AutoTopupIn(Strict):
    enabled: StrictBool
    threshold_bytes: StrictInt = Field(ge=0, description="top up when remaining data drops below")
    plan: str = Field(min_length=1, max_length=40, description="a daily or monthly pass")


class AutoTopupOut(Schema):
    enabled: bool
    threshold_bytes: int
    plan: str | None
    last_attempt_at: str | None
    last_outcome: str | None


def _my_device(request: HttpRequest, device_id: int) -> Device:
    token: AppToken = request.auth  # type: ignore[attr-defined]
    device = (
        Device.objects.select_related("credit_account")
        .filter(pk=device_id, owner_id=token.customer_id)
        .first()
    )
    if device is None:
        raise DomainError("not_found", _("There is no such device in your account."), 404)
    return device


def _body(rule: AutoTopupRule | None) -> dict[str, object]:
    if rule is None:
        return {
            "enabled": False,
            "threshold_bytes": 0,
            "plan": None,
            "last_attempt_at": None,
            "last_outcome": None,
        }
    return {
        "enabled": rule.enabled,
        "threshold_bytes": rule.threshold_bytes,
        "plan": rule.plan.code,
        "last_attempt_at": rfc3339(rule.last_attempt_at),
        "last_outcome": rule.last_outcome or None,
    }


@router.get(
    "/devices/{int:device_id}/auto-topup",
    response={200: AutoTopupOut, **ERRORS},
    summary="The device's automatic top-up rule",
)
def get_auto_topup(request: HttpRequest, device_id: int) -> dict[str, object]:
    device = _my_device(request, device_id)
    return _body(AutoTopupRule.objects.select_related("plan").filter(device=device).first())


@router.put(
    "/devices/{int:device_id}/auto-topup",
    response={200: AutoTopupOut, **ERRORS},
    summary="Set the automatic top-up rule: buy `plan` from the card's credit below a threshold",
)
def put_auto_topup(request: HttpRequest, device_id: int, payload: AutoTopupIn) -> dict[str, object]:
    device = _my_device(request, device_id)
    token: AppToken = request.auth  # type: ignore[attr-defined]
    rule = autotopup.set_rule(
        token.customer,
        device,
        enabled=payload.enabled,
        threshold_bytes=payload.threshold_bytes,
        plan_code=payload.plan,
    )
    return _body(rule)
