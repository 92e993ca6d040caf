"""Identifiers typed from the back of a card (docs/api.md "Identifiers")."""

from __future__ import annotations

import pytest
from django.utils import translation
from hypothesis import given
from hypothesis import strategies as st
from stdnum import luhn

from simtopup.core.errors import DomainError
from simtopup.devices.identifiers import (
    IdentifierKind,
    find_device,
    normalise_digits,
    parse,
    rechargeable_device,
)
from simtopup.devices.inventory import create_device
from simtopup.devices.models import Device, DeviceStatus
from tests.support import eid, iccid, imei


def other_digit(identifier: str, position: int = -1) -> str:
    """The identifier with one digit changed."""
    digits = list(identifier)
    digits[position] = str((int(digits[position]) + 1) % 10)
    return "".join(digits)


def refused(raw: object, **kwargs: str) -> DomainError:
    with pytest.raises(DomainError) as caught:
        find_device(raw, **kwargs)  # type: ignore[arg-type]
    return caught.value


# --- parse: shape and check digits, no inventory -----------------------------------------


def test_an_imei_is_15_digits_with_a_luhn_check_digit() -> None:
    assert parse(imei(1)) == parse(f" {imei(1)[:8]}-{imei(1)[8:14]}-{imei(1)[14]} ")
    parsed = parse(imei(1))
    assert (parsed.kind, parsed.value, parsed.check_ok) == (IdentifierKind.IMEI, imei(1), True)
    wrong = parse(other_digit(imei(1)))
    assert (wrong.kind, wrong.check_ok) == (IdentifierKind.IMEI, False)


@pytest.mark.parametrize(
    "typed",
    [
        "8986 0100 0000 0000 018",
        "8986-0100-0000-0000-018",
        "8986010000000000018F",
        "8986010000000000018f",
        " 8986 0100 0000 0000 018 F ",
    ],
)
def test_an_iccid_is_normalised_from_how_it_is_printed(typed: str) -> None:
    assert iccid(1) == "8986010000000000018"
    parsed = parse(typed)
    assert (parsed.kind, parsed.value, parsed.check_ok) == (IdentifierKind.ICCID, iccid(1), True)


def test_an_iccid_may_have_20_digits() -> None:
    body = "8986011234567890123"
    twenty = body + luhn.calc_check_digit(body)
    assert parse(twenty) == parse(twenty + "F")
    assert parse(twenty).kind == IdentifierKind.ICCID
    assert parse(twenty).check_ok is True
    assert parse(other_digit(twenty)).check_ok is False


@pytest.mark.parametrize(
    "digits",
    [
        "898601000000000001",  # 18 digits
        "898601000000000000017",  # 21 digits
        "1986010000000000017",  # 19 digits, not 89
    ],
)
def test_digits_of_no_known_shape_are_nothing_in_particular(digits: str) -> None:
    parsed = parse(digits)
    assert parsed.kind is None
    assert parsed.check_ok is False


def test_an_eid_is_32_digits_with_mod_97_10_check_digits() -> None:
    assert int(eid(1)) % 97 == 1
    parsed = parse(" ".join(eid(1)[i : i + 8] for i in range(0, 32, 8)))
    assert (parsed.kind, parsed.value, parsed.check_ok) == (IdentifierKind.EID, eid(1), True)
    wrong = other_digit(eid(1))
    assert int(wrong) % 97 != 1
    assert (parse(wrong).kind, parse(wrong).check_ok) == (IdentifierKind.EID, False)


def test_a_serial_is_kept_verbatim() -> None:
    parsed = parse("  SN-0042/b f ")
    assert (parsed.kind, parsed.value, parsed.check_ok) == (None, "SN-0042/b f", False)


def test_normalise_digits_strips_only_an_iccids_trailing_f() -> None:
    assert normalise_digits(" 8986-0100 0000\t0000 018F ") == iccid(1)
    assert normalise_digits("12345F") == "12345F"  # too short for an ICCID filler
    assert normalise_digits("SN-1 2") == "SN12"


