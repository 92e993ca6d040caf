"""A customer by what they read out over the phone: their phone number (national or E.164
form, with spaces or dashes) or their email address (any case). The same parsing as the
login (accounts/login.py), so the desk finds the customer the login made."""

from __future__ import annotations

from simtopup.accounts.login import parse_email, parse_phone
from simtopup.accounts.models import Customer
from simtopup.core.errors import DomainError


def contact_of(text: str) -> tuple[str, str] | None:
    """``("phone", E.164)`` or ``("email", lower-cased)`` for what was typed, or None when
    it is neither."""
    text = text.strip()
    if "@" in text:
        try:
            return "email", parse_email(text)
        except DomainError:
            return None
    if sum(ch.isdigit() for ch in text) < 7:
        return None
    try:
        return "phone", parse_phone(text)
    except DomainError:
        return None


def customers_by_contact(text: str) -> list[Customer]:
    """The customer whose phone number or email this is (at most one: both are unique)."""
    contact = contact_of(text)
    if contact is None:
        return []
    kind, value = contact
    return list(Customer.objects.filter(**{kind: value})[:1])
