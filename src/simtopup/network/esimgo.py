"""eSIM Go's API v2.4 as a wholesale network (``SIMTOPUP_NETWORK_ADAPTER=esimgo``).

Plain REST with the ``X-API-Key`` header. A top-up of a plan linked to an eSIM Go bundle
(``simtopup network sync-catalogue``) is ``POST orders`` with ``type: validate`` first (all the
checks, nothing charged; a refusal here costs nothing), then ``type: transaction`` with
``assign: true`` and the card's ICCID. eSIM Go answers with an ``orderReference``, recorded at
once (:class:`~simtopup.network.models.UpstreamOrder`); the bundle's assignment may then be
``processing`` for up to ten minutes: the order stays processing on our side (the attempt ends
with a retry in 30 s) until ``GET esims/{iccid}/bundles/{name}`` says ``queued`` or ``active``,
or eSIM Go's callback about the card arrives (api/upstream_webhooks.py).

eSIM Go has no idempotency key. Before any attempt after the first, the adapter looks for what
an earlier attempt made: our recorded order reference, or else an assignment of the same bundle
on the card made since the order was paid that no other order of ours has claimed (the answer
was lost: a timeout, a crash). Only when neither exists does it order again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from simtopup.network.adapters import AdapterError, Grant, Order, linked_package
from simtopup.network.airalo import Usage, retry_after

logger = logging.getLogger(__name__)

PROVIDER = "esimgo"
# How long an attempt waits before polling a bundle still ``processing`` again.
PROCESSING_POLL_SECONDS = 30.0
READY_STATES = frozenset({"queued", "active", "depleted"})
GONE_STATES = frozenset({"revoked", "lapsed"})

# eSIM Go refuses with a message, not a code: ours by what it says (first match wins).
# (code, final): a final refusal is refunded at once; the others wait through the backoff.
MESSAGES: list[tuple[tuple[str, ...], str, bool]] = [
    (("insufficient",), "upstream_insufficient_credit", False),
    (("recycled", "deactivated", "deleted", "terminated"), "iccid_recycled", True),
    (
        ("out of stock", "no stock", "not available", "unavailable", "no inventory"),
        "out_of_stock",
        True,
    ),
    (("iccid", "esim not found", "not compatible", "incompatible"), "invalid_iccid", True),
    (("bundle", "item"), "upstream_refused", True),
]


def reference_time(text: object) -> datetime | None:
    value = parse_datetime(str(text or ""))
    return value if value is None or value.tzinfo else timezone.make_aware(value)


def signature_valid(body: bytes, header: str, key: str) -> bool:
    """``X-Signature-SHA256``: HMAC-SHA256 of the raw body with the API key, base64 as their
    API reference writes it (hex, as one of their guides does, is accepted too)."""
    if not key or not header:
        return False
    digest = hmac.new(key.encode(), body, hashlib.sha256).digest()
    return hmac.compare_digest(header.strip(), base64.b64encode(digest).decode()) or (
        hmac.compare_digest(header.strip().lower(), digest.hex())
    )


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    retry_after: float | None


class Client:
    def __init__(self) -> None:
        if not settings.ESIMGO_API_KEY:
            raise AdapterError("SIMTOPUP_ESIMGO_API_KEY is not set")
        url = settings.ESIMGO_URL
        self.base_url = url if url.endswith("/") else url + "/"
        self.timeout = settings.UPSTREAM_TIMEOUT_SECONDS

    def call(self, method: str, path: str, body: Any = None) -> Answer:
        request = urllib.request.Request(  # noqa: S310 - operator-configured URL
            self.base_url + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={
                "X-API-Key": settings.ESIMGO_API_KEY,
                "Accept": "application/json",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                status, headers, raw = response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            status, headers, raw = exc.code, dict(exc.headers), exc.read()
        except (OSError, ValueError) as exc:
            raise AdapterError(f"esimgo unreachable: {exc}") from exc
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return Answer(status, parsed, retry_after(headers))

    def refusal(self, answer: Answer) -> AdapterError:
        status = answer.status
        if status == 429:
            return AdapterError(
                "esimgo answered 429", code="upstream_rate_limited", retry_after=answer.retry_after
            )
        if status in (401, 403):
            return AdapterError(f"esimgo answered {status} (API key refused)")
        message = ""
        if isinstance(answer.body, dict):
            message = str(answer.body.get("message") or answer.body.get("statusMessage") or "")
        if 400 <= status < 500:
            text = message.lower()
            for words, code, final in MESSAGES:
                if any(w in text for w in words):
                    return AdapterError(
                        f"esimgo refused: {message[:200]}", permanent=final, code=code
                    )
            return AdapterError(
                f"esimgo refused ({status}): {message[:200]}",
                permanent=True,
                code="upstream_refused",
            )
        return AdapterError(f"esimgo answered {status}", retry_after=answer.retry_after)

    def order(self, kind: str, bundle: str, iccid: str) -> dict[str, Any]:
        answer = self.call(
            "POST",
            "orders",
            {
                "type": kind,
                "assign": True,
                "order": [
                    {
                        "type": "bundle",
                        "quantity": 1,
                        "item": bundle,
                        "iccids": [iccid],
                        "allowReassign": False,
                    }
                ],
            },
        )
        if answer.status != 200 or not isinstance(answer.body, dict):
            raise self.refusal(answer)
        if answer.body.get("valid") is False or str(answer.body.get("status", "")).lower() in {
            "failed",
            "rejected",
        }:
            raise self.refusal(Answer(400, answer.body, None))
        return answer.body

    def assignments(self, iccid: str, bundle: str) -> list[dict[str, Any]]:
        """The card's assignments of ``bundle`` (``GET esims/{iccid}/bundles/{name}``)."""
        answer = self.call("GET", f"esims/{quote(iccid, safe='')}/bundles/{quote(bundle, safe='')}")
        if answer.status in (400, 404):  # the card has nothing from eSIM Go (or is not theirs)
            return []
        if answer.status != 200 or not isinstance(answer.body, dict):
            raise self.refusal(answer)
        rows = answer.body.get("assignments")
        return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []

    def usage(self, iccid: str) -> Usage:
        answer = self.call(
            "GET", f"esims/{quote(iccid, safe='')}/bundles?" + urlencode({"limit": 200})
        )
        if answer.status != 200 or not isinstance(answer.body, dict):
            raise self.refusal(answer)
        total = remaining = 0
        unlimited = False
        for bundle in answer.body.get("bundles") or []:
            for a in bundle.get("assignments") or []:
                if a.get("bundleState") in READY_STATES:
                    unlimited = unlimited or bool(a.get("unlimited"))
                    total += int(a.get("initialQuantity") or 0)
                    remaining += int(a.get("remainingQuantity") or 0)
        return Usage(max(total - remaining, 0), total, remaining, "", unlimited)

    def packages(self) -> list[dict[str, Any]]:
        """Every catalogue bundle, as the catalogue sync reads packages (``id``, ``title``,
        ``amount`` MB, ``day``, ``net_price``, ``currency``)."""
        found: list[dict[str, Any]] = []
        page, pages = 1, 1
        while page <= pages:
            answer = self.call("GET", "catalogue?" + urlencode({"page": page, "perPage": 100}))
            if answer.status != 200 or not isinstance(answer.body, dict):
                raise self.refusal(answer)
            for b in answer.body.get("bundles") or []:
                if not isinstance(b, dict) or b.get("unlimited"):
                    continue
                found.append(
                    {
                        "id": b.get("name"),
                        "title": b.get("description") or b.get("name"),
                        "amount": b.get("dataAmount"),
                        "day": b.get("duration"),
                        "net_price": b.get("price"),
                        "currency": str(b.get("currency") or "USD"),
                    }
                )
            try:
                pages = int(answer.body.get("pageCount") or page)
            except (TypeError, ValueError):
                pages = page
            page += 1
        return found