# --- find_device: inventory first, then shape, then check digits -------------------------


@pytest.fixture
def card(db: None) -> Device:
    return create_device(kind="esim", iccid=iccid(1), eid=eid(1), imei=imei(1), serial="SN-001")


@pytest.mark.parametrize(
    "typed",
    [
        iccid(1),
        "8986 0100 0000 0000 018",
        "8986-0100-0000-0000-018 F",
        eid(1),
        f"{eid(1)[:16]} {eid(1)[16:]}",
        imei(1),
        f"{imei(1)[:2]}-{imei(1)[2:8]}-{imei(1)[8:14]}-{imei(1)[14]}",
        "SN-001",
        "  SN-001 ",
    ],
)
def test_it_finds_a_card_by_any_of_its_identifiers(card: Device, typed: str) -> None:
    assert find_device(typed) == card


def test_a_serial_is_matched_exactly_as_imported(card: Device) -> None:
    error = refused("sn-001")
    assert error.code == "invalid_identifier"
    digits = create_device(kind="sim", serial="0042 1234")
    assert find_device("0042 1234") == digits
    assert refused("0042-1234").code == "invalid_identifier"


@pytest.mark.parametrize("typed", ["hello", "1234", "SN-002", "8986 0100 0000 0000", "", "   "])
def test_it_refuses_what_is_not_a_device_id(card: Device, typed: str) -> None:
    error = refused(typed)
    assert error.code == "invalid_identifier"
    assert error.status == 422
    assert [(e.field, e.code) for e in error.errors] == [("device", "invalid_identifier")]


def test_it_refuses_absurd_input_before_looking(card: Device) -> None:
    assert refused("8" * 200).code == "invalid_identifier"
    assert refused(None).code == "invalid_identifier"


@pytest.mark.parametrize(
    ("typed", "kind", "last"),
    [
        (other_digit(iccid(2)), "ICCID", "The last digit doesn't match"),
        ("8986 0100 0000 0000 017", "ICCID", "The last digit doesn't match"),
        (other_digit(imei(2)), "IMEI", "The last digit doesn't match"),
        (other_digit(eid(2)), "EID", "The last two digits don't match"),
    ],
)
def test_a_wrong_check_digit_says_so(card: Device, typed: str, kind: str, last: str) -> None:
    error = refused(typed, field="card")
    assert error.code == "check_digit_mismatch"
    assert error.errors[0].field == "card"
    assert error.errors[0].code == "check_digit_mismatch"
    message = str(error.message)
    assert message.startswith(f"{last} — check the number.")
    assert f"re-read the {kind} on the back of the card" in message
    # The customer's words, not the algorithm's name.
    assert "Luhn" not in message
    assert "MOD 97" not in message


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", "The last digit doesn't match — check the number."),
        ("zh-hans", "最后一位数字对不上——请核对号码。"),
        ("zh-hant", "最後一位數字對不上——請核對號碼。"),
    ],
)
def test_a_wrong_check_digit_in_each_language(card: Device, language: str, expected: str) -> None:
    with translation.override(language):
        message = str(refused(other_digit(iccid(2))).message)
    assert message.startswith(expected)
    assert "ICCID" in message
    for algorithm in ("Luhn", "校验位", "檢查碼"):
        assert algorithm not in message


@pytest.mark.parametrize("typed", [iccid(999), imei(999), eid(999)])
def test_a_valid_identifier_not_in_inventory_is_unknown(card: Device, typed: str) -> None:
    error = refused(typed)
    assert error.code == "unknown_device"
    assert parse(typed).kind is not None
    assert parse(typed).check_ok is True
    assert parse(typed).kind.value.upper() in str(error.message)  # type: ignore[union-attr]


