"""Small helpers shared by the real providers: required settings, PEM keys, headers, time.

Keys come from environment variables (inline or through ``*_FILE``) in whichever shape the
operator was handed: a PEM block (PKCS#8 or PKCS#1 "traditional"), the same with ``\\n``
escapes because it went through a one-line variable, or bare base64 DER as Alipay's key tool
prints it. They are normalised here to one PEM form, so a wrong key fails at start-up with a
clear message instead of as a mysterious signature error on the first payment.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from functools import lru_cache
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext

from simtopup.core.errors import DomainError
from simtopup.core.money import to_minor
from simtopup.payments.providers.base import PaymentRequest, ProviderError, RefundRequest

# Alipay and WeChat Pay speak China Standard Time (no DST) in their own timestamps.
BEIJING = ZoneInfo("Asia/Shanghai")

# Our references and refund references, as every provider accepts them in out_trade_no /
# out_request_no / metadata. WeChat Pay is stricter still (out_trade_no at most 32 long).
REFERENCE = re.compile(r"[0-9A-Za-z_-]{6,64}")


def require(name: str) -> str:
    """A required setting, stripped; ImproperlyConfigured naming the variable if empty."""
    value = str(getattr(settings, name, "") or "").strip()
    if not value:
        raise ImproperlyConfigured(
            f"SIMTOPUP_{name} is not set (or SIMTOPUP_{name}_FILE pointing at a file with it)."
        )
    return value


def _pem_text(value: str) -> str:
    text = value.strip()
    if "\\n" in text and "\n" not in text:
        text = text.replace("\\n", "\n")
    return text


def _der(value: str, name: str) -> bytes:
    compact = re.sub(r"\s+", "", value)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise ImproperlyConfigured(
            f"SIMTOPUP_{name} is neither a PEM block nor base64 DER."
        ) from None


def private_key_pem(name: str) -> str:
    """The RSA private key in setting ``name`` as PKCS#8 PEM text (what both SDKs load)."""
    return _private_pem(name, require(name))


@lru_cache(maxsize=16)
def _private_pem(name: str, value: str) -> str:
    # Cached: checking an RSA key costs tens of milliseconds, and providers are built per use.
    key = _read_key(name, value, private=True)
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
        raise ImproperlyConfigured(f"SIMTOPUP_{name} must be an RSA key of 2048 bits or more.")
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_key_pem(name: str) -> str:
    """The RSA public key in setting ``name`` as SubjectPublicKeyInfo PEM text."""
    return _public_pem(name, require(name))


@lru_cache(maxsize=16)
def _public_pem(name: str, value: str) -> str:
    key = _read_key(name, value, private=False)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ImproperlyConfigured(f"SIMTOPUP_{name} must be an RSA public key.")
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def _read_key(name: str, value: str, *, private: bool) -> object:
    """The private or public key in setting ``name``, from a PEM block or from base64 DER;
    ImproperlyConfigured naming the variable if it reads as neither."""
    text = _pem_text(value)
    pem = "-----BEGIN" in text
    data = text.encode() if pem else _der(text, name)
    try:
        if private:
            read = serialization.load_pem_private_key if pem else serialization.load_der_private_key
            return read(data, password=None)
        return (serialization.load_pem_public_key if pem else serialization.load_der_public_key)(
            data
        )
    except (ValueError, TypeError) as exc:
        what = "unencrypted private key" if private else "public key"
        raise ImproperlyConfigured(f"SIMTOPUP_{name} is not a readable {what} ({exc}).") from None


def header(headers: Mapping[str, str], name: str) -> str:
    """Header ``name`` from request headers in any case, or from Django's ``META`` form
    (``HTTP_STRIPE_SIGNATURE``); empty if absent."""
    wanted = name.lower()
    meta = "http_" + wanted.replace("-", "_")
    for key, value in headers.items():
        if key.lower() in (wanted, meta):
            return str(value)
    return ""


def gateway_url(name: str) -> str:
    """An optional gateway URL setting: empty, or an http(s) URL."""
    value = str(getattr(settings, name, "") or "").strip()
    if value and not value.startswith(("https://", "http://")):
        raise ImproperlyConfigured(f"SIMTOPUP_{name} must be an https:// URL, not {value!r}.")
    return value


def check_payment_request(
    request: PaymentRequest, methods: frozenset[str], *, yuan_only: bool = False
) -> None:
    """The provider takes ``request``: one of its ``methods``, and in Chinese yuan when that
    is all it settles in (Alipay and WeChat Pay direct)."""
    if request.method not in methods:
        raise ProviderError(
            "payment_method_unavailable", gettext("This payment method is not available.")
        )
    if yuan_only and request.currency.upper() != "CNY":
        raise ProviderError(
            "currency_not_supported",
            gettext("This payment method takes payments in Chinese yuan only."),
        )


def check_reference(reference: str, pattern: re.Pattern[str] = REFERENCE) -> None:
    """A payment or refund reference in the form the provider accepts (``pattern``)."""
    if not pattern.fullmatch(reference):
        raise ProviderError("invalid_reference", gettext("The payment reference is not valid."))


def check_refund(refund: RefundRequest, currency: str = "") -> None:
    """A refund takes 1 … the payment's amount in minor units, in the payment's currency
    (when the provider has one fixed ``currency``)."""
    if not 0 < refund.amount <= refund.total:
        raise ProviderError("invalid_refund_amount", gettext("The refund amount is not valid."))
    if currency and (refund.currency or "").upper() != currency:
        raise ProviderError(
            "currency_mismatch", gettext("The refund currency differs from the payment's.")
        )


def malformed_statement_error(why: str) -> ProviderError:
    """A statement we cannot read (cut short, another format): nothing is concluded from it;
    a later run fetches it again."""
    return ProviderError("statement_malformed", f"the provider's statement is malformed: {why}")


def yuan_to_fen(text: str) -> int:
    """The magnitude of a statement's yuan amount (``"30.00"``, ``"-0.01"``) in fen, exactly
    (Decimal, never a float); a statement's refunds may carry a minus sign."""
    value = text.strip().lstrip("+-")
    try:
        return to_minor(value or "0", "CNY", allow_zero=True)
    except DomainError:
        raise malformed_statement_error(f"amount {text!r}") from None
