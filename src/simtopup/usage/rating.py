"""Rating network usage: drain bundles soonest-expiring first, then the card's credit per
started MB at the pay-per-use tariff; what neither covers is recorded as overage.

A batch is one transaction. The accounts it may draw on (bundles with data left, the credit
of pay-per-use cards) are locked first, in one global order (primary key); the overage
accounts the rating turned out to need are locked after them, again in primary-key order.
Every batch takes its locks in that order (and nothing else locks overage accounts), so two
batches touching the same devices in different orders queue instead of deadlocking. A record
id already rated is a duplicate and is never charged again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from django.db import IntegrityError
from django.utils import timezone

from simtopup.catalog.pricing import tariff_schedule
from simtopup.core.bulk import insert_rows
from simtopup.core.transactions import durable
from simtopup.devices.identifiers import normalise_digits
from simtopup.devices.models import RECHARGEABLE, Device
from simtopup.ledger.actions import Held, Leg, lock_balances, post_legs, system_account
from simtopup.ledger.models import BYTES, Account
from simtopup.usage.alerts import (
    bundle_alert,
    credit_alert,
    credit_crossings,
    credit_thresholds,
    raise_alerts,
    usage_crossings,
)
from simtopup.usage.autotopup import schedule_after_usage
from simtopup.usage.models import Alert, Bundle, UsageRecord
from simtopup.usage.reads import authorization_of

MB = 1024 * 1024


class Usage(Protocol):
    """A usage record as the network reports it (the API's validated records are these)."""

    @property
    def id(self) -> str: ...
    @property
    def iccid(self) -> str: ...
    @property
    def bytes(self) -> int: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def ended_at(self) -> datetime: ...


@dataclass(frozen=True)
class UsageIn:
    id: str
    iccid: str
    bytes: int
    started_at: datetime
    ended_at: datetime


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, str]] = field(default_factory=list)


def ingest(records: Sequence[Usage]) -> IngestResult:
    """Rate a batch exactly once per record id. Retries once if a concurrent batch inserted
    the same new record id between our check and our insert."""
    try:
        return _ingest(records)
    except IntegrityError:
        return _ingest(records)


@dataclass(slots=True)
class _Device:
    pk: int
    payg: bool
    status: str
    credit_account_id: int
    overage_account_id: int


@dataclass(slots=True)
class _Bundle:
    pk: int
    device_id: int
    account_id: int
    starts_at: datetime
    expires_at: datetime
    granted_bytes: int


USAGE_COLUMNS = [
    "record_id",
    "device_id",
    "bytes",
    "started_at",
    "ended_at",
    "bundle_bytes",
    "payg_bytes",
    "charged",
    "overage_bytes",
    "received_at",
]


def _ingest(records: Sequence[Usage]) -> IngestResult:
    # The hot path of the network API: plain values and tuples, no model instances. A
    # lock-conflict victim runs again from the start (core/transactions.py).
    keys = [normalise_digits(r.iccid) for r in records]
    return durable(lambda: _rate(records, keys))


