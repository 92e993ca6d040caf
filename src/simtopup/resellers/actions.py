"""Reseller actions: onboarding, float, suspension, API keys, wholesale prices."""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import date, datetime

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q, Sum
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from simtopup.audit.log import record
from simtopup.audit.models import Action
from simtopup.catalog.models import Plan
from simtopup.catalog.pricing import get_plan
from simtopup.core.errors import DomainError, field_error
from simtopup.core.money import exponent, to_decimal_string
from simtopup.devices.identifiers import rechargeable_device
from simtopup.devices.models import Device
from simtopup.ledger.actions import Posting, open_account, post, system_account
from simtopup.ledger.keys import order_id_of, order_key
from simtopup.ledger.models import AccountKind, Transfer
from simtopup.network.adapters import get_adapter
from simtopup.orders.actions import complete, create_order, enqueue_fulfilment
from simtopup.orders.locking import lock_sale
from simtopup.orders.models import Channel, Order
from simtopup.orders.payers import Payer
from simtopup.orders.receipts import customer_zone
from simtopup.resellers.models import (
    ApiKey,
    MemberRole,
    Reseller,
    ResellerDeposit,
    ResellerMember,
    ResellerPrice,
    ResellerStatus,
)
from simtopup.resellers.webhooks import UrlRefused, check_url, queue_event

logger = logging.getLogger(__name__)

KEY_PREFIX = "sk_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _new_agent_code() -> str:
    # Human-friendly, unambiguous: no 0/O/1/I.
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "AG" + "".join(secrets.choice(alphabet) for _ in range(8))


@transaction.atomic
def create_reseller(
    name: str, *, currency: str = "CNY", discount_bps: int = 0, initial_float: int = 0
) -> tuple[Reseller, str]:
    """Create a reseller with its float account and a first API key. Returns (reseller, key)."""
    if not name.strip():
        raise DomainError("invalid_name", _("A reseller needs a name."), 422)
    if not 0 <= discount_bps < 10000:
        raise DomainError("invalid_discount", _("The discount must be between 0 and 100 %."), 422)
    exponent(currency)  # validates the currency
    code = _new_agent_code()
    account = open_account(
        f"reseller:{code}:float:{currency}", AccountKind.RESELLER_FLOAT, currency
    )
    reseller = Reseller.objects.create(
        name=name.strip(),
        code=code,
        currency=currency,
        discount_bps=discount_bps,
        float_account=account,
    )
    if initial_float:
        credit_float(reseller, initial_float, "initial float")
    _api_key, key = create_api_key(reseller, "default")
    return reseller, key


def create_api_key(reseller: Reseller, name: str = "") -> tuple[ApiKey, str]:
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(
        reseller=reseller, name=name, prefix=key[:10], key_hash=hash_key(key)
    )
    return api_key, key


def revoke_api_key(key_id: int, reseller: Reseller | None = None) -> bool:
    """Revoke a key at once (the next request with it is unauthenticated). With ``reseller``,
    only one of that reseller's keys (the portal: another reseller's key is not found)."""
    keys = ApiKey.objects.filter(pk=key_id, revoked_at__isnull=True)
    if reseller is not None:
        keys = keys.filter(reseller=reseller)
    return bool(keys.update(revoked_at=timezone.now()))


def authenticate(key: str) -> Reseller | None:
    """The reseller owning an unrevoked key, or None. Keys are random 256-bit strings, so a
    plain SHA-256 lookup is safe (no password stretching needed)."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    row = (
        ApiKey.objects.filter(key_hash=hash_key(key), revoked_at__isnull=True)
        .select_related("reseller", "reseller__float_account")
        .first()
    )
    return row.reseller if row else None


def credit_float(reseller: Reseller, amount: int, reason: str) -> Transfer:
    """Add money to a reseller's float (the operator received it)."""
    if not reason.strip():
        raise DomainError("reason_required", _("Say why the float is credited."), 422)
    key = f"float_credit:{reseller.pk}:{secrets.token_hex(8)}"
    return _fund_float(reseller, amount, key, reason)


def _fund_float(reseller: Reseller, amount: int, key: str, memo: str) -> Transfer:
    """The one posting that adds money to a float: float funding → the reseller's float
    (kind ``float_credit``), for a plain credit and for a recorded bank deposit alike."""
    if amount <= 0:
        raise DomainError("amount_not_positive", _("The amount must be greater than zero."), 422)
    with transaction.atomic():
        return post(
            [
                Posting(
                    system_account("float_funding", reseller.currency),
                    reseller.float_account,
                    amount,
                    "float_credit",
                    key,
                    memo,
                )
            ]
        )[0]


