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
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.conf import settings
from django.db.models import Min, Sum
from django.utils import timezone

from simtopup.accounts.models import AppToken
from simtopup.accounts.tokens import live_token_sql
from simtopup.catalog.models import PaygTariff, Plan
from simtopup.core.prepared import aware, column, fetch, moment, table
from simtopup.devices.models import RECHARGEABLE, Device, mask
from simtopup.ledger.models import Account
from simtopup.usage.models import Bundle

# Expired bundles stay listed on the balance for this long.
EXPIRED_BUNDLES_SHOWN = timedelta(days=30)


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
def _balance_sql(whose: str) -> str:
    """The balance statement. ``whose``: ``owner`` — the card's holder is the customer id
    given; ``token`` — the holder of the live app token whose hash is given (the app's poll
    checks its token in the same statement, accounts/tokens.py's condition), and the token's
    ``last_used_at`` is selected last."""
    d, c, b, a, p, t = "d", "c", "b", "a", "p", "t"
    if whose == "owner":
        token_column, token_join = "", ""
        holder = f"{d}.{column(Device, 'owner')} = %s"
    elif whose == "token":
        token_column = f", {t}.{column(AppToken, 'last_used_at')}"
        token_join = (
            f"JOIN {table(AppToken)} {t} ON {t}.{column(AppToken, 'customer')} = "
            f"{d}.{column(Device, 'owner')} "
        )
        holder = live_token_sql(t)
    else:
        raise ValueError(whose)
    return (
        f"SELECT {d}.{column(Device, 'id')}, {d}.{column(Device, 'iccid')}, "
        f"{d}.{column(Device, 'eid')}, {d}.{column(Device, 'imei')}, "
        f"{d}.{column(Device, 'serial')}, {d}.{column(Device, 'payg')}, "
        f"{c}.{column(Account, 'balance')}, {c}.{column(Account, 'unit')}, "
        f"{b}.{column(Bundle, 'id')}, {p}.{column(Plan, 'code')}, "
        f"{b}.{column(Bundle, 'granted_bytes')}, {b}.{column(Bundle, 'starts_at')}, "
        f"{b}.{column(Bundle, 'expires_at')}, {a}.{column(Account, 'balance')}{token_column} "
        f"FROM {table(Device)} {d} "
        f"JOIN {table(Account)} {c} ON {c}.{column(Account, 'id')} = "
        f"{d}.{column(Device, 'credit_account')} "
        f"{token_join}"
        f"LEFT JOIN {table(Bundle)} {b} ON {b}.{column(Bundle, 'device')} = {d}.{column(Device, 'id')}"
        f" AND {b}.{column(Bundle, 'expires_at')} > %s "
        f"LEFT JOIN {table(Account)} {a} ON {a}.{column(Account, 'id')} = "
        f"{b}.{column(Bundle, 'account')} "
        f"LEFT JOIN {table(Plan)} {p} ON {p}.{column(Plan, 'id')} = {b}.{column(Bundle, 'plan')} "
        f"WHERE {d}.{column(Device, 'id')} = %s AND {holder} "
        f"ORDER BY {b}.{column(Bundle, 'expires_at')}, {b}.{column(Bundle, 'id')}"
    )


def device_balance(
    owner_id: int, device_id: int, now: datetime | None = None
) -> BalanceRead | None:
    """The balance of card ``device_id`` if ``owner_id`` holds it (None otherwise): the data
    valid now, the bundles active, upcoming, used up or expired in the last 30 days (soonest
    expiring first) and the credit, from one statement."""
    if not 0 < device_id < 2**63:
        # No row has such an id (the ORM answers "none" for it too); the database driver
        # would refuse the parameter instead, a 500 for a mistyped URL.
        return None
    now = now or timezone.now()
    rows = fetch(
        "simtopup_device_balance",
        _balance_sql("owner"),
        [moment(now - EXPIRED_BUNDLES_SHOWN), device_id, owner_id],
    )
    return _balance(rows, now) if rows else None