def _rate(records: Sequence[Usage], keys: list[str]) -> IngestResult:
    """One batch in the caller's (durable) transaction."""
    result = IngestResult()
    iccids = set(keys)
    devices = {
        row[0]: _Device(*row[1:])
        for row in Device.objects.filter(iccid__any=iccids).values_list(
            "iccid", "pk", "payg", "status", "credit_account_id", "overage_account_id"
        )
    }
    # The first acceptable occurrence of an id is rated; later ones are duplicates. A
    # rejected record is not remembered, so the network can resend it corrected.
    seen: set[str] = set()
    known: list[tuple[Usage, _Device]] = []
    for r, key in zip(records, keys, strict=True):
        device = devices.get(key)
        if r.ended_at < r.started_at:
            result.rejected.append({"id": r.id, "code": "invalid_time_range"})
        elif device is None:
            result.rejected.append({"id": r.id, "code": "unknown_device"})
        elif r.id in seen:
            result.duplicates += 1
        else:
            seen.add(r.id)
            known.append((r, device))
    if not known:
        return result
    involved = {device.pk: device for _r, device in known}
    earliest = min(r.started_at for r, _device in known)
    # A drained bundle never fills up again, so only bundles with bytes left are loaded
    # and locked (devices accumulate many spent ones over the years).
    bundles = [
        _Bundle(*row)
        for row in Bundle.objects.filter(
            device_id__any=set(involved), expires_at__gt=earliest, account__balance__gt=0
        )
        .order_by("expires_at", "id")
        .values_list("id", "device_id", "account_id", "starts_at", "expires_at", "granted_bytes")
    ]
    account_ids = [b.account_id for b in bundles]
    account_ids += [
        d.credit_account_id for d in involved.values() if d.payg and d.status in RECHARGEABLE
    ]
    # The one global order (primary key), whatever order the records came in: two batches
    # touching the same devices in opposite orders queue instead of deadlocking.
    held = lock_balances(account_ids)
    # Read after the locks: a concurrent batch with the same ids for the same devices has
    # committed by now. One for other devices is caught by the unique record id when we
    # insert, and ingest() runs the batch again, finding those ids rated.
    done = set(
        UsageRecord.objects.filter(record_id__any={r.id for r, _device in known}).values_list(
            "record_id", flat=True
        )
    )
    balances = {pk: h.balance for pk, h in held.items()}
    by_device: dict[int, list[_Bundle]] = defaultdict(list)
    for b in bundles:
        by_device[b.device_id].append(b)
    tariff_at = tariff_schedule()
    consumed = system_account("data_consumed", BYTES)
    issued = system_account("data_issued", BYTES)
    hot: dict[str, Account] = {"consumed": consumed, "issued": issued}
    legs: list[Leg] = []
    overage: set[int] = set()
    rows: list[tuple[object, ...]] = []
    now = timezone.now()
    # Rated in time order (then id), so the listing order of a batch never matters.
    for r, device in sorted(known, key=lambda pair: (pair[0].started_at, pair[0].id)):
        if r.id in done:
            result.duplicates += 1
            continue
        left = r.bytes
        from_bundles = 0
        for b in by_device[device.pk]:
            if left == 0:
                break
            if not (b.starts_at <= r.started_at < b.expires_at):
                continue
            take = min(left, balances[b.account_id])
            if take > 0:
                balances[b.account_id] -= take
                left -= take
                from_bundles += take
                legs.append(
                    Leg(
                        b.account_id,
                        consumed.pk,
                        take,
                        BYTES,
                        "usage",
                        f"usage:{r.id}:bundle:{b.pk}",
                    )
                )
        payg_bytes = charged = 0
        # Credit pays only where authorization would have allowed it (not suspended or
        # retired cards); whatever is left is overage, never silently dropped.
        if left and device.payg and device.status in RECHARGEABLE:
            credit_id = device.credit_account_id
            needed_mb = -(-left // MB)
            tariff = tariff_at(r.started_at)
            affordable_mb = min(needed_mb, balances[credit_id] // tariff)
            if affordable_mb:
                charged = affordable_mb * tariff
                payg_bytes = min(left, affordable_mb * MB)
                balances[credit_id] -= charged
                left -= payg_bytes
                currency = held[credit_id].unit
                if currency not in hot:
                    hot[currency] = system_account("revenue", currency)
                legs.append(
                    Leg(
                        credit_id,
                        hot[currency].pk,
                        charged,
                        currency,
                        "payg_charge",
                        f"usage:{r.id}:charge",
                    )
                )
                legs.append(
                    Leg(
                        issued.pk,
                        consumed.pk,
                        payg_bytes,
                        BYTES,
                        "payg_usage",
                        f"usage:{r.id}:payg",
                    )
                )
        if left:
            overage.add(device.overage_account_id)
            legs.append(
                Leg(
                    device.overage_account_id,
                    consumed.pk,
                    left,
                    BYTES,
                    "overage",
                    f"usage:{r.id}:overage",
                )
            )
        rows.append(
            (
                r.id,
                device.pk,
                r.bytes,
                r.started_at,
                r.ended_at,
                from_bundles,
                payg_bytes,
                charged,
                left,
                now,
            )
        )
        result.accepted += 1
    # Before posting (which moves the held balances on): the thresholds crossed.
    crossed = _crossings(bundles, involved, held, balances, tariff_at(now), now) if rows else []
    insert_rows(UsageRecord, USAGE_COLUMNS, rows)
    # Second lock class: only the overage accounts this batch writes to (most batches
    # stay within bundles and lock none).
    held.update(lock_balances(overage))
    if legs:
        post_legs(legs, held, hot.values())
    if rows:
        schedule_after_usage(list(involved))
        # After the automatic top-ups: their tasks run first, so an alert can say one ran.
        raise_alerts(crossed)
    return result


def _crossings(
    bundles: list[_Bundle],
    involved: dict[int, _Device],
    held: dict[int, Held],
    balances: dict[int, int],
    tariff: int,
    now: datetime,
) -> list[Alert]:
    """The alerts this batch raises: each bundle's and credit's balance before (as locked)
    and after the batch, compared once per account — no query unless credit went down."""
    alerts = []
    for b in bundles:
        before, after = held[b.account_id].balance, balances[b.account_id]
        if after < before:
            for kind in usage_crossings(b.granted_bytes, before, after):
                alerts.append(bundle_alert(b.pk, b.device_id, kind, now, remaining=max(after, 0)))
    charged = [
        d
        for d in involved.values()
        if d.credit_account_id in held
        and balances[d.credit_account_id] < held[d.credit_account_id].balance
    ]
    if charged:
        thresholds = credit_thresholds([d.pk for d in charged], tariff)
        for d in charged:
            account = held[d.credit_account_id]
            after = balances[d.credit_account_id]
            for kind in credit_crossings(thresholds[d.pk], tariff, account.balance, after):
                alerts.append(
                    credit_alert(
                        d.pk,
                        d.credit_account_id,
                        kind,
                        now,
                        credit=after,
                        threshold=thresholds[d.pk],
                        currency=account.unit,
                    )
                )
    return alerts


def authorization(device: Device) -> dict[str, object]:
    """What the policy server asks before letting a device use data: ``allowed`` with the
    remaining bundle bytes valid now, and why (``bundle``, ``payg_credit``, ``no_data``,
    ``insufficient_balance`` or ``device_not_rechargeable``). One statement: usage/reads.py."""
    answer = authorization_of(device.pk)
    assert answer is not None, f"device {device.pk} vanished"  # devices are never deleted
    return answer
