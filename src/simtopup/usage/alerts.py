"""Alerts: a bundle 80 % and 100 % used, 3 days and 1 day before its end, expired; a
pay-per-use card's credit below the customer's threshold and exhausted.

Raised where the change happens, in its transaction: usage rating (usage/rating.py) compares
each bundle's and credit's balance before and after the batch, set-wise, and the expiry job
(usage/expiry.py) raises the expiry ones. Exactly once: an :class:`Alert` row's ``key`` is
unique (bundle and kind; card, kind and credit episode) and inserted with conflicts ignored.

Delivered after commit by a task (:func:`deliver_alert`), to each channel at most once: one
:class:`AlertDelivery` row per alert and channel (unique), claimed by compare-and-swap before
sending, retried with ``ALERT_BACKOFF`` (the janitor's :func:`deliver_due` picks up retries).
Channels: SMS, email and Web Push to the card's owner, in the owner's language, as the owner
chose per card (:class:`AlertSettings`; all on by default); and a signed webhook to the
reseller that sold the bundle (``bundle.threshold``, ``bundle.expired``, ``credit.low``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.formats import date_format

from simtopup.catalog.display import format_data
from simtopup.core.money import format_money
from simtopup.devices.models import Device
from simtopup.orders.models import Order
from simtopup.usage.models import (
    Alert,
    AlertDelivery,
    AlertKind,
    AlertSettings,
    AutoTopupRule,
    PushSubscription,
)

logger = logging.getLogger(__name__)

MB = 1024 * 1024
# A pay-per-use card warns, unless its owner chose otherwise, when its credit no longer
# pays for this many MB at the tariff.
DEFAULT_CREDIT_MB = 100
BUNDLE_KINDS = (AlertKind.USED_80, AlertKind.USED_100)
WEBHOOK_EVENT = {
    AlertKind.USED_80: "bundle.threshold",
    AlertKind.USED_100: "bundle.threshold",
    AlertKind.EXPIRES_3D: "bundle.threshold",
    AlertKind.EXPIRES_1D: "bundle.threshold",
    AlertKind.EXPIRED: "bundle.expired",
    AlertKind.CREDIT_LOW: "credit.low",
    AlertKind.CREDIT_EXHAUSTED: "credit.low",
}


# --- raising ----------------------------------------------------------------------------------


def bundle_alert(
    bundle_id: int, device_id: int, kind: str, now: datetime, **facts: object
) -> Alert:
    return Alert(
        key=f"b:{bundle_id}:{kind}",
        kind=kind,
        device_id=device_id,
        bundle_id=bundle_id,
        facts=facts,
        created_at=now,
    )


def usage_crossings(granted: int, before: int, after: int) -> list[str]:
    """The used-data thresholds a bundle of ``granted`` bytes crossed going from ``before``
    to ``after`` remaining bytes (both, when one batch crosses both)."""
    crossed: list[str] = []
    # 80 % used: at most a fifth remains (integers: no rounding).
    if after * 5 <= granted < before * 5:
        crossed.append(AlertKind.USED_80)
    if after <= 0 < before:
        crossed.append(AlertKind.USED_100)
    return crossed


def credit_crossings(threshold: int, tariff: int, before: int, after: int) -> list[str]:
    """Credit thresholds crossed going down from ``before`` to ``after``: below the card's
    ``threshold``, and exhausted (it no longer pays for one MB at ``tariff``)."""
    crossed: list[str] = []
    if after < threshold <= before:
        crossed.append(AlertKind.CREDIT_LOW)
    if after < tariff <= before:
        crossed.append(AlertKind.CREDIT_EXHAUSTED)
    return crossed


def credit_thresholds(device_ids: list[int], tariff: int) -> dict[int, int]:
    """Each card's credit threshold: its owner's choice, else 100 MB at ``tariff``."""
    chosen = {
        pk: threshold
        for pk, threshold in AlertSettings.objects.filter(
            device_id__in=device_ids, credit_threshold__isnull=False
        ).values_list("device_id", "credit_threshold")
        if threshold is not None
    }
    return {pk: chosen.get(pk, DEFAULT_CREDIT_MB * tariff) for pk in device_ids}


def credit_alert(
    device_id: int, credit_account_id: int, kind: str, now: datetime, **facts: object
) -> Alert:
    """A credit alert of the current episode: the transfer that last put credit on the card
    (a new top-up re-arms the warnings)."""
    from simtopup.ledger.models import Transfer

    episode = (
        Transfer.objects.filter(destination_id=credit_account_id)
        .order_by("-id")
        .values_list("id", flat=True)
        .first()
    ) or 0
    return Alert(
        key=f"c:{device_id}:{kind}:{episode}",
        kind=kind,
        device_id=device_id,
        facts=facts,
        created_at=now,
    )


def raise_alerts(alerts: list[Alert]) -> None:
    """Insert ``alerts`` in the caller's transaction (one statement; a key already raised is
    ignored) and deliver each once the transaction has committed."""
    if not alerts:
        return
    Alert.objects.bulk_create(alerts, ignore_conflicts=True)
    keys = [a.key for a in alerts]
    transaction.on_commit(lambda: _enqueue(keys), robust=True)


def _enqueue(keys: list[str]) -> None:
    from simtopup.usage.tasks import deliver_alerts_task

    deliver_alerts_task.enqueue(keys)


# --- what an alert says -------------------------------------------------------------------------


@dataclass
class Text:
    subject: str
    body: str
    link: str


def _link(path: str, query: dict[str, object]) -> str:
    return f"{settings.SITE_URL.rstrip('/')}{path}?{urlencode(query)}"


def topup_link(alert: Alert) -> str:
    """The one-tap top-up. A card in a customer's account: "buy again" — the confirmation of
    the same plan for it (bundles) — or its add-credit form (credit), both after logging in.
    A card nobody has bound (a reseller's customer, told by the reseller's webhook): the
    visitor's wizard, the same plan chosen (bundles) or the plans (credit)."""
    owned = alert.device.owner_id is not None
    if alert.bundle_id is not None:
        bundle = alert.bundle
        assert bundle is not None
        if owned:
            return _link(
                reverse("web:topup-confirm"), {"device": alert.device_id, "plan": bundle.plan.code}
            )
        return _link(
            reverse("web:topup-device"), {"plan": bundle.plan.code, "device": alert.device_id}
        )
    if owned:
        path = reverse("web:credit-add", kwargs={"device_id": alert.device_id})
        return f"{settings.SITE_URL.rstrip('/')}{path}"
    return _link(reverse("web:topup"), {"device": alert.device_id})