def normalise_bank_reference(text: str) -> str:
    """A bank reference as recorded: surrounding spaces dropped, inner runs of spaces one."""
    return " ".join(text.split())


def record_deposit(
    reseller: Reseller,
    amount: int,
    bank_reference: str,
    received_on: date,
    *,
    actor: str,
    ip: str | None = None,
    reason: str,
    request_id: str = "",
) -> ResellerDeposit:
    """Record money a reseller paid into the operator's bank account and credit its float
    by that amount, with the audit row (``reseller.deposit``), in one transaction.

    Exactly once per bank reference and reseller: the deposit's unique constraint (case
    aside) and the transfer's key both refuse a second recording, concurrent or not, with
    ``duplicate_bank_reference``. ``received_on`` is the bank's day, never after today in
    the operator's calendar."""
    reference = normalise_bank_reference(bank_reference)
    if not reference:
        raise field_error(
            "bank_reference_required", _("Enter the bank's reference."), "bank_reference"
        )
    if len(reference) > 100:
        raise field_error(
            "bank_reference_too_long",
            _("The bank reference is too long (at most 100 characters)."),
            "bank_reference",
        )
    reason = reason.strip()
    if not reason:
        raise field_error("reason_required", _("Say why the float is credited."), "reason")
    today = timezone.now().astimezone(customer_zone(None)).date()
    if received_on > today:
        raise field_error(
            "received_in_future",
            _("The day the money was received cannot be in the future."),
            "received_on",
        )
    if amount <= 0:
        raise field_error(
            "amount_not_positive", _("The amount must be greater than zero."), "amount"
        )
    key = f"float_deposit:{reseller.pk}:{reference.upper()}"
    try:
        with transaction.atomic():
            # The transfer's key is the bank reference: a second recording is refused by
            # the ledger's unique key (and the deposit's own constraint) and rolls back.
            transfer = _fund_float(
                reseller, amount, key, f"deposit {reference} received {received_on}"
            )
            deposit = ResellerDeposit.objects.create(
                reseller=reseller,
                amount=amount,
                currency=reseller.currency,
                bank_reference=reference,
                received_on=received_on,
                note=reason[:300],
                recorded_by=actor[:200],
                transfer=transfer,
            )
            # The float as the ledger held it right after the credit (ledger 0006).
            after = transfer.destination_balance
            assert after is not None  # a float is a bounded account
            record(
                Action.RESELLER_DEPOSIT,
                reseller,
                actor=actor,
                ip=ip,
                before={"float": to_decimal_string(after - amount, reseller.currency)},
                after={
                    "float": to_decimal_string(after, reseller.currency),
                    "deposited": to_decimal_string(amount, reseller.currency),
                    "currency": reseller.currency,
                    "bank_reference": reference,
                    "received_on": received_on.isoformat(),
                    "deposit": deposit.pk,
                    "transfer": transfer.pk,
                },
                reason=reason,
                request_id=request_id,
            )
    except IntegrityError:
        raise field_error(
            "duplicate_bank_reference",
            _("A deposit with this bank reference is already recorded for this reseller."),
            "bank_reference",
            409,
        ) from None
    return deposit


def suspend(reseller: Reseller) -> bool:
    return bool(
        Reseller.objects.filter(pk=reseller.pk, status=ResellerStatus.ACTIVE).update(
            status=ResellerStatus.SUSPENDED, suspended_at=timezone.now()
        )
    )


def reinstate(reseller: Reseller) -> bool:
    return bool(
        Reseller.objects.filter(pk=reseller.pk, status=ResellerStatus.SUSPENDED).update(
            status=ResellerStatus.ACTIVE, suspended_at=None
        )
    )


