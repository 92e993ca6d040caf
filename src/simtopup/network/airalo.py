"""Airalo's Partner API v2 as a wholesale network: top-ups through the official ``airalo-sdk``.

The SDK's base URL is a constant (``ApiConstants.PRODUCTION_URL``); :class:`_Config` answers
``SIMTOPUP_AIRALO_URL`` instead, so the sandbox or a test server is one setting. The token
(``POST token``, client credentials) and the top-up (``POST orders/topups``, signed with
``airalo-signature``) are the SDK's own calls. The reads the SDK has no call for, or caches for
minutes (the order list by our reference, a card's usage, every page of the packages), go
through the SDK's HTTP client with the same token, so the status and ``Retry-After`` of each
answer are ours to read.

Airalo has no idempotency key. Each top-up carries our reference as its ``description``
(``simtopup-order-<id>``); before any attempt after the first, the order list is searched for
it (``GET orders?filter[description]=…``): a top-up an earlier attempt made (its answer lost to
a timeout or a crash) is taken, not bought twice.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from hashlib import sha256
from typing import Any
from urllib.parse import quote, urlencode

from airalo.config import Config
from airalo.exceptions.airalo_exception import AiraloException, ValidationError
from airalo.helpers.cached import Cached
from airalo.helpers.signature import Signature
from airalo.resources.http_resource import HttpResource
from airalo.services.oauth_service import OAuthService
from airalo.services.topup_service import TopupService
from django.conf import settings
from django.utils import timezone

from simtopup.core.money import exponent
from simtopup.network.adapters import AdapterError, Grant, Order, linked_package

logger = logging.getLogger(__name__)

PROVIDER = "airalo"
MB = 1024 * 1024

# Airalo's business error codes (their "Error handling" page, HTTP 422) → ours, and whether
# trying again later can help. Their insufficient credit is the operator's Airalo balance: it
# can be refilled, so the order waits through the backoff before it is refunded.
ERRORS: dict[int, tuple[str, bool]] = {
    11: ("upstream_insufficient_credit", False),
    13: ("upstream_maintenance", False),
    14: ("invalid_iccid", True),
    23: ("topup_disabled", True),
    33: ("out_of_stock", True),
    34: ("out_of_stock", True),
    43: ("upstream_refused", True),
    53: ("upstream_unavailable", False),
    73: ("iccid_recycled", True),
}


def reference(order_id: int) -> str:
    return f"simtopup-order-{order_id}"


class _Config(Config):
    """The SDK's configuration with our base URL instead of its constant."""

    def get_url(self) -> str:
        url = str(self._data.get("base_url") or settings.AIRALO_URL)
        return url if url.endswith("/") else url + "/"


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    retry_after: float | None


@dataclass(frozen=True)
class Usage:
    """A card's data now as Airalo reports it (MB, converted to bytes)."""

    used_bytes: int
    total_bytes: int
    remaining_bytes: int
    status: str
    unlimited: bool


def retry_after(headers: dict[str, str]) -> float | None:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(float(value), 0.0)
            except ValueError:
                return None
    return None


def airalo_time(text: object) -> datetime | None:
    """Airalo writes ``2024-05-01 10:20:30`` (UTC)."""
    try:
        value = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def minor(amount: object, currency: str) -> int | None:
    """A price Airalo writes as a JSON number, in minor units (rounded up: never undercharge)."""
    try:
        value = Decimal(str(amount)) * (10 ** exponent(currency))
    except InvalidOperation:
        return None
    return math.ceil(value) if value.is_finite() else None


