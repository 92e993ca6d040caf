"""Money: integer minor units in the database, decimal strings on the API."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from functools import cache

import iso4217
from django.utils.translation import gettext_lazy as _

from simtopup.core.errors import DomainError

# The largest amount accepted, in minor units (¥10,000,000,000,000.00): far above any real
# payment, deposit or credit, and far below what the ledger's 64-bit balances hold even
# summed many times over — a larger number is a typing mistake, refused on its form instead
# of failing in the database (or, written with an exponent such as ``1e999999999``, taking
# the process's memory to turn into an integer).
MAX_MINOR = 10**15


@cache
def exponent(currency: str) -> int:
    """Number of decimals of an ISO 4217 currency (CNY → 2, JPY → 0)."""
    try:
        value = iso4217.Currency(currency.upper()).exponent
    except ValueError:
        raise DomainError("unknown_currency", _("Unknown currency."), 422) from None
    return int(value or 0)


def to_minor(text: str, currency: str, *, field: str = "amount", allow_zero: bool = False) -> int:
    """Parse ``"30.00"`` into 3000 (CNY). Refuses floats' rounding, too many decimals, signs."""
    exp = exponent(currency)
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise DomainError(
            "invalid_amount", _("The amount must be a decimal number."), 422
        ) from None
    if not value.is_finite():
        raise DomainError("invalid_amount", _("The amount must be a decimal number."), 422)
    scaled = value.scaleb(exp)
    if scaled != scaled.to_integral_value():
        raise DomainError(
            "too_many_decimals",
            _("The amount has more decimals than the currency allows."),
            422,
        )
    if scaled > MAX_MINOR:
        raise DomainError(
            "amount_too_large",
            _("The amount is too large (at most %(max)s).")
            % {"max": to_decimal_string(MAX_MINOR, currency)},
            422,
        )
    minor = int(scaled)
    if minor < 0 or (minor == 0 and not allow_zero):
        raise DomainError("amount_not_positive", _("The amount must be greater than zero."), 422)
    return minor


def to_decimal_string(minor: int, currency: str) -> str:
    exp = exponent(currency)
    return str(Decimal(minor).scaleb(-exp).quantize(Decimal(1).scaleb(-exp)))


def money(minor: int, currency: str) -> dict[str, str]:
    return {"amount": to_decimal_string(minor, currency), "currency": currency}


SYMBOLS = {
    "CNY": "¥",
    "JPY": "¥",
    "HKD": "HK$",
    "TWD": "NT$",
    "MOP": "MOP$",
    "USD": "$",
    "EUR": "€",
    "GBP": "£",
    "SGD": "S$",
    "KRW": "₩",
}


def format_money(minor: int, currency: str) -> str:
    """For people (glossary: ``¥30.00``): the currency's symbol, thousands grouped and its
    exact decimals (``¥1,000.00``, ``-¥1,234.50``); the ISO code where there is no
    well-known symbol (``THB 1,000.00``). Chinese (zh-Hans, zh-Hant) and English all group
    digits in threes with a comma, so one form serves the three languages. For machines
    (API, CSV) use :func:`to_decimal_string`, which never groups."""
    exp = exponent(currency)
    value = Decimal(minor).scaleb(-exp)
    amount = f"{abs(value):,.{exp}f}"
    sign = "-" if minor < 0 else ""
    symbol = SYMBOLS.get(currency.upper())
    return f"{sign}{symbol}{amount}" if symbol else f"{sign}{currency.upper()} {amount}"
