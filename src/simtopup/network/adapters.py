"""Adapters to whatever enforces quota on the network.

Protocol: ``apply(order) -> Grant``, idempotent on the order id — calling it twice for one
order must not grant twice upstream. Capability flag ``synchronous``: True when the grant can
be recorded inside the order's own transaction (the built-in quota authority); False for
upstream wholesale APIs (``airalo``: network/airalo.py, ``esimgo``: network/esimgo.py), which the worker calls outside any
transaction, with retries. A wholesale provider without idempotency keys is made idempotent by
the adapter: it looks its earlier attempt up by our reference before trying again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Protocol

from django.conf import settings
from django.utils import timezone
from django.utils.module_loading import import_string


# What an adapter reads of an order: the network sits below the sales (orders, payments,
# usage call it), so it names only the fields it needs instead of importing the Order model.
class GrantedPlan(Protocol):
    @property
    def pk(self) -> int: ...
    @property
    def code(self) -> str: ...
    @property
    def data_bytes(self) -> int: ...
    @property
    def validity_hours(self) -> int: ...


class GrantedDevice(Protocol):
    @property
    def pk(self) -> int: ...
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
    @property
    def attempts(self) -> int:
        """This attempt's number: after the first, an earlier one may have reached upstream."""
        ...


@dataclass(frozen=True)
class Grant:
    granted_bytes: int
    starts_at: datetime
    expires_at: datetime
    external_ref: str = ""


class AdapterError(Exception):
    """The network could not apply the order now (retryable unless ``permanent``).

    ``code``: ours for the provider's refusal (the order's failure code if it fails);
    ``retry_after``: seconds the provider asked us to wait (429, maintenance)."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        code: str = "fulfilment_failed",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.code = code
        self.retry_after = retry_after


def linked_package(provider: str, what: str, order: Order) -> str:
    """The provider's package that the order's plan sells (linked by ``simtopup network
    sync-catalogue``). A plan linked to none is refused for good (``not_offered``): retrying
    cannot make the provider sell it."""
    from simtopup.network.models import UpstreamPackage

    package_id = (
        UpstreamPackage.objects.filter(provider=provider, plan_id=order.plan.pk)
        .values_list("package_id", flat=True)
        .first()
    )
    if package_id is None:
        raise AdapterError(
            f"plan {order.plan.code} is no {what}", permanent=True, code="not_offered"
        )
    return package_id


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


@cache
def _adapter_class(path: str) -> type:
    if path == "builtin":
        return BuiltinAdapter
    if path == "airalo":
        from simtopup.network.airalo import AiraloAdapter

        return AiraloAdapter
    if path == "esimgo":
        from simtopup.network.esimgo import EsimGoAdapter

        return EsimGoAdapter
    return import_string(path)


def builtin_adapter_configured() -> bool:
    return _adapter_class(settings.NETWORK_ADAPTER) is BuiltinAdapter


def get_adapter() -> NetworkAdapter:
    return _adapter_class(settings.NETWORK_ADAPTER)()
