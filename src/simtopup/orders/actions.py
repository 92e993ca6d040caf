"""The order state machine: placing, fulfilling, failing and refunding orders.

Every transition is a compare-and-swap (``UPDATE … WHERE status IN (…)``); the row count
says who won, so retries, duplicate tasks and the reconciler can race freely and each effect
still happens once. Money moves only through :mod:`simtopup.ledger`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Sum
from django.utils import timezone
from stdnum import luhn

from simtopup.accounts.models import Customer
from simtopup.catalog.models import Plan
from simtopup.core import requestid
from simtopup.core.transactions import durable
from simtopup.devices.models import Device, DeviceStatus
from simtopup.ledger.actions import Posting, post, system_account
from simtopup.ledger.keys import order_key
from simtopup.ledger.models import Transfer
from simtopup.network.adapters import AdapterError, Grant, bundle_window, get_adapter
from simtopup.orders.locking import lock_sale
from simtopup.orders.models import OUTSTANDING, Channel, Order, OrderStatus
from simtopup.orders.notices import tell_customer
from simtopup.orders.payers import bundle_opener, payer_of

logger = logging.getLogger(__name__)


def receipt_number(order: Order) -> str:
    """``R20261126-00000042-7``: date, order number, Luhn check digit. Never reused, because
    order ids are never reused (sequences / AUTOINCREMENT). The date is the order's day in
    the operator's zone (``DISPLAY_TIME_ZONE``), the day printed beside it on the receipt —
    not UTC's, which is yesterday until 08:00 in Beijing. ``resellers/fast_sale.py`` dates
    its receipt numbers the same way."""
    day = order.created_at.astimezone(ZoneInfo(settings.DISPLAY_TIME_ZONE))
    body = f"{day:%Y%m%d}{order.pk:08d}"
    return f"R{body[:8]}-{body[8:]}-{luhn.calc_check_digit(body)}"


def paid_balances(order_ids: list[int]) -> dict[int, int | None]:
    """The payer's balance (a reseller's float, a card's credit) right after each order was
    paid, as the ledger recorded it with the payment's transfer — the value the balance's
    compare-and-swap returned in that sale's transaction, never the balance now. None for an
    order not paid from a ledger balance, or paid before the ledger recorded balances."""
    keys = {order_key(pk, "pay"): pk for pk in order_ids}
    found: dict[int, int | None] = dict.fromkeys(order_ids)
    for key, balance in Transfer.objects.filter(idempotency_key__in=list(keys)).values_list(
        "idempotency_key", "source_balance"
    ):
        found[keys[key]] = balance
    return found


def outstanding_clearing() -> dict[str, int]:
    """What the order clearing accounts must hold: money of orders paid, not yet settled."""
    rows = (
        Order.objects.filter(status__in=OUTSTANDING)
        .values_list("currency")
        .annotate(total=Sum("amount"))
    )
    return {f"system:order_clearing:{currency}": int(total) for currency, total in rows}


# --- placing ------------------------------------------------------------------------------


def create_order(
    channel: str,
    device: Device,
    plan: Plan,
    amount: int,
    *,
    paid_at: datetime | None = None,
    customer: Customer | None = None,
    reseller_id: int | None = None,
    reference: str | None = None,
    payment_method: str = "",
) -> Order:
    """The order row of a sale of ``plan`` for ``device``, in the caller's transaction — the
    one place every channel (reseller, app, website, automatic top-up) creates it. ``amount``
    is what the payer pays (wholesale for a reseller, a quote's price); the retail amount and
    the currency are the plan's. Paid at ``paid_at`` (from a float or the card's credit, in
    the same transaction), else it awaits a provider's payment."""
    return Order.objects.create(
        channel=channel,
        status=OrderStatus.AWAITING_PAYMENT if paid_at is None else OrderStatus.PAID,
        device=device,
        plan=plan,
        customer=customer,
        reseller_id=reseller_id,
        reference=reference,
        payment_method=payment_method,
        amount=amount,
        retail_amount=plan.price,
        currency=plan.currency,
        paid_at=paid_at,
    )


# --- fulfilling ---------------------------------------------------------------------------