def _auto_topup_note(alert: Alert) -> str:
    """Where automatic top-up is on: that it ran (and what it bought), or that it is on."""
    from django.utils.translation import gettext as _

    rule = (
        AutoTopupRule.objects.select_related("plan")
        .filter(device_id=alert.device_id, enabled=True)
        .first()
    )
    if rule is None:
        return ""
    if (
        rule.last_outcome == "placed"
        and rule.last_attempt_at is not None
        and rule.last_attempt_at >= alert.created_at - timedelta(minutes=5)
    ):
        return " " + _("Automatic top-up ran: we bought %(plan)s.") % {"plan": rule.plan.name}
    return " " + _("Automatic top-up is on for this card.")


def render_alert(alert: Alert, language: str) -> Text:
    """Subject, body and link of ``alert`` in ``language``."""
    from simtopup.notifications.actions import render

    device = alert.device
    link = topup_link(alert)
    with translation.override(language):
        context: dict[str, object] = {"device": device.masked, "link": link}
        if alert.bundle_id is not None:
            bundle = alert.bundle
            assert bundle is not None
            context["plan"] = bundle.plan.name
            context["remaining"] = format_data(int(str(alert.facts.get("remaining", 0))))
            context["expires_at"] = date_format(
                timezone.localtime(bundle.expires_at, _display_zone()), "DATETIME_FORMAT"
            )
        else:
            currency = str(alert.facts.get("currency", settings.CURRENCY))
            context["credit"] = format_money(int(str(alert.facts.get("credit", 0))), currency)
            context["threshold"] = format_money(int(str(alert.facts.get("threshold", 0))), currency)
        context["auto"] = _auto_topup_note(alert)
    subject, body = render(f"alert_{alert.kind}", context, language)
    return Text(subject, body, link)


def _display_zone() -> ZoneInfo:
    return ZoneInfo(settings.DISPLAY_TIME_ZONE)


# --- delivering ---------------------------------------------------------------------------------


def _reseller_id(alert: Alert) -> int | None:
    """The reseller that sold the bundle; for credit, the one that sold the card's latest
    credit."""
    if alert.bundle_id is not None:
        bundle = alert.bundle
        assert bundle is not None
        if bundle.order_id is None:
            return None
        return (
            Order.objects.filter(pk=bundle.order_id).values_list("reseller_id", flat=True).first()
        )
    return (
        Order.objects.filter(device_id=alert.device_id, reseller__isnull=False, plan__data_bytes=0)
        .order_by("-id")
        .values_list("reseller_id", flat=True)
        .first()
    )


