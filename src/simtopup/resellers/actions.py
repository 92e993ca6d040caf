"""Reseller actions: onboarding, float, suspension, API keys, wholesale prices."""

from __future__ import annotations

import hashlib
import secrets

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from simtopup.catalog.models import Plan
from simtopup.core.errors import DomainError
from simtopup.core.money import exponent
from simtopup.ledger.actions import Posting, open_account, post, system_account
from simtopup.ledger.models import AccountKind, Transfer
from simtopup.resellers.models import ApiKey, Reseller, ResellerPrice, ResellerStatus

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


def revoke_api_key(key_id: int) -> bool:
    """Revoke a key at once (the next request with it is unauthenticated)."""
    return bool(
        ApiKey.objects.filter(pk=key_id, revoked_at__isnull=True).update(revoked_at=timezone.now())
    )


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
    if amount <= 0:
        raise DomainError("amount_not_positive", _("The amount must be greater than zero."), 422)
    if not reason.strip():
        raise DomainError("reason_required", _("Say why the float is credited."), 422)
    with transaction.atomic():
        key = f"float_credit:{reseller.pk}:{secrets.token_hex(8)}"
        return post(
            [
                Posting(
                    system_account("float_funding", reseller.currency),
                    reseller.float_account,
                    amount,
                    "float_credit",
                    key,
                    reason,
                )
            ]
        )[0]


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
