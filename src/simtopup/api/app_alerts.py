"""App API — /api/v1: alerts of a card (channels, credit threshold) and the Web Push
subscriptions of the customer's installed apps."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Router, Schema, Status
from pydantic import Field, StrictBool, StrictInt

from simtopup.accounts.models import AppToken
from simtopup.api.app_autotopup import _my_device
from simtopup.api.auth import AppBearer
from simtopup.api.schemas import Problem, Strict
from simtopup.core.errors import DomainError
from simtopup.notifications import push
from simtopup.usage.alerts import (
    alert_settings_of,
    effective_credit_threshold,
    set_alert_settings,
    subscribe_push,
    unsubscribe_push,
)
from simtopup.usage.models import AlertSettings

router = Router(auth=AppBearer(), tags=["app: alerts"])
ERRORS = {400: Problem, 401: Problem, 404: Problem, 413: Problem, 422: Problem}
# Credit thresholds beyond this (minor units) are surely a mistake.
MAX_CREDIT_THRESHOLD = 10**9


class AlertSettingsIn(Strict):
    sms: StrictBool
    email: StrictBool
    push: StrictBool
    credit_threshold: StrictInt | None = Field(
        default=None,
        ge=0,
        le=MAX_CREDIT_THRESHOLD,
        description="warn when pay-per-use credit drops below (minor units); null: 100 MB",
    )


class AlertSettingsOut(Schema):
    sms: bool
    email: bool
    push: bool
    credit_threshold: int | None
    effective_credit_threshold: int


class PushKeyOut(Schema):
    public_key: str


class PushKeysIn(Strict):
    p256dh: str = Field(min_length=16, max_length=200)
    auth: str = Field(min_length=8, max_length=100)


class PushSubscriptionIn(Strict):
    endpoint: str = Field(min_length=10, max_length=1000)
    keys: PushKeysIn


class PushSubscriptionOut(Schema):
    id: int


def _settings_body(chosen: AlertSettings) -> dict[str, object]:
    threshold = chosen.credit_threshold
    return {
        "sms": chosen.sms,
        "email": chosen.email,
        "push": chosen.push,
        "credit_threshold": threshold,
        "effective_credit_threshold": effective_credit_threshold(chosen),
    }


@router.get(
    "/devices/{int:device_id}/alerts",
    response={200: AlertSettingsOut, **ERRORS},
    summary="How the card's alerts reach its owner",
)
def get_alert_settings(request: HttpRequest, device_id: int) -> dict[str, object]:
    device = _my_device(request, device_id)
    return _settings_body(alert_settings_of(device))


@router.put(
    "/devices/{int:device_id}/alerts",
    response={200: AlertSettingsOut, **ERRORS},
    summary="Choose the card's alert channels (SMS, email, push) and credit threshold",
)
def put_alert_settings(
    request: HttpRequest, device_id: int, payload: AlertSettingsIn
) -> dict[str, object]:
    device = _my_device(request, device_id)
    chosen = set_alert_settings(
        device,
        sms=payload.sms,
        email=payload.email,
        push=payload.push,
        credit_threshold=payload.credit_threshold,
    )
    return _settings_body(chosen)


@router.get(
    "/push/key",
    response={200: PushKeyOut, 401: Problem},
    summary="The application server key (VAPID) to subscribe with",
)
def push_key(request: HttpRequest) -> dict[str, str]:
    return {"public_key": push.public_key()}


@router.post(
    "/push/subscriptions",
    response={201: PushSubscriptionOut, **ERRORS},
    summary="Subscribe this installed app to Web Push alerts",
)
def subscribe(request: HttpRequest, payload: PushSubscriptionIn) -> Status:
    token: AppToken = request.auth  # type: ignore[attr-defined]
    sub = subscribe_push(
        token.customer_id, payload.endpoint, payload.keys.p256dh, payload.keys.auth
    )
    return Status(201, {"id": sub.pk})


@router.delete(
    "/push/subscriptions/{int:subscription_id}",
    response={204: None, **ERRORS},
    summary="Unsubscribe an installed app",
)
def unsubscribe(request: HttpRequest, subscription_id: int) -> Status:
    token: AppToken = request.auth  # type: ignore[attr-defined]
    if not unsubscribe_push(token.customer_id, pk=subscription_id):
        raise DomainError("not_found", _("There is no such push subscription."), 404)
    return Status(204, None)
