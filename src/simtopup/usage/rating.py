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

from simtopup.catalog.pricing import tariff_per_mb, tariff_schedule
from simtopup.devices.identifiers import normalise_digits
from simtopup.devices.models import RECHARGEABLE, Device
from simtopup.ledger.actions import Posting, lock_accounts, post, system_account
from simtopup.ledger.models import BYTES, Account
from simtopup.usage.bundles import remaining_bytes
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
    iccids = {normalise_digits(r.iccid) for r in records}
    with transaction.atomic(durable=True):
        devices = {
            d.iccid: d
            for d in Device.objects.filter(iccid__in=iccids).select_related(
                "credit_account", "overage_account"
            )
        }
        # The first acceptable occurrence of an id is rated; later ones are duplicates. A
        # rejected record is not remembered, so the network can resend it corrected.
        seen: set[str] = set()
        known: list[tuple[UsageIn, Device]] = []
        for r in records:
            device = devices.get(normalise_digits(r.iccid))
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
        bundles = list(
            Bundle.objects.filter(
                device_id__in=involved, expires_at__gt=earliest, account__balance__gt=0
            )
            .only("id", "device_id", "account_id", "starts_at", "expires_at")
            .order_by("expires_at", "id")
        )
        account_ids = [b.account_id for b in bundles]
        for d in involved.values():
            account_ids += [d.credit_account_id, d.overage_account_id]
        # The one global order (primary key), whatever order the records came in: two batches
        # touching the same devices in opposite orders queue instead of deadlocking.
        locked = lock_accounts(account_ids)
        # Read after the locks: a concurrent batch with the same ids for the same devices has
        # committed by now. One for other devices is caught by the unique record id when we
        # insert, and ingest() runs the batch again, finding those ids rated.
        done = set(
            UsageRecord.objects.filter(record_id__in=[r.id for r, _device in known]).values_list(
                "record_id", flat=True
            )
        )
        balances = {pk: a.balance for pk, a in locked.items()}
        by_device: dict[int, list[Bundle]] = defaultdict(list)
        for b in bundles:
            by_device[b.device_id].append(b)
        tariff_at = tariff_schedule()
        consumed = system_account("data_consumed", BYTES)
        issued = system_account("data_issued", BYTES)
        postings: list[Posting] = []
        rows: list[UsageRecord] = []
        revenue: dict[str, Account] = {}
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
    """What the policy server asks before letting a device use data: ``allowed`` with the
    remaining bundle bytes valid now, and why (``bundle``, ``payg_credit``, ``no_data``,
    ``insufficient_balance`` or ``device_not_rechargeable``)."""
    remaining = remaining_bytes(device)
    if device.status not in RECHARGEABLE:
        return {"allowed": False, "remaining_bytes": remaining, "reason": "device_not_rechargeable"}
    if remaining > 0:
        return {"allowed": True, "remaining_bytes": remaining, "reason": "bundle"}
    if device.payg:
        credit = Account.objects.values_list("balance", flat=True).get(pk=device.credit_account_id)
        if credit >= tariff_per_mb():
            return {"allowed": True, "remaining_bytes": 0, "reason": "payg_credit"}
        return {"allowed": False, "remaining_bytes": 0, "reason": "insufficient_balance"}
    return {"allowed": False, "remaining_bytes": 0, "reason": "no_data"}