def plan_channels(alert: Alert) -> list[str]:
    """The channels ``alert`` goes to: the owner's chosen ones they can be reached by, and
    the webhook of the reseller that sold it."""
    channels = []
    device: Device = alert.device
    customer = device.owner
    if customer is not None:
        chosen = AlertSettings.objects.filter(device_id=device.pk).first() or AlertSettings()
        if chosen.sms and customer.phone:
            channels.append("sms")
        if chosen.email and customer.email:
            channels.append("email")
        if chosen.push and PushSubscription.objects.filter(customer=customer).exists():
            channels.append("push")
    reseller_id = _reseller_id(alert)
    if reseller_id is not None:
        from simtopup.resellers.models import Reseller

        if Reseller.objects.filter(pk=reseller_id).exclude(webhook_url="").exists():
            channels.append("webhook")
    return channels


def deliver_alert(key: str) -> dict[str, str]:
    """Plan the channels of the alert ``key`` (once: unique rows) and try each due one."""
    alert = Alert.objects.select_related("device__owner", "bundle__plan").filter(key=key).first()
    if alert is None:
        return {}
    now = timezone.now()
    AlertDelivery.objects.bulk_create(
        [
            AlertDelivery(alert=alert, channel=channel, next_attempt_at=now)
            for channel in plan_channels(alert)
        ],
        ignore_conflicts=True,
    )
    if alert.planned_at is None:
        Alert.objects.filter(pk=alert.pk, planned_at=None).update(planned_at=now)
    ids = AlertDelivery.objects.filter(alert=alert, status="pending").values_list("pk", "channel")
    return {channel: attempt(pk, alert) for pk, channel in ids}


def attempt(delivery_id: int, alert: Alert | None = None) -> str:
    """Send one channel of an alert if it is due and nobody else holds it: claimed by
    compare-and-swap (pending, due) → held for a while; sent → ``sent`` for good."""
    now = timezone.now()
    hold = now + timedelta(seconds=max(settings.PUSH_TIMEOUT_SECONDS, 30) * 2)
    claimed = AlertDelivery.objects.filter(
        pk=delivery_id, status="pending", next_attempt_at__lte=now
    ).update(next_attempt_at=hold, attempts=F("attempts") + 1)
    if not claimed:
        return "not_due"
    delivery = AlertDelivery.objects.get(pk=delivery_id)
    if alert is None:
        alert = Alert.objects.select_related("device__owner", "bundle__plan").get(
            pk=delivery.alert_id
        )
    try:
        error = _send(delivery.channel, alert)
    except Exception as exc:  # a side effect: logged and retried, never raised
        logger.exception("alert %s by %s failed", alert.key, delivery.channel)
        error = (str(exc) or exc.__class__.__name__)[:300]
    if error is None:
        AlertDelivery.objects.filter(pk=delivery_id, status="pending").update(
            status="sent", sent_at=timezone.now(), last_error=""
        )
        return "sent"
    backoff = settings.ALERT_BACKOFF
    if delivery.attempts > len(backoff):
        AlertDelivery.objects.filter(pk=delivery_id, status="pending").update(
            status="failed", last_error=error
        )
        return "failed"
    AlertDelivery.objects.filter(pk=delivery_id, status="pending").update(
        next_attempt_at=timezone.now() + timedelta(seconds=backoff[delivery.attempts - 1]),
        last_error=error,
    )
    return "retry"


def _send(channel: str, alert: Alert) -> str | None:
    """Send ``alert`` by ``channel``; None when delivered, else why not."""
    if channel == "webhook":
        _queue_webhook(alert)
        return None
    customer = alert.device.owner
    if customer is None:
        return None  # the card changed hands meanwhile: nobody to tell
    text = render_alert(alert, customer.language)
    if channel in ("sms", "email"):
        from simtopup.notifications.senders import Message, get_sender

        recipient = customer.phone if channel == "sms" else customer.email
        if not recipient:
            return None
        get_sender(channel).send(  # type: ignore[arg-type]
            Message(channel, recipient, text.subject, text.body, customer.language)  # type: ignore[arg-type]
        )
        return None
    if channel == "push":
        from simtopup.notifications import push

        payload = json.dumps(
            {"title": text.subject, "body": text.body, "url": text.link, "tag": alert.key},
            ensure_ascii=False,
        ).encode()
        failures = []
        for sub in PushSubscription.objects.filter(customer=customer):
            outcome = push.send(sub.endpoint, sub.p256dh, sub.auth, payload)
            if outcome == "gone":
                PushSubscription.objects.filter(pk=sub.pk).delete()
            elif outcome != "sent":
                failures.append(outcome)
        return "; ".join(failures)[:300] if failures else None
    return f"unknown channel {channel}"