class Client:
    """One authenticated session with Airalo (the SDK's token, its HTTP client)."""

    def __init__(self) -> None:
        if not (settings.AIRALO_CLIENT_ID and settings.AIRALO_CLIENT_SECRET):
            raise AdapterError("SIMTOPUP_AIRALO_CLIENT_ID / _SECRET are not set", permanent=False)
        self.timeout = settings.UPSTREAM_TIMEOUT_SECONDS
        self.config = _Config(
            {
                "client_id": settings.AIRALO_CLIENT_ID,
                "client_secret": settings.AIRALO_CLIENT_SECRET,
                "base_url": settings.AIRALO_URL,
            }
        )
        self.base_url = self.config.get_url()
        # The SDK caches the token in files keyed by the credentials only: keep them in our
        # data directory, one directory per base URL (a sandbox token is no production one).
        Cached._cache_path = (
            settings.DATA_DIR / "airalo" / sha256(self.base_url.encode()).hexdigest()[:16]
        )
        Cached._cache_path.mkdir(parents=True, exist_ok=True)
        self.http = HttpResource(self.config)
        self.signature = Signature(settings.AIRALO_CLIENT_SECRET)
        try:
            self.token = OAuthService(self.config, self.http, self.signature).get_access_token()
        except AiraloException as exc:
            raise AdapterError(f"airalo token: {exc}") from exc
        if not self.token:
            raise AdapterError("airalo token: none issued")

    def forget_token(self) -> None:
        Cached.clear_cache()

    def get(self, path: str, query: dict[str, str] | None = None) -> Answer:
        url = self.base_url + path + (("?" + urlencode(query)) if query else "")
        self.http.set_timeout(self.timeout)
        self.http.set_headers(
            {"Accept": "application/json", "Authorization": f"Bearer {self.token}"}
        )
        try:
            text = self.http.get(url)
        except AiraloException as exc:
            raise AdapterError(f"airalo unreachable: {exc}") from exc
        return self._answer(text)

    def _answer(self, text: object) -> Answer:
        try:
            body = json.loads(str(text)) if text else None
        except ValueError:
            body = None
        return Answer(self.http.code, body, retry_after(self.http.response_headers))

    def topup(self, package_id: str, iccid: str, description: str) -> dict[str, Any]:
        """``POST orders/topups`` through the SDK; our errors for theirs."""
        self.http.set_timeout(self.timeout)
        self.http.code, self.http.response_headers = 0, {}
        service = TopupService(self.config, self.http, self.signature, str(self.token))
        try:
            answer = service.create_topup(
                {"package_id": package_id, "iccid": iccid, "description": description}
            )
        except ValidationError as exc:  # the SDK's own check of the ICCID's length
            raise AdapterError(str(exc), permanent=True, code="invalid_iccid") from exc
        except AiraloException as exc:
            if not self.http.code:  # no answer: a timeout, a refused connection
                raise AdapterError(f"airalo unreachable: {exc}") from exc
            text = str(exc).partition("response: ")[2]
            raise self.refusal(self._answer(text)) from exc
        if not isinstance(answer, dict) or not isinstance(answer.get("data"), dict):
            raise AdapterError("airalo answered a top-up without data")
        return answer["data"]

    def refusal(self, answer: Answer) -> AdapterError:
        status, body = answer.status, answer.body
        if status == 429:
            return AdapterError(
                "airalo answered 429", code="upstream_rate_limited", retry_after=answer.retry_after
            )
        if status == 401:
            self.forget_token()
            return AdapterError("airalo answered 401 (token refused)")
        if status == 422 and isinstance(body, dict) and isinstance(body.get("code"), int):
            code, permanent = ERRORS.get(body["code"], ("upstream_refused", True))
            reason = str(body.get("reason") or "")[:200]
            return AdapterError(
                f"airalo refused ({body['code']}): {reason}",
                permanent=permanent,
                code=code,
                retry_after=answer.retry_after,
            )
        if status == 422:  # a refused parameter: {"data": {field: message}, "meta": …}
            fields = body.get("data") if isinstance(body, dict) else None
            code = "invalid_iccid" if isinstance(fields, dict) and "iccid" in fields else ""
            return AdapterError(
                f"airalo refused the request: {json.dumps(fields)[:200]}",
                permanent=True,
                code=code or "upstream_refused",
            )
        if 400 <= status < 500:
            return AdapterError(
                f"airalo answered {status}", permanent=True, code="upstream_refused"
            )
        return AdapterError(f"airalo answered {status}", retry_after=answer.retry_after)

    def find_topup(self, description: str) -> dict[str, Any] | None:
        """The top-up an earlier attempt made with this reference, if Airalo has it."""
        answer = self.get("orders", {"filter[description]": description, "limit": "10"})
        if answer.status != 200:
            raise self.refusal(answer)
        rows = answer.body.get("data") if isinstance(answer.body, dict) else None
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, dict) and row.get("description") == description:
                return row
        return None

    def usage(self, iccid: str) -> Usage:
        answer = self.get(f"sims/{quote(iccid, safe='')}/usage")
        if answer.status != 200:
            raise self.refusal(answer)
        data = answer.body.get("data") if isinstance(answer.body, dict) else None
        if not isinstance(data, dict):
            raise AdapterError("airalo answered usage without data")
        total = int(data.get("total") or 0) * MB
        remaining = int(data.get("remaining") or 0) * MB
        return Usage(
            max(total - remaining, 0),
            total,
            remaining,
            str(data.get("status") or ""),
            bool(data.get("is_unlimited")),
        )

    def packages(self) -> list[dict[str, Any]]:
        """Every top-up package Airalo lists, flat: ``{id, title, amount (MB), day, net_price,
        price, currency}`` (every page of ``GET packages?include=topup``)."""
        found: list[dict[str, Any]] = []
        page, last = 1, 1
        while page <= last:
            answer = self.get("packages", {"include": "topup", "limit": "100", "page": str(page)})
            if answer.status != 200 or not isinstance(answer.body, dict):
                raise self.refusal(answer)
            meta = answer.body.get("meta") or {}
            currency = str(meta.get("currency") or "USD").upper()
            for destination in answer.body.get("data") or []:
                for operator in destination.get("operators") or []:
                    for package in operator.get("packages") or []:
                        if package.get("type") == "topup" and not package.get("is_unlimited"):
                            found.append({**package, "currency": currency})
            try:
                last = int(meta.get("last_page") or page)
            except (TypeError, ValueError):
                last = page
            page += 1
        return found


