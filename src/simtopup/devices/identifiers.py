"""Parse and validate what a person types from the back of a card (docs/api.md "Identifiers").

Order of decisions:
1. an identifier found in inventory is accepted exactly as imported (even with an odd check
   digit — the operator's import is the truth);
2. otherwise its shape decides what it claims to be, and a wrong check digit says so;
3. a valid identifier not in inventory is ``unknown_device``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from stdnum import luhn
from stdnum.iso7064 import mod_97_10

from simtopup.core.errors import field_error
from simtopup.devices.models import Device

_SEPARATORS = re.compile(r"[\s\-]+")
MAX_IDENTIFIER_LENGTH = 64


class IdentifierKind(StrEnum):
    IMEI = "imei"
    ICCID = "iccid"
    EID = "eid"
    SERIAL = "serial"


@dataclass(frozen=True)
class Parsed:
    kind: IdentifierKind | None  # None: digits of no known shape (may still be a serial)
    value: str  # normalised form
    check_ok: bool


def normalise_digits(raw: str) -> str:
    """Strip spaces, dashes and an ICCID's trailing ``F`` filler."""
    if raw.isdigit():
        return raw  # already plain digits: what network systems send, a thousand per batch
    text = _SEPARATORS.sub("", raw.strip())
    if len(text) in (20, 21) and text[:-1].isdigit() and text[-1] in "fF":
        text = text[:-1]
    return text


def parse(raw: str) -> Parsed:
    """Classify by shape and check the check digit. Does not look at inventory."""
    text = normalise_digits(raw)
    if not text.isdigit():
        return Parsed(None, raw.strip(), False)
    if len(text) == 15:
        return Parsed(IdentifierKind.IMEI, text, luhn.is_valid(text))
    if len(text) in (19, 20) and text.startswith("89"):
        return Parsed(IdentifierKind.ICCID, text, luhn.is_valid(text))
    if len(text) == 32:
        return Parsed(IdentifierKind.EID, text, mod_97_10.is_valid(text))
    return Parsed(None, text, False)


def check_digit_message(kind: IdentifierKind) -> str:
    """What a customer is told when a number's check digit(s) do not add up: the words they
    use, not the algorithm's name (an EID's check is its last two digits)."""
    if kind is IdentifierKind.EID:
        return str(
            _(
                "The last two digits don't match — check the number. Please re-read the EID "
                "on the back of the card: a digit is probably mistyped."
            )
        )
    return _(
        "The last digit doesn't match — check the number. Please re-read the %(kind)s "
        "on the back of the card: a digit is probably mistyped."
    ) % {"kind": kind.value.upper()}


def find_device(raw: str, *, field: str = "device", for_update: bool = False) -> Device:
    """Resolve any accepted identifier to a device in inventory, or raise a DomainError.

    Does not check whether the device may be recharged: see :func:`rechargeable_device`.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise field_error(
            "invalid_identifier", _("Enter the device ID printed on the card."), field
        )
    if len(raw) > MAX_IDENTIFIER_LENGTH * 2:
        raise field_error("invalid_identifier", _("This is not a device ID we recognise."), field)
    stripped = raw.strip()
    digits = normalise_digits(stripped)
    query = Q(serial=stripped)
    if digits.isdigit():
        query |= Q(imei=digits) | Q(iccid=digits) | Q(eid=digits) | Q(serial=digits)
    qs = Device.objects.filter(query)
    if for_update:
        qs = qs.select_for_update()
    device = qs.order_by("pk").first()
    if device is not None:
        return device
    parsed = parse(stripped)
    if parsed.kind is None:
        raise field_error(
            "invalid_identifier",
            _(
                "This is not a device ID we recognise. It should be the IMEI (15 digits), "
                "ICCID (19–20 digits starting 89), EID (32 digits) or the serial number "
                "printed on the back of the card."
            ),
            field,
        )
    if not parsed.check_ok:
        raise field_error("check_digit_mismatch", check_digit_message(parsed.kind), field)
    raise field_error(
        "unknown_device",
        _("This %(kind)s is valid, but it is not one of our cards. Please check the number.")
        % {"kind": parsed.kind.value.upper()},
        field,
    )


def rechargeable_device(raw: str, *, field: str = "device") -> Device:
    device = find_device(raw, field=field)
    if not device.rechargeable:
        raise field_error(
            "device_not_rechargeable",
            _(
                "This card is suspended or retired and cannot be topped up. Please contact customer service."
            ),
            field,
        )
    return device


def labelled(device: Device) -> list[tuple[str, str]]:
    """The identifiers a card carries, each with its label (the customer's card page and the
    desk show the same list): ICCID, EID, IMEI and serial number, those it has."""
    return [
        (str(label), value)
        for label, value in (
            ("ICCID", device.iccid),
            ("EID", device.eid),
            ("IMEI", device.imei),
            (_("Serial number"), device.serial),
        )
        if value
    ]