def webhook_data(alert: Alert) -> dict[str, object]:
    """The ``data`` of the alert's webhook event."""
    from simtopup.core.money import money
    from simtopup.core.timefmt import rfc3339

    data: dict[str, object] = {
        "alert": alert.pk,
        "threshold": alert.kind,
        "device": alert.device.masked,
        "topup_url": topup_link(alert),
        "raised_at": rfc3339(alert.created_at),
    }
    if alert.bundle_id is not None:
        bundle = alert.bundle
        assert bundle is not None
        data["bundle"] = {
            "id": bundle.pk,
            "order": bundle.order_id,
            "plan": bundle.plan.code,
            "granted_bytes": bundle.granted_bytes,
            "remaining_bytes": alert.facts.get("remaining"),
            "expires_at": rfc3339(bundle.expires_at),
        }
    else:
        currency = str(alert.facts.get("currency", settings.CURRENCY))
        data["credit"] = money(int(str(alert.facts.get("credit", 0))), currency)
        data["credit_threshold"] = money(int(str(alert.facts.get("threshold", 0))), currency)
    return data


def _queue_webhook(alert: Alert) -> None:
    from simtopup.resellers.webhooks import queue_alert_event

    reseller_id = _reseller_id(alert)
    if reseller_id is not None:
        with transaction.atomic():
            queue_alert_event(
                reseller_id,
                WEBHOOK_EVENT[AlertKind(alert.kind)],
                f"alert:{alert.pk}",
                webhook_data(alert),
            )


# An alert whose delivery task has not run after this long was lost (a crash between the
# commit and the enqueue): the janitor delivers it. Older ones are left alone (stale news).
LOST_AFTER = timedelta(minutes=2)
STALE_AFTER = timedelta(days=1)


def deliver_due(limit: int = 200) -> int:
    """Retries whose time has come, and alerts whose delivery task was lost (the janitor
    runs this every pass). Returns the channels sent."""
    now = timezone.now()
    lost = list(
        Alert.objects.filter(
            planned_at=None, created_at__lt=now - LOST_AFTER, created_at__gt=now - STALE_AFTER
        )
        .order_by("created_at")
        .values_list("key", flat=True)[:limit]
    )
    sent = sum(1 for key in lost for outcome in deliver_alert(key).values() if outcome == "sent")
    ids = list(
        AlertDelivery.objects.filter(status="pending", next_attempt_at__lte=timezone.now())
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    return sent + sum(1 for pk in ids if attempt(pk) == "sent")


# --- the owner's choices ------------------------------------------------------------------------


def set_alert_settings(
    device: Device, *, sms: bool, email: bool, push: bool, credit_threshold: int | None
) -> AlertSettings:
    """Create or change how the card's alerts reach its owner (the caller has checked that
    the customer owns ``device``). ``credit_threshold``: minor units, None for the default."""
    chosen, _created = AlertSettings.objects.update_or_create(
        device=device,
        defaults={"sms": sms, "email": email, "push": push, "credit_threshold": credit_threshold},
    )
    return chosen


def effective_credit_threshold(chosen: AlertSettings) -> int:
    """The credit threshold in force: the owner's, else 100 MB at the current tariff."""
    from simtopup.catalog.pricing import tariff_per_mb

    if chosen.credit_threshold is not None:
        return chosen.credit_threshold
    return DEFAULT_CREDIT_MB * tariff_per_mb()


def alert_settings_of(device: Device) -> AlertSettings:
    """The card's choices (unsaved defaults when none were made)."""
    return AlertSettings.objects.filter(device=device).first() or AlertSettings(device=device)


# --- Web Push subscriptions (the app API and the website's service worker) -------------------


def subscribe_push(customer_id: int, endpoint: str, p256dh: str, auth: str) -> PushSubscription:
    """Store (or move to this customer) the subscription of one installed app."""
    from django.utils.translation import gettext_lazy as _

    from simtopup.core.errors import DomainError, FieldError
    from simtopup.notifications import push

    if not push.endpoint_allowed(endpoint):
        raise DomainError(
            "invalid_endpoint",
            _("This push endpoint cannot be used."),
            422,
            [FieldError("endpoint", "invalid_endpoint", _("Use the push service's https URL."))],
        )
    sub, _created = PushSubscription.objects.update_or_create(
        endpoint=endpoint, defaults={"customer_id": customer_id, "p256dh": p256dh, "auth": auth}
    )
    return sub


def unsubscribe_push(customer_id: int, *, pk: int | None = None, endpoint: str = "") -> bool:
    """Forget one of the customer's subscriptions (by id or endpoint); False if none."""
    rows = PushSubscription.objects.filter(customer_id=customer_id)
    rows = rows.filter(pk=pk) if pk is not None else rows.filter(endpoint=endpoint)
    deleted, _rows = rows.delete()
    return bool(deleted)