def wholesale_price(reseller: Reseller, plan: Plan, explicit: dict[int, int] | None = None) -> int:
    """The reseller's price for a plan: an explicit price list entry, else retail less the
    reseller's discount, rounded half up to the minor unit."""
    if explicit is None:
        row = (
            ResellerPrice.objects.filter(reseller=reseller, plan=plan)
            .values_list("price", flat=True)
            .first()
        )
    else:
        row = explicit.get(plan.pk)
    if row is not None:
        return row
    return max(1, (plan.price * (10000 - reseller.discount_bps) + 5000) // 10000)


def price_list(reseller: Reseller) -> dict[int, int]:
    return dict(ResellerPrice.objects.filter(reseller=reseller).values_list("plan_id", "price"))


# --- selling (the reseller API and the reseller portal) ------------------------------------


def sell_topup(
    reseller: Reseller,
    device_text: str,
    plan_code: str,
    reference: str,
    *,
    status_checked: bool = False,
) -> Order:
    """Top up a device from the reseller's float at the wholesale price, in the caller's
    transaction. One sale per (reseller, reference): a repeat raises ``duplicate_reference``.
    ``status_checked``: the caller read the reseller's status in this very request (the API's
    key check does), so the hot path skips reading it again."""
    # The status as of now, not as of a session's older read: a suspension stops sales at once.
    if (
        not status_checked
        and not Reseller.objects.filter(pk=reseller.pk, status=ResellerStatus.ACTIVE).exists()
    ):
        raise DomainError("reseller_suspended", _("This reseller account is suspended."), 403)
    device = rechargeable_device(device_text)
    plan = get_plan(plan_code, reseller.currency)
    amount = wholesale_price(reseller, plan)
    return place_reseller_topup(reseller, device, plan, amount, reference)


def place_reseller_topup(
    reseller: Reseller, device: Device, plan: Plan, amount: int, reference: str
) -> Order:
    """Fulfil at once with a synchronous adapter and debit the reseller's float — all in the
    caller's transaction. With an asynchronous adapter the order stays
    ``paid`` and a fulfilment task is enqueued with it."""
    now = timezone.now()
    # The lock order of every sale (orders/locking.py): the card if this sale changes it,
    # then a credit sale's two accounts in primary-key order; a bundle sale's only existing
    # account, the float, is debited last below.
    lock_sale(
        device,
        credit_plan=plan.is_payg,
        accounts=[reseller.float_account_id, device.credit_account_id] if plan.is_payg else (),
    )
    try:
        with transaction.atomic():
            order = create_order(
                Channel.RESELLER,
                device,
                plan,
                amount,
                paid_at=now,
                reseller_id=reseller.pk,
                reference=reference,
            )
    except IntegrityError:
        raise DomainError(
            "duplicate_reference",
            _("A top-up with this reference already exists."),
            409,
        ) from None
    adapter = get_adapter()
    if adapter.synchronous:
        complete(order, adapter.apply(order), now=now)
    else:
        enqueue_fulfilment(order)
    # The float is debited last, so its row lock (the one every top-up of this reseller
    # queues on) is held only until COMMIT. A refused floor rolls everything above back.
    clearing = system_account("order_clearing", order.currency)
    post(
        [
            Posting(
                reseller.float_account,
                clearing,
                amount,
                "order_payment",
                order_key(order.pk, "pay"),
                f"order {order.pk}",
            )
        ]
    )
    return order


def refund_to_float(order: Order, code: str, detail: str) -> None:
    """A reseller's top-up failed (orders.actions.fail_and_refund, in its transaction): the
    wholesale price goes back to the float and the reseller gets ``topup.failed``."""
    assert order.reseller_id is not None  # registered for the reseller channel only
    clearing = system_account("order_clearing", order.currency)
    reseller = Reseller.objects.select_related("float_account").get(pk=order.reseller_id)
    post(
        [
            Posting(
                clearing,
                reseller.float_account,
                order.amount,
                "order_refund",
                order_key(order.pk, "refund"),
                f"refund of order {order.pk}",
            )
        ]
    )
    queue_event(order, "topup.failed")
    logger.error(
        "order %s failed (%s: %s); %s returned to reseller float",
        order.pk,
        code,
        detail,
        order.amount,
    )


def tell_fulfilled(order: Order) -> None:
    """A top-up fulfilled after its sale answered (asynchronous adapter, retries)."""
    queue_event(order, "topup.fulfilled")


# What orders ask of resellers (orders/payers.py), registered in resellers/apps.py.
RESELLER_PAYER = Payer(refund=refund_to_float, fulfilled_later=tell_fulfilled)


# --- staff (reseller portal logins) ---------------------------------------------------------


def _temporary_password() -> str:
    # 16 characters from an unambiguous alphabet, grouped for reading aloud: ~80 bits.
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    raw = "".join(secrets.choice(alphabet) for _ in range(16))
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


def add_member(
    reseller: Reseller, email: str, role: str = MemberRole.CLERK
) -> tuple[ResellerMember, str]:
    """Give a person a login to the reseller portal. Returns (member, temporary password):
    the password is shown once and must be changed at the first login."""
    email = email.strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise field_error("invalid_email", _("Enter a valid email address."), "email") from None
    if role not in MemberRole.values:
        raise DomainError("invalid_role", _("The role must be owner or clerk."), 422)
    password = _temporary_password()
    user_model = get_user_model()
    try:
        with transaction.atomic():
            if user_model.objects.filter(username__iexact=email).exists():
                raise IntegrityError
            user = user_model.objects.create_user(username=email, email=email, password=password)
            member = ResellerMember.objects.create(
                user=user, reseller=reseller, role=role, must_change_password=True
            )
    except IntegrityError:
        raise field_error(
            "member_exists",
            _("Somebody with this email address can already log in."),
            "email",
            409,
        ) from None
    return member, password


def reset_member_password(member: ResellerMember) -> str:
    """A new temporary password (shown once) for a staff member who forgot theirs."""
    password = _temporary_password()
    with transaction.atomic():
        member.user.set_password(password)
        member.user.save(update_fields=["password"])
        ResellerMember.objects.filter(pk=member.pk).update(must_change_password=True)
    return password


def password_changed(member: ResellerMember) -> None:
    ResellerMember.objects.filter(pk=member.pk).update(must_change_password=False)


# --- outgoing webhook settings ----------------------------------------------------------------

_url_shape = URLValidator(schemes=["http", "https"])


def _webhook_error(message: str | Promise) -> DomainError:
    return field_error("invalid_webhook_url", message, "webhook_url")


def validate_webhook_url(url: str) -> str:
    """An https URL whose host resolves to public addresses only (resellers/webhooks.py has
    the rule; ``WEBHOOK_ALLOW_PRIVATE`` relaxes it for test installations). Returns it
    stripped; empty means "no webhook"."""
    url = url.strip()
    if not url:
        return ""
    if len(url) > 200:
        raise _webhook_error(_("The address is too long (at most 200 characters)."))
    try:
        _url_shape(url)
    except ValidationError:
        raise _webhook_error(
            _("Enter a complete address such as https://example.com/hooks.")
        ) from None
    try:
        check_url(url)
    except UrlRefused as exc:
        raise _webhook_error(exc.message) from None
    return url


def new_webhook_secret() -> str:
    return "whsec_" + secrets.token_hex(24)


def set_webhook(reseller: Reseller, url: str) -> str | None:
    """Set (or clear, with an empty URL) where top-up events are sent. The first time a URL
    is set a signing secret is made; it is returned, to be shown once."""
    url = validate_webhook_url(url)
    secret = None
    with transaction.atomic():
        row = Reseller.objects.select_for_update().get(pk=reseller.pk)
        fields = {"webhook_url": url}
        if url and not row.webhook_secret:
            secret = new_webhook_secret()
            fields["webhook_secret"] = secret
        Reseller.objects.filter(pk=reseller.pk).update(**fields)
    reseller.webhook_url = url
    if secret:
        reseller.webhook_secret = secret
    return secret


def rotate_webhook_secret(reseller: Reseller) -> str:
    """A new signing secret, effective for the next delivery; returned to be shown once."""
    secret = new_webhook_secret()
    Reseller.objects.filter(pk=reseller.pk).update(webhook_secret=secret)
    reseller.webhook_secret = secret
    return secret


# --- statement (float movements with a running balance) --------------------------------------


@dataclass(frozen=True)
class StatementRow:
    transfer_id: int
    at: datetime
    kind: str  # float_credit | order_payment | order_refund | …
    amount: int  # signed: + into the float, - out of it
    balance: int  # the float after this movement
    memo: str
    order_id: int | None


def statement(
    reseller: Reseller, since: datetime | None = None, until: datetime | None = None
) -> tuple[int, list[StatementRow], int]:
    """The float's movements in ``[since, until)``, oldest first, as (opening balance, rows,
    closing balance). Balances are computed from the ledger's transfers, not the cache."""
    account_id = reseller.float_account_id
    touching = Transfer.objects.filter(Q(source_id=account_id) | Q(destination_id=account_id))
    opening = 0
    if since is not None:
        before = touching.filter(created_at__lt=since)
        incoming = before.filter(destination_id=account_id).aggregate(s=Sum("amount"))["s"] or 0
        outgoing = before.filter(source_id=account_id).aggregate(s=Sum("amount"))["s"] or 0
        opening = incoming - outgoing
        touching = touching.filter(created_at__gte=since)
    if until is not None:
        touching = touching.filter(created_at__lt=until)
    running = opening
    rows = []
    for t in touching.order_by("created_at", "pk").only(
        "pk", "created_at", "kind", "amount", "memo", "source_id", "idempotency_key"
    ):
        signed = -t.amount if t.source_id == account_id else t.amount
        running += signed
        rows.append(
            StatementRow(
                transfer_id=t.pk,
                at=t.created_at,
                kind=t.kind,
                amount=signed,
                balance=running,
                memo=t.memo,
                order_id=order_id_of(t.idempotency_key),
            )
        )
    return opening, rows, running