def device_balance_by_token(
    hashed_token: str, device_id: int, now: datetime | None = None
) -> tuple[BalanceRead, datetime | None] | None:
    """:func:`device_balance` of the card ``device_id`` for the holder of the live app token
    with this hash (accounts.tokens.token_hash), with the token's ``last_used_at``; None when
    the token is not live, the card is not its holder's or there is no such card (the
    caller finds out which the usual way). The same statement with the token check in it."""
    if not 0 < device_id < 2**63:
        return None
    now = now or timezone.now()
    rows = fetch(
        "simtopup_device_balance_by_token",
        _balance_sql("token"),
        [moment(now - EXPIRED_BUNDLES_SHOWN), device_id, hashed_token],
    )
    if not rows:
        return None
    last_used = rows[0][-1]
    return _balance([row[:-1] for row in rows], now), None if last_used is None else aware(
        last_used
    )


def _balance(rows: list[tuple[Any, ...]], now: datetime) -> BalanceRead:
    pk, iccid, eid, imei, serial, payg, credit, currency = rows[0][:8]
    identifier = iccid or eid or imei or serial or f"device {pk}"
    bundles: list[BundleRead] = []
    remaining = 0
    for *_device, bundle_id, plan, granted, starts, expires, balance in rows:
        if bundle_id is None:
            continue  # the LEFT JOIN's row of a card without bundles
        starts_at, expires_at = aware(starts), aware(expires)
        state = bundle_state(starts_at, expires_at, balance, now)
        left = max(balance, 0) if state != "expired" else 0
        if state == "active":
            remaining += left
        bundles.append(BundleRead(plan, granted, left, starts_at, expires_at, state))
    return BalanceRead(mask(identifier), remaining, bundles, credit, currency, bool(payg))


def remaining_by_device(device_ids: list[int], now: datetime | None = None) -> dict[int, int]:
    """The data valid now of each of these cards (0 for none), in one statement: a list of
    cards shows every card's remaining data without a query per card."""
    return {pk: left for pk, (left, _ends) in active_by_device(device_ids, now).items()}


def active_by_device(
    device_ids: list[int], now: datetime | None = None
) -> dict[int, tuple[int, datetime | None]]:
    """Each card's data valid now and the soonest end of its bundles holding it (0, None
    when none), in one statement."""
    now = now or timezone.now()
    rows = (
        Bundle.objects.filter(
            device_id__in=device_ids, starts_at__lte=now, expires_at__gt=now, account__balance__gt=0
        )
        .values_list("device_id")
        .annotate(left=Sum("account__balance"), ends=Min("expires_at"))
        .order_by()
    )
    found = {device_id: (int(left), aware(ends)) for device_id, left, ends in rows}
    return {device_id: found.get(device_id, (0, None)) for device_id in device_ids}


@cache
def _authorization_sql(key: str) -> str:
    d, c, b, a, t = "d", "c", "b", "a", "t"
    return (
        f"SELECT {d}.{column(Device, 'status')}, {d}.{column(Device, 'payg')}, "
        f"{c}.{column(Account, 'balance')}, "
        f"(SELECT SUM({a}.{column(Account, 'balance')}) FROM {table(Bundle)} {b} "
        f"JOIN {table(Account)} {a} ON {a}.{column(Account, 'id')} = {b}.{column(Bundle, 'account')}"
        f" WHERE {b}.{column(Bundle, 'device')} = {d}.{column(Device, 'id')}"
        f" AND {b}.{column(Bundle, 'starts_at')} <= %s AND {b}.{column(Bundle, 'expires_at')} > %s"
        f" AND {a}.{column(Account, 'balance')} > 0), "
        f"(SELECT {t}.{column(PaygTariff, 'price_per_mb')} FROM {table(PaygTariff)} {t}"
        f" WHERE {t}.{column(PaygTariff, 'effective_from')} <= %s"
        f" ORDER BY {t}.{column(PaygTariff, 'effective_from')} DESC, {t}.{column(PaygTariff, 'id')}"
        " DESC LIMIT 1) "
        f"FROM {table(Device)} {d} "
        f"JOIN {table(Account)} {c} ON {c}.{column(Account, 'id')} = "
        f"{d}.{column(Device, 'credit_account')} "
        f"WHERE {d}.{column(Device, key)} = %s"
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
    at = moment(now)
    rows = fetch(f"simtopup_authorization_by_{key}", _authorization_sql(key), [at, at, at, value])
    if not rows:
        return None
    status, payg, credit, bundle_bytes, tariff = rows[0]
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