def enqueue_fulfilment(order: Order, run_after: timedelta | None = None) -> None:
    """Have the worker fulfil ``order`` (queued with the caller's transaction)."""
    from simtopup.orders.tasks import fulfil_order_task

    task = fulfil_order_task
    if run_after:
        task = task.using(run_after=timezone.now() + run_after)
    # The request that paid for it (and its retries, queued from the task) goes along: the
    # worker's log lines and the reseller's webhook about it carry its id (core/requestid.py).
    if request_id := requestid.current():
        task.enqueue(order.pk, request_id=request_id)
    else:
        task.enqueue(order.pk)


def fulfil_paid_order(order: Order, now: datetime | None = None) -> None:
    """Fulfil a just-paid customer order: at once with the built-in quota authority (same
    transaction), else through the fulfilment task (retries, then refund)."""
    adapter = get_adapter()
    if adapter.synchronous:
        try:
            with transaction.atomic():
                complete(order, adapter.apply(order), now=now)
            return
        except AdapterError as exc:
            logger.warning("order %s: immediate fulfilment failed (%s); queued", order.pk, exc)
    enqueue_fulfilment(order)


def complete(order: Order, grant: Grant, *, now: datetime | None = None) -> bool:
    """Record the fulfilment inside the current transaction. Returns False if another worker
    got there first (the CAS lost) — then nothing is written."""
    now = now or timezone.now()
    receipt = receipt_number(order)
    won = Order.objects.filter(pk=order.pk, status__in=OUTSTANDING).update(
        status=OrderStatus.FULFILLED,
        fulfilled_at=now,
        closed_at=now,
        receipt_no=receipt,
        lease_until=None,
    )
    if won != 1:
        return False
    order.status, order.fulfilled_at, order.receipt_no = OrderStatus.FULFILLED, now, receipt
    clearing = system_account("order_clearing", order.currency)
    device = order.device
    credit = device.credit_account
    # The lock order of every sale (orders/locking.py): the card, then the card's credit.
    lock_sale(
        device, credit_plan=order.plan.is_payg, accounts=[credit.pk] if order.plan.is_payg else ()
    )
    if order.plan.is_payg:
        # Credit lands on the card: the plan's face value, whatever the payer was charged.
        postings = [
            Posting(
                clearing,
                credit,
                min(order.amount, order.retail_amount),
                "credit_topup",
                order_key(order.pk, "credit"),
            )
        ]
        if order.amount > order.retail_amount:
            postings.append(
                Posting(
                    clearing,
                    system_account("revenue", order.currency),
                    order.amount - order.retail_amount,
                    "revenue",
                    order_key(order.pk, "revenue"),
                )
            )
        elif order.retail_amount > order.amount:
            postings.append(
                Posting(
                    system_account("reseller_discount", order.currency),
                    credit,
                    order.retail_amount - order.amount,
                    "reseller_discount",
                    order_key(order.pk, "discount"),
                )
            )
        post(postings)
        if not device.payg:
            Device.objects.filter(pk=device.pk, payg=False).update(payg=True)
    else:
        grant_posting = bundle_opener()(order, grant)
        revenue = Posting(
            clearing,
            system_account("revenue", order.currency),
            order.amount,
            "revenue",
            order_key(order.pk, "revenue"),
        )
        post([revenue, grant_posting])
    if device.status == DeviceStatus.IN_STOCK:
        Device.objects.filter(pk=device.pk, status=DeviceStatus.IN_STOCK).update(
            status=DeviceStatus.ACTIVE, activated_at=now
        )
    if order.channel in (Channel.APP, Channel.WEB):
        # 到账 notice (automatic top-ups send their own; resellers get a webhook).
        tell_customer(order, "topup_credited")
    return True


def fulfil_pending(order_id: int) -> str:
    """Worker side of fulfilment: claim, call the adapter outside any transaction, record.

    Safe to call any number of times, concurrently, after crashes: the claim and the
    completion are both compare-and-swap, and adapters are idempotent on the order id.
    Returns what happened (for logs and tests).
    """
    now = timezone.now()
    lease = now + timedelta(seconds=settings.FULFILMENT_LEASE_SECONDS)
    claimable = Q(status=OrderStatus.PAID) & (
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )
    stale = Q(status=OrderStatus.FULFILLING, lease_until__lt=now)
    claimed = Order.objects.filter(claimable | stale, pk=order_id).update(
        status=OrderStatus.FULFILLING, lease_until=lease, attempts=F("attempts") + 1
    )
    if claimed != 1:
        return "not_claimable"
    return attempt_claimed(order_id)


