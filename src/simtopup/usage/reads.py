"""The real-time reads customers and the network poll: a card's balance and the policy
server's authorization check, one SQL statement each.

These run on every poll of the app and on every data session the network opens, so they
skip the ORM: compiling a queryset costs more CPU than PostgreSQL spends answering it. Each
is a fixed statement over the same tables the ORM models map (table and column names come
from the models' metadata), with its parameters adapted as the ORM would adapt them, so it
answers the same on SQLite and PostgreSQL. tests/test_reads.py holds them equal to the ORM
computation they replace on varied data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from simtopup.catalog.models import PaygTariff, Plan
from simtopup.devices.models import RECHARGEABLE, Device, mask
from simtopup.ledger.models import Account
from simtopup.usage.models import Bundle

# Expired bundles stay listed on the balance for this long.
EXPIRED_BUNDLES_SHOWN = timedelta(days=30)


def _table(model: type) -> str:
    return connection.ops.quote_name(model._meta.db_table)  # type: ignore[attr-defined]


def _col(model: type, field: str) -> str:
    column = model._meta.get_field(field).column  # type: ignore[attr-defined]
    return connection.ops.quote_name(column)


def _param(moment: datetime) -> Any:
    """A time as the ORM would pass it (naive UTC text on SQLite, aware on PostgreSQL)."""
    return connection.ops.adapt_datetimefield_value(moment)


def _moment(value: object) -> datetime:
    """A selected time column as an aware UTC datetime, whichever backend read it."""
    if isinstance(value, str):
        parsed = parse_datetime(value)
        assert parsed is not None, value
        value = parsed
    assert isinstance(value, datetime), value
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class BundleRead:
    plan: str
    granted_bytes: int
    remaining_bytes: int
    starts_at: datetime
    expires_at: datetime
    status: str  # active, upcoming, expired or used_up


@dataclass(frozen=True, slots=True)
class BalanceRead:
    device: str  # the masked identifier
    remaining_bytes: int
    bundles: list[BundleRead]
    credit: int  # minor units
    currency: str
    payg: bool


def bundle_state(starts_at: datetime, expires_at: datetime, balance: int, now: datetime) -> str:
    """A bundle's status as the customer sees it."""
    if expires_at <= now:
        return "expired"
    if starts_at > now:
        return "upcoming"
    if balance <= 0:
        return "used_up"
    return "active"


@cache
def _balance_sql() -> str:
    d, c, b, a, p = "d", "c", "b", "a", "p"
    return (
        f"SELECT {d}.{_col(Device, 'id')}, {d}.{_col(Device, 'iccid')}, "
        f"{d}.{_col(Device, 'eid')}, {d}.{_col(Device, 'imei')}, "
        f"{d}.{_col(Device, 'serial')}, {d}.{_col(Device, 'payg')}, "
        f"{c}.{_col(Account, 'balance')}, {c}.{_col(Account, 'unit')}, "
        f"{b}.{_col(Bundle, 'id')}, {p}.{_col(Plan, 'code')}, "
        f"{b}.{_col(Bundle, 'granted_bytes')}, {b}.{_col(Bundle, 'starts_at')}, "
        f"{b}.{_col(Bundle, 'expires_at')}, {a}.{_col(Account, 'balance')} "
        f"FROM {_table(Device)} {d} "
        f"JOIN {_table(Account)} {c} ON {c}.{_col(Account, 'id')} = "
        f"{d}.{_col(Device, 'credit_account')} "
        f"LEFT JOIN {_table(Bundle)} {b} ON {b}.{_col(Bundle, 'device')} = {d}.{_col(Device, 'id')}"
        f" AND {b}.{_col(Bundle, 'expires_at')} > %s "
        f"LEFT JOIN {_table(Account)} {a} ON {a}.{_col(Account, 'id')} = "
        f"{b}.{_col(Bundle, 'account')} "
        f"LEFT JOIN {_table(Plan)} {p} ON {p}.{_col(Plan, 'id')} = {b}.{_col(Bundle, 'plan')} "
        f"WHERE {d}.{_col(Device, 'id')} = %s AND {d}.{_col(Device, 'owner')} = %s "
        f"ORDER BY {b}.{_col(Bundle, 'expires_at')}, {b}.{_col(Bundle, 'id')}"
    )


