"""Adapters to whatever enforces quota on the network.

Protocol: ``apply(order) -> Grant``, idempotent on the order id — calling it twice for one
order must not grant twice upstream. Capability flag ``synchronous``: True when the grant can
be recorded inside the order's own transaction (the built-in quota authority); False for
upstream wholesale APIs, which the worker calls outside any transaction, with retries.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Protocol

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.module_loading import import_string


# What an adapter reads of an order: the network sits below the sales (orders, payments,
# usage call it), so it names only the fields it needs instead of importing the Order model.
class GrantedPlan(Protocol):
    @property
    def code(self) -> str: ...
    @property
    def data_bytes(self) -> int: ...
    @property
    def validity_hours(self) -> int: ...


class GrantedDevice(Protocol):
    @property
    def iccid(self) -> str | None: ...


class Order(Protocol):
    """An order to grant (``simtopup.orders.models.Order`` is one)."""

    @property
    def pk(self) -> int: ...
    @property
    def plan(self) -> GrantedPlan: ...
    @property
    def device(self) -> GrantedDevice: ...


@dataclass(frozen=True)
class Grant:
    granted_bytes: int
    starts_at: datetime
    expires_at: datetime
    external_ref: str = ""


class AdapterError(Exception):
    """The network could not apply the order now (retryable unless ``permanent``)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class NetworkAdapter(Protocol):
    synchronous: bool

    def apply(self, order: Order) -> Grant: ...


def bundle_window(order: Order, now: datetime | None = None) -> Grant:
    now = now or timezone.now()
    plan = order.plan
    return Grant(plan.data_bytes, now, now + timedelta(hours=plan.validity_hours))


class BuiltinAdapter:
    """simtopup is the quota authority: the grant is the bundle row, written by the caller."""

    synchronous = True

    def apply(self, order: Order) -> Grant:
        return bundle_window(order)


class UpstreamAdapter:
    """An upstream wholesale eSIM API reached over HTTP (JSON).

    ``POST {SIMTOPUP_UPSTREAM_URL}/orders`` with ``{"order_id", "iccid", "plan", "data_bytes",
    "validity_hours"}`` and header ``Idempotency-Key: simtopup-order-<id>``; the upstream
    answers ``{"id", "starts_at", "expires_at", "data_bytes"}``. Slow, as real ones are.
    """

    synchronous = False

    def __init__(self, base_url: str | None = None, timeout: float | None = None) -> None:
        self.base_url = (base_url or settings.UPSTREAM_URL).rstrip("/")
        self.timeout = timeout or settings.UPSTREAM_TIMEOUT_SECONDS

    def apply(self, order: Order) -> Grant:
        body = json.dumps(
            {
                "order_id": order.pk,
                "iccid": order.device.iccid,
                "plan": order.plan.code,
                "data_bytes": order.plan.data_bytes,
                "validity_hours": order.plan.validity_hours,
            }
        ).encode()
        request = urllib.request.Request(  # noqa: S310 - operator-configured URL
            f"{self.base_url}/orders",
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": f"simtopup-order-{order.pk}",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                answer = json.load(response)
        except urllib.error.HTTPError as exc:
            raise AdapterError(
                f"upstream answered {exc.code}", permanent=400 <= exc.code < 500 and exc.code != 429
            ) from exc
        except (OSError, ValueError) as exc:
            raise AdapterError(f"upstream unreachable: {exc}") from exc
        starts = parse_datetime(str(answer.get("starts_at", "")))
        expires = parse_datetime(str(answer.get("expires_at", "")))
        if starts is None or expires is None or expires <= starts:
            raise AdapterError("upstream answered without a valid validity window")
        return Grant(
            int(answer.get("data_bytes") or order.plan.data_bytes),
            starts,
            expires,
            str(answer.get("id", "")),
        )


@cache
def _adapter_class(path: str) -> type:
    if path == "builtin":
        return BuiltinAdapter
    if path == "upstream":
        return UpstreamAdapter
    return import_string(path)


def builtin_adapter_configured() -> bool:
    return _adapter_class(settings.NETWORK_ADAPTER) is BuiltinAdapter


def get_adapter() -> NetworkAdapter:
    return _adapter_class(settings.NETWORK_ADAPTER)()