def grant_of(order: Order, topup: dict[str, Any]) -> Grant:
    """Our bundle for Airalo's top-up: the plan's size and validity from when Airalo made it."""
    starts = airalo_time(topup.get("created_at")) or timezone.now()
    plan = order.plan
    return Grant(
        plan.data_bytes,
        starts,
        starts + timedelta(hours=plan.validity_hours),
        str(topup.get("code") or topup.get("id") or ""),
    )


class AiraloAdapter:
    """``SIMTOPUP_NETWORK_ADAPTER=airalo``: a top-up of a plan linked to an Airalo package
    (``simtopup network sync-catalogue``) is Airalo's top-up of that package to the card."""

    synchronous = False
    provider = PROVIDER
    # The least time between two usage reads of one card (Airalo: 10 / minute / ICCID).
    usage_spacing_seconds = 6.0

    def apply(self, order: Order) -> Grant:
        from simtopup.network.models import UpstreamCard

        package_id = linked_package(PROVIDER, "Airalo package", order)
        iccid = order.device.iccid or ""
        client = Client()
        ours = reference(order.pk)
        earlier = client.find_topup(ours) if order.attempts > 1 else None
        topup = earlier or client.topup(package_id, iccid, ours)
        if earlier:
            logger.info(
                "order %s: Airalo top-up %s found by reference", order.pk, earlier.get("id")
            )
        UpstreamCard.objects.get_or_create(
            device_id=order.device.pk,
            defaults={"provider": PROVIDER, "next_read_at": timezone.now()},
        )
        return grant_of(order, topup)

    def read_usage(self, iccid: str) -> Usage:
        return Client().usage(iccid)

    def packages(self) -> list[dict[str, Any]]:
        return Client().packages()


def signature_valid(body: bytes, header: str) -> bool:
    """A webhook's ``airalo-signature``: checked by the SDK's own Signature helper (HMAC-SHA512
    of the body as compact JSON, with the client secret)."""
    secret = settings.AIRALO_CLIENT_SECRET
    if not secret or not header:
        return False
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return False
    return bool(Signature(secret).check_signature(header.strip(), text))
