"""Login by one-time code: request a code, exchange it for an app token.

Answers never reveal whether an account exists: a code is sent to any valid phone number or
email (the first successful login creates the account), and every failure to exchange a code
— wrong, expired, already used, burned, or never requested — is the same ``invalid_code``.

A code is 6 random digits, kept only as an HMAC (keyed with ``SECRET_KEY``), valid
``LOGIN_CODE_TTL_SECONDS``; ``LOGIN_CODE_MAX_ATTEMPTS`` wrong tries burn it, and asking for a
new code burns the previous ones. Every try is claimed by one conditional ``UPDATE`` before the
code is compared, so at most ``LOGIN_CODE_MAX_ATTEMPTS`` comparisons are ever made per code,
however many tries arrive at once. It is spent by compare-and-swap, so two concurrent
exchanges of one code give one token.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from simtopup.accounts import ratelimit
from simtopup.accounts.models import AppToken, Customer, IdentityKind, LoginCode
from simtopup.accounts.tokens import issue_token
from simtopup.core.errors import DomainError, FieldError, field_error
from simtopup.notifications.actions import send_now

logger = logging.getLogger(__name__)
CODE_DIGITS = 6
# Numbers an SMS can reach (in some countries, e.g. the US, the type is ambiguous).
SMS_CAPABLE = {
    phonenumbers.PhoneNumberType.MOBILE,
    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
}


@dataclass(frozen=True)
class Identity:
    kind: IdentityKind
    value: str  # E.164 phone or lower-cased email

    @property
    def channel(self) -> str:
        return "sms" if self.kind == IdentityKind.PHONE else "email"


def parse_phone(text: str) -> str:
    """E.164 of a valid phone number; numbers without ``+`` are read in the default region."""
    message = _("Enter a valid mobile phone number, e.g. +86 138 0013 8000.")
    if len(text) > 40:
        raise field_error("invalid_phone", message, "phone")
    try:
        number = phonenumbers.parse(text, settings.PHONE_DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        raise field_error("invalid_phone", message, "phone") from None
    if not phonenumbers.is_valid_number(number):
        raise field_error("invalid_phone", message, "phone")
    if phonenumbers.number_type(number) not in SMS_CAPABLE:
        raise field_error(
            "invalid_phone", _("Enter a mobile phone number: codes are sent by SMS."), "phone"
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def parse_email(text: str) -> str:
    value = text.strip().lower()
    try:
        if len(value) > 254:
            raise ValidationError("too long")
        validate_email(value)
    except ValidationError:
        raise field_error("invalid_email", _("Enter a valid email address."), "email") from None
    return value


def parse_identity(phone: str | None, email: str | None) -> Identity:
    """Exactly one of a phone number and an email address."""
    if (phone is None) == (email is None):
        message = _("Give either a phone number or an email address.")
        raise DomainError(
            "validation_error",
            message,
            422,
            errors=[FieldError("phone", "phone_or_email", message)],
        )
    if phone is not None:
        return Identity(IdentityKind.PHONE, parse_phone(phone))
    assert email is not None
    return Identity(IdentityKind.EMAIL, parse_email(email))


def hash_code(identity: Identity, code: str) -> str:
    """HMAC-SHA256 keyed with SECRET_KEY, bound to the identity (a leaked table gives no
    codes, and a hash is useless for another identity)."""
    message = f"{identity.kind}:{identity.value}:{code}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def request_code(identity: Identity, ip: str | None, language: str) -> LoginCode:
    """Create a code and send it once the row is committed. Raises ``RateLimited``."""
    now = timezone.now()
    code = "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS))
    with transaction.atomic(durable=True):
        ratelimit.hit(
            f"code:{identity.kind}:{identity.value}",
            ratelimit.limits(settings.LOGIN_CODE_IDENTITY_LIMITS),
            now,
        )
        if ip:
            ratelimit.hit(
                f"code-ip:{ratelimit.ip_bucket(ip)}",
                ratelimit.limits(settings.LOGIN_CODE_IP_LIMITS),
                now,
            )
        LoginCode.objects.filter(
            kind=identity.kind, identity=identity.value, used_at=None, burned_at=None
        ).update(burned_at=now)
        row = LoginCode.objects.create(
            kind=identity.kind,
            identity=identity.value,
            code_hash=hash_code(identity, code),
            created_at=now,
            expires_at=now + timedelta(seconds=settings.LOGIN_CODE_TTL_SECONDS),
            requested_ip=ip,
            language=language,
        )
        transaction.on_commit(partial(deliver_code, row.pk, identity, code, language), robust=True)
    return row


def deliver_code(code_id: int, identity: Identity, code: str, language: str) -> bool:
    """Send the code, at most once per row (claimed by compare-and-swap). A failed delivery
    is logged; the caller already answered 202 (see ``api/app_auth.py``)."""
    if not LoginCode.objects.filter(pk=code_id, sent_at=None).update(sent_at=timezone.now()):
        return False
    minutes = max(1, settings.LOGIN_CODE_TTL_SECONDS // 60)
    sent = send_now(
        "sms" if identity.kind == IdentityKind.PHONE else "email",
        identity.value,
        "login_code",
        {"code": code, "minutes": minutes},
        language,
    )
    if not sent:
        LoginCode.objects.filter(pk=code_id).update(send_failed=True)
    return sent


def _invalid_code() -> DomainError:
    message = _(
        "The code is wrong or has expired. Check the latest message we sent, or ask for a new code."
    )
    return field_error("invalid_code", message, "code")


def exchange_code(
    identity: Identity, code: str, *, device_name: str = "", language: str = "zh-hans"
) -> tuple[str, AppToken]:
    """Spend a valid code for an app token: (the raw token, its row). The first login
    creates the customer. Every failure is ``invalid_code``."""
    customer = spend_code(identity, code, language=language)
    raw, token = issue_token(customer, device_name)
    token.customer = customer
    return raw, token


def spend_code(identity: Identity, code: str, *, language: str = "zh-hans") -> Customer:
    """Spend a valid code: the customer it logs in (created on first login). The website
    calls this and keeps its own session; the app API gets a token (:func:`exchange_code`).
    Every failure is ``invalid_code``."""
    now = timezone.now()
    max_attempts = settings.LOGIN_CODE_MAX_ATTEMPTS
    if not (len(code) == CODE_DIGITS and code.isascii() and code.isdigit()):
        # Not a code at all: still counts as a wrong try on the live code, if any.
        code = ""
    row = (
        LoginCode.objects.filter(
            kind=identity.kind,
            identity=identity.value,
            used_at=None,
            burned_at=None,
            expires_at__gt=now,
            attempts__lt=max_attempts,
        )
        .order_by("-created_at", "-pk")
        .first()
    )
    # Claimed outside any transaction that the error would roll back.
    attempt = _claim_attempt(row.pk, max_attempts, now) if row is not None else None
    if row is None or attempt is None:
        raise _invalid_code()
    if not code or not hmac.compare_digest(row.code_hash, hash_code(identity, code)):
        if attempt >= max_attempts:
            LoginCode.objects.filter(pk=row.pk, burned_at=None, used_at=None).update(burned_at=now)
        raise _invalid_code()
    with transaction.atomic(durable=True):
        won = LoginCode.objects.filter(
            pk=row.pk, used_at=None, burned_at=None, expires_at__gt=now
        ).update(used_at=now)
        if not won:
            raise _invalid_code()
        customer = _customer_for(identity, language)
        Customer.objects.filter(pk=customer.pk).update(last_login_at=now)
        customer.last_login_at = now
    return customer


def _claim_attempt(code_id: int, max_attempts: int, now: datetime) -> int | None:
    """Count one try at a live code before it is compared: the try's number (1 to
    ``max_attempts``), or None when the code is used up, burned or expired. One conditional
    ``UPDATE … RETURNING`` (PostgreSQL, SQLite 3.35+): concurrent tries each get their own
    number, and no more than ``max_attempts`` ever get one."""
    meta = LoginCode._meta
    quote = connection.ops.quote_name
    columns = {field.name: field.column for field in meta.concrete_fields if field.column}

    def column(name: str) -> str:
        return quote(columns[name])

    attempts = column("attempts")
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {attempts} = {attempts} + 1"
        f" WHERE {column('id')} = %s AND {attempts} < %s"
        f" AND {column('used_at')} IS NULL AND {column('burned_at')} IS NULL"
        f" AND {column('expires_at')} > %s RETURNING {attempts}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [code_id, max_attempts, connection.ops.adapt_datetimefield_value(now)])
        claimed = cursor.fetchone()
    return None if claimed is None else int(claimed[0])


def _customer_for(identity: Identity, language: str) -> Customer:
    """The customer with this identity, created on first login (the unique constraint
    settles a race between two first logins)."""
    lookup = (
        {"phone": identity.value}
        if identity.kind == IdentityKind.PHONE
        else {"email": identity.value}
    )
    existing = Customer.objects.filter(**lookup).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            return Customer.objects.create(language=language, **lookup)
    except IntegrityError:
        return Customer.objects.get(**lookup)


# Used, burned and expired codes are kept this long (abuse investigations), then deleted.
CODE_RETENTION = timedelta(days=7)


def prune_login_data() -> int:
    """Delete old codes and finished rate-limit windows (run by the janitor)."""
    deleted, _ = LoginCode.objects.filter(created_at__lt=timezone.now() - CODE_RETENTION).delete()
    return deleted + ratelimit.prune()