def claim_lease() -> datetime:
    """Until when a fulfilment claimed now is its claimer's (a stale lease is taken over)."""
    return timezone.now() + timedelta(seconds=settings.FULFILMENT_LEASE_SECONDS)


def attempt_claimed(order_id: int) -> str:
    """One fulfilment attempt of an order its caller has just claimed (``fulfilling`` with a
    fresh lease, ``attempts`` counted): the adapter outside any transaction, then record the
    grant, or schedule the next attempt, or fail and refund. The worker's path
    (:func:`fulfil_pending`) and customer service's retry (orders/service.py) both claim by
    compare-and-swap and then call this."""
    order = Order.objects.select_related("plan", "device", "reseller").get(pk=order_id)
    adapter = get_adapter()
    try:
        grant = adapter.apply(order) if not adapter.synchronous else bundle_window(order)
    except AdapterError as exc:
        return _after_failure(
            order, str(exc), permanent=exc.permanent, code=exc.code, wait=exc.retry_after
        )
    except Exception as exc:
        logger.exception("network adapter crashed on order %s", order_id)
        return _after_failure(order, f"adapter error: {exc.__class__.__name__}", permanent=False)

    def record() -> bool:
        # Fresh row: the lease may have been taken over meanwhile; complete's CAS decides.
        order = Order.objects.select_related("plan", "device", "reseller").get(pk=order_id)
        done = complete(order, grant)
        if done:
            payer_of(order).fulfilled_later(order)
        return done

    # Run again if chosen as a lock-conflict victim (core/transactions.py).
    done = durable(record)
    return "fulfilled" if done else "already_done"


def _after_failure(
    order: Order,
    detail: str,
    *,
    permanent: bool,
    code: str = "fulfilment_failed",
    wait: float | None = None,
) -> str:
    """``code``: the network's refusal in our words; ``wait``: the least delay it asked for."""
    backoff = settings.FULFILMENT_BACKOFF
    if permanent or order.attempts >= len(backoff) + 1:
        with transaction.atomic(durable=True):
            refunded = fail_and_refund(order, code, detail)
        return "failed" if refunded else "already_done"
    delay = timedelta(seconds=max(backoff[min(order.attempts - 1, len(backoff) - 1)], wait or 0))
    with transaction.atomic(durable=True):
        released = Order.objects.filter(pk=order.pk, status=OrderStatus.FULFILLING).update(
            status=OrderStatus.PAID,
            next_attempt_at=timezone.now() + delay,
            lease_until=None,
            failure_detail=detail[:300],
        )
        if released:
            enqueue_fulfilment(order, run_after=delay)
    logger.warning(
        "order %s: fulfilment attempt %s failed (%s); retry in %s",
        order.pk,
        order.attempts,
        detail,
        delay,
    )
    return "retry"


def fail_and_refund(order: Order, code: str, detail: str) -> bool:
    """Mark an outstanding order failed and return its money to where it came from."""
    now = timezone.now()
    won = Order.objects.filter(pk=order.pk, status__in=OUTSTANDING).update(
        status=OrderStatus.FAILED,
        closed_at=now,
        failure_code=code,
        failure_detail=detail[:300],
        lease_until=None,
    )
    if won != 1:
        return False
    # The in-memory order feeds the topup.failed webhook payload: make it match the row.
    order.status, order.closed_at, order.lease_until = OrderStatus.FAILED, now, None
    order.failure_code, order.failure_detail = code, detail[:300]
    # Back to where it came from: the reseller's float, the card's credit, the provider.
    payer_of(order).refund(order, code, detail)
    return True


# --- the janitor --------------------------------------------------------------------------


def reconcile(limit: int = 500) -> dict[str, int]:
    """Find orders left ``paid`` past their retry time, or ``fulfilling`` past their lease
    (a worker died), and finish them. The database is the truth; tasks are only triggers."""
    now = timezone.now()
    grace = now - timedelta(seconds=settings.RECONCILE_INTERVAL_SECONDS)
    due = (
        Order.objects.filter(
            (
                Q(status=OrderStatus.PAID)
                & (Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True, paid_at__lt=grace))
            )
            | Q(status=OrderStatus.FULFILLING, lease_until__lt=now)
        )
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    counts: dict[str, int] = {}
    for order_id in list(due):
        outcome = fulfil_pending(order_id)
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts
