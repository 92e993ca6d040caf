"""Rating network usage: drain bundles soonest-expiring first, then the card's credit per
started MB at the pay-per-use tariff; what neither covers is recorded as overage.

A batch is one transaction. Every account of every device in it is locked first, in one
global order (primary key), so two batches touching the same devices in different orders
cannot deadlock; a record id already rated is a duplicate and is never charged again.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import Q

from simtopup.catalog.pricing import tariff_per_mb
from simtopup.devices.identifiers import normalise_digits
from simtopup.devices.models import Device, DeviceStatus
from simtopup.ledger.actions import Posting, lock_accounts, post, system_account
from simtopup.ledger.models import BYTES, Account
from simtopup.usage.models import Bundle, UsageRecord

MB = 1024 * 1024


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


def ingest(records: list[UsageIn]) -> IngestResult:
    """Rate a batch exactly once per record id. Retries once if a concurrent batch inserted
    the same new record id between our check and our insert."""
    try:
        return _ingest(records)
    except IntegrityError:
        return _ingest(records)


def _ingest(records: list[UsageIn]) -> IngestResult:
    result = IngestResult()
    seen: set[str] = set()
    valid: list[UsageIn] = []
    for r in records:
        if r.id in seen:
            result.duplicates += 1
            continue
        seen.add(r.id)
        if r.ended_at < r.started_at:
            result.rejected.append({"id": r.id, "code": "invalid_time_range"})
            continue
        valid.append(r)
    iccids = {normalise_digits(r.iccid) for r in valid}
    with transaction.atomic(durable=True):
        devices = {
            d.iccid: d
            for d in Device.objects.filter(iccid__in=iccids).select_related(
                "credit_account", "overage_account"
            )
        }
        known = []
        for r in valid:
            if normalise_digits(r.iccid) in devices:
                known.append(r)
            else:
                result.rejected.append({"id": r.id, "code": "unknown_device"})
        if not known:
            return result
        device_ids = sorted({devices[normalise_digits(r.iccid)].pk for r in known})
        earliest = min(r.started_at for r in known)
        bundles = list(
            Bundle.objects.filter(device_id__in=device_ids, expires_at__gt=earliest).order_by(
                "expires_at", "id"
            )
        )
        account_ids = [b.account_id for b in bundles]
        for d in devices.values():
            if d.pk in device_ids:
                account_ids += [d.credit_account_id, d.overage_account_id]
        locked = lock_accounts(account_ids)  # the one global order: primary key
        done = set(
            UsageRecord.objects.filter(record_id__in=[r.id for r in known]).values_list(
                "record_id", flat=True
            )
        )
        balances = {pk: a.balance for pk, a in locked.items()}
        by_device: dict[int, list[Bundle]] = defaultdict(list)
        for b in bundles:
            by_device[b.device_id].append(b)
        tariff = tariff_per_mb()
        consumed = system_account("data_consumed", BYTES)
        issued = system_account("data_issued", BYTES)
        postings: list[Posting] = []
        rows: list[UsageRecord] = []
        revenue: dict[str, Account] = {}
        for r in sorted(known, key=lambda x: (x.started_at, x.id)):
            if r.id in done:
                result.duplicates += 1
                continue
            device = devices[normalise_digits(r.iccid)]
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
                    postings.append(
                        Posting(
                            locked[b.account_id],
                            consumed,
                            take,
                            "usage",
                            f"usage:{r.id}:bundle:{b.pk}",
                        )
                    )
            payg_bytes = charged = 0
            if left and device.payg and device.status != DeviceStatus.SUSPENDED:
                credit_id = device.credit_account_id
                needed_mb = -(-left // MB)
                affordable_mb = min(needed_mb, balances[credit_id] // tariff)
                if affordable_mb:
                    charged = affordable_mb * tariff
                    payg_bytes = min(left, affordable_mb * MB)
                    balances[credit_id] -= charged
                    left -= payg_bytes
                    currency = locked[credit_id].unit
                    if currency not in revenue:
                        revenue[currency] = system_account("revenue", currency)
                    postings.append(
                        Posting(
                            locked[credit_id],
                            revenue[currency],
                            charged,
                            "payg_charge",
                            f"usage:{r.id}:charge",
                        )
                    )
                    postings.append(
                        Posting(issued, consumed, payg_bytes, "payg_usage", f"usage:{r.id}:payg")
                    )
            if left:
                postings.append(
                    Posting(
                        locked[device.overage_account_id],
                        consumed,
                        left,
                        "overage",
                        f"usage:{r.id}:overage",
                    )
                )
            rows.append(
                UsageRecord(
                    record_id=r.id,
                    device_id=device.pk,
                    bytes=r.bytes,
                    started_at=r.started_at,
                    ended_at=r.ended_at,
                    bundle_bytes=from_bundles,
                    payg_bytes=payg_bytes,
                    charged=charged,
                    overage_bytes=left,
                )
            )
            result.accepted += 1
        UsageRecord.objects.bulk_create(rows)
        if postings:
            post(postings)
    return result


def authorization(device: Device) -> dict[str, object]:
    """What the policy server asks before letting a device use data."""
    from django.utils import timezone

    now = timezone.now()
    remaining = sum(
        Account.objects.filter(
            Q(balance__gt=0),
            id__in=Bundle.objects.filter(
                device=device, starts_at__lte=now, expires_at__gt=now
            ).values("account_id"),
        ).values_list("balance", flat=True)
    )
    if device.status in (DeviceStatus.SUSPENDED, DeviceStatus.RETIRED):
        return {"allowed": False, "remaining_bytes": remaining, "reason": "device_not_rechargeable"}
    if remaining > 0:
        return {"allowed": True, "remaining_bytes": remaining, "reason": "bundle"}
    if device.payg:
        credit = Account.objects.values_list("balance", flat=True).get(pk=device.credit_account_id)
        if credit >= tariff_per_mb():
            return {"allowed": True, "remaining_bytes": 0, "reason": "payg_credit"}
        return {"allowed": False, "remaining_bytes": 0, "reason": "insufficient_balance"}
    return {"allowed": False, "remaining_bytes": 0, "reason": "no_data"}