def device_balance(
    owner_id: int, device_id: int, now: datetime | None = None
) -> BalanceRead | None:
    """The balance of card ``device_id`` if ``owner_id`` holds it (None otherwise): the data
    valid now, the bundles active, upcoming, used up or expired in the last 30 days (soonest
    expiring first) and the credit, from one statement."""
    now = now or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(_balance_sql(), [_param(now - EXPIRED_BUNDLES_SHOWN), device_id, owner_id])
        rows = cursor.fetchall()
    if not rows:
        return None
    pk, iccid, eid, imei, serial, payg, credit, currency = rows[0][:8]
    identifier = iccid or eid or imei or serial or f"device {pk}"
    bundles: list[BundleRead] = []
    remaining = 0
    for *_device, bundle_id, plan, granted, starts, expires, balance in rows:
        if bundle_id is None:
            continue  # the LEFT JOIN's row of a card without bundles
        starts_at, expires_at = _moment(starts), _moment(expires)
        state = bundle_state(starts_at, expires_at, balance, now)
        left = max(balance, 0) if state != "expired" else 0
        if state == "active":
            remaining += left
        bundles.append(BundleRead(plan, granted, left, starts_at, expires_at, state))
    return BalanceRead(mask(identifier), remaining, bundles, credit, currency, bool(payg))


@cache
def _authorization_sql(key: str) -> str:
    d, c, b, a, t = "d", "c", "b", "a", "t"
    return (
        f"SELECT {d}.{_col(Device, 'status')}, {d}.{_col(Device, 'payg')}, "
        f"{c}.{_col(Account, 'balance')}, "
        f"(SELECT SUM({a}.{_col(Account, 'balance')}) FROM {_table(Bundle)} {b} "
        f"JOIN {_table(Account)} {a} ON {a}.{_col(Account, 'id')} = {b}.{_col(Bundle, 'account')}"
        f" WHERE {b}.{_col(Bundle, 'device')} = {d}.{_col(Device, 'id')}"
        f" AND {b}.{_col(Bundle, 'starts_at')} <= %s AND {b}.{_col(Bundle, 'expires_at')} > %s"
        f" AND {a}.{_col(Account, 'balance')} > 0), "
        f"(SELECT {t}.{_col(PaygTariff, 'price_per_mb')} FROM {_table(PaygTariff)} {t}"
        f" WHERE {t}.{_col(PaygTariff, 'effective_from')} <= %s"
        f" ORDER BY {t}.{_col(PaygTariff, 'effective_from')} DESC, {t}.{_col(PaygTariff, 'id')}"
        " DESC LIMIT 1) "
        f"FROM {_table(Device)} {d} "
        f"JOIN {_table(Account)} {c} ON {c}.{_col(Account, 'id')} = "
        f"{d}.{_col(Device, 'credit_account')} "
        f"WHERE {d}.{_col(Device, key)} = %s"
    )


def authorization_by_iccid(iccid: str, now: datetime | None = None) -> dict[str, object] | None:
    """The authorization of the device with this (normalised) ICCID; None if there is none."""
    return _authorization("iccid", iccid, now)


def authorization_of(device_id: int, now: datetime | None = None) -> dict[str, object] | None:
    """The authorization of the device with this primary key; None if there is none."""
    return _authorization("id", device_id, now)


def _authorization(key: str, value: int | str, now: datetime | None) -> dict[str, object] | None:
    """What the policy server asks before letting a device use data (None: no such ICCID):
    ``allowed`` with the remaining bundle bytes valid now, and why — ``bundle``,
    ``payg_credit`` (a pay-per-use card whose credit buys at least one MB at the tariff in
    force), ``no_data``, ``insufficient_balance`` or ``device_not_rechargeable`` (suspended
    or retired). One statement: the device, its credit, its bundle data and the tariff."""
    now = now or timezone.now()
    at = _param(now)
    with connection.cursor() as cursor:
        cursor.execute(_authorization_sql(key), [at, at, at, value])
        row = cursor.fetchone()
    if row is None:
        return None
    status, payg, credit, bundle_bytes, tariff = row
    remaining = int(bundle_bytes or 0)
    if status not in RECHARGEABLE:
        return {"allowed": False, "remaining_bytes": remaining, "reason": "device_not_rechargeable"}
    if remaining > 0:
        return {"allowed": True, "remaining_bytes": remaining, "reason": "bundle"}
    if payg:
        if credit >= (settings.DEFAULT_PAYG_TARIFF_PER_MB if tariff is None else tariff):
            return {"allowed": True, "remaining_bytes": 0, "reason": "payg_credit"}
        return {"allowed": False, "remaining_bytes": 0, "reason": "insufficient_balance"}
    return {"allowed": False, "remaining_bytes": 0, "reason": "no_data"}