class EsimGoAdapter:
    """``SIMTOPUP_NETWORK_ADAPTER=esimgo`` (``SIMTOPUP_ESIMGO_URL``, ``_API_KEY``)."""

    synchronous = False
    provider = PROVIDER
    # The least time between two usage reads of one card (no published limit: be gentle).
    usage_spacing_seconds = 1.0

    def apply(self, order: Order) -> Grant:
        from simtopup.network.models import UpstreamCard, UpstreamOrder

        bundle = linked_package(PROVIDER, "eSIM Go bundle", order)
        iccid = order.device.iccid or ""
        client = Client()
        made = UpstreamOrder.objects.filter(order_id=order.pk).first()
        assignment = None
        if made is None and order.attempts > 1:
            assignment = self._unclaimed(client, iccid, bundle, order)
            if assignment is not None:
                made = self._record(order, str(assignment.get("assignmentReference")))
        if made is None:
            client.order("validate", bundle, iccid)
            answer = client.order("transaction", bundle, iccid)
            made = self._record(order, str(answer.get("orderReference") or ""))
        if assignment is None:
            assignment = self._assignment_of(client, iccid, bundle, made.reference)
        UpstreamCard.objects.get_or_create(
            device_id=order.device.pk,
            defaults={"provider": PROVIDER, "next_read_at": timezone.now()},
        )
        state = str(assignment.get("bundleState") or "processing") if assignment else "processing"
        if state in GONE_STATES:
            raise AdapterError(f"esimgo bundle {state}", permanent=True, code="upstream_refused")
        if state not in READY_STATES:
            raise AdapterError(
                f"esimgo bundle {state}",
                code="upstream_processing",
                retry_after=PROCESSING_POLL_SECONDS,
            )
        starts = reference_time(assignment.get("assignmentDateTime")) if assignment else None
        starts = starts or timezone.now()
        plan = order.plan
        return Grant(
            plan.data_bytes, starts, starts + timedelta(hours=plan.validity_hours), made.reference
        )

    @staticmethod
    def _record(order: Order, reference: str) -> Any:
        from simtopup.network.models import UpstreamOrder

        try:
            row, _ = UpstreamOrder.objects.get_or_create(
                order_id=order.pk, defaults={"provider": PROVIDER, "reference": reference}
            )
        except IntegrityError as exc:  # another order of ours already claimed it
            raise AdapterError(f"esimgo reference {reference} is another order's") from exc
        return row

    @staticmethod
    def _matches(row: dict[str, Any], reference: str) -> bool:
        ref = str(row.get("assignmentReference") or "")
        return ref == reference or ref.startswith(reference + "-")

    def _assignment_of(
        self, client: Client, iccid: str, bundle: str, reference: str
    ) -> dict[str, Any] | None:
        for row in client.assignments(iccid, bundle):
            if self._matches(row, reference):
                return row
        return None

    def _unclaimed(
        self, client: Client, iccid: str, bundle: str, order: Order
    ) -> dict[str, Any] | None:
        """An assignment of ``bundle`` on the card made since the order was paid that no
        other order of ours has claimed: what an attempt whose answer was lost made."""
        from simtopup.network.models import UpstreamOrder

        since = getattr(order, "paid_at", None)
        claimed = set(
            UpstreamOrder.objects.filter(provider=PROVIDER).values_list("reference", flat=True)
        )
        for row in client.assignments(iccid, bundle):
            ref = str(row.get("assignmentReference") or "")
            made_at = reference_time(row.get("assignmentDateTime"))
            if not ref or any(ref == c or ref.startswith(c + "-") for c in claimed):
                continue
            if since is not None and made_at is not None and made_at < since - timedelta(minutes=1):
                continue
            return row
        return None

    def read_usage(self, iccid: str) -> Usage:
        return Client().usage(iccid)

    def packages(self) -> list[dict[str, Any]]:
        return Client().packages()