def test_an_identifier_in_inventory_is_accepted_even_with_an_odd_check_digit(db: None) -> None:
    odd_iccid = other_digit(iccid(7))
    odd_imei = other_digit(imei(7))
    odd_eid = other_digit(eid(7))
    assert not parse(odd_iccid).check_ok
    odd = create_device(kind="sim", iccid=odd_iccid)
    other = create_device(kind="hotspot", imei=odd_imei, eid=odd_eid)
    assert find_device(odd_iccid) == odd
    assert find_device(f"{odd_iccid[:4]} {odd_iccid[4:]}F") == odd
    assert find_device(odd_imei) == other
    assert find_device(odd_eid) == other
    # One digit away from the odd card is still a mistyped label.
    assert refused(other_digit(odd_iccid, position=5)).code == "check_digit_mismatch"


def test_find_device_can_lock_the_row(card: Device) -> None:
    assert find_device(iccid(1), for_update=True) == card


# --- rechargeable_device ---------------------------------------------------------------


@pytest.mark.parametrize("status", [DeviceStatus.IN_STOCK, DeviceStatus.ACTIVE])
def test_cards_in_stock_or_active_can_be_recharged(card: Device, status: DeviceStatus) -> None:
    Device.objects.filter(pk=card.pk).update(status=status)
    assert rechargeable_device("8986 0100 0000 0000 018") == card


@pytest.mark.parametrize("status", [DeviceStatus.SUSPENDED, DeviceStatus.RETIRED])
def test_suspended_or_retired_cards_cannot_be_recharged(card: Device, status: DeviceStatus) -> None:
    Device.objects.filter(pk=card.pk).update(status=status)
    assert find_device(iccid(1)) == card  # still found …
    with pytest.raises(DomainError) as caught:
        rechargeable_device(iccid(1), field="target")  # … but refused for a top-up
    assert caught.value.code == "device_not_rechargeable"
    assert [(e.field, e.code) for e in caught.value.errors] == [
        ("target", "device_not_rechargeable")
    ]


def test_rechargeable_device_reports_identifier_errors_first(card: Device) -> None:
    with pytest.raises(DomainError) as caught:
        rechargeable_device(iccid(999))
    assert caught.value.code == "unknown_device"


# --- property: every printed form of a valid ICCID ----------------------------------------

SEPARATORS = st.sampled_from(["", "", "", " ", "-", "  ", " - ", "\t"])


@st.composite
def printed_iccids(draw: st.DrawFn) -> tuple[str, str]:
    """(a valid 19-digit ICCID, the same ICCID as someone might print or type it)."""
    body = "89" + draw(st.text(alphabet="0123456789", min_size=16, max_size=16))
    number = body + luhn.calc_check_digit(body)
    separators = draw(st.lists(SEPARATORS, min_size=len(number), max_size=len(number)))
    typed = "".join(digit + sep for digit, sep in zip(number, separators, strict=True))
    typed += draw(st.sampled_from(["", "F", "f", " F"]))
    lead, trail = draw(st.sampled_from(["", " "])), draw(st.sampled_from(["", " ", "\n"]))
    return number, lead + typed + trail


@given(printed_iccids())
def test_any_printed_form_of_a_valid_iccid_parses_to_its_digits(case: tuple[str, str]) -> None:
    number, typed = case
    parsed = parse(typed)
    assert parsed.kind == IdentifierKind.ICCID
    assert parsed.value == number
    assert parsed.check_ok is True


@given(printed_iccids(), st.integers(min_value=0, max_value=18), st.integers(1, 9))
def test_changing_any_one_digit_of_an_iccid_breaks_its_check(
    case: tuple[str, str], position: int, delta: int
) -> None:
    number, _typed = case
    digits = list(number)
    digits[position] = str((int(digits[position]) + delta) % 10)
    changed = "".join(digits)
    parsed = parse(changed)
    assert parsed.check_ok is False
    if position >= 2:  # still shaped like an ICCID, so the check digit is what fails
        assert parsed.kind == IdentifierKind.ICCID
