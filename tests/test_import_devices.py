"""`simtopup import-devices FILE.csv`: all-or-nothing, idempotent inventory import."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from simtopup.accounts.models import Customer
from simtopup.devices import importer
from simtopup.devices.binding import bind_device, pin_matches
from simtopup.devices.identifiers import find_device
from simtopup.devices.inventory import create_device
from simtopup.devices.models import Device, DeviceStatus
from simtopup.ledger.audit import audit
from simtopup.ledger.models import BYTES, Account, AccountKind
from tests.support import Actors, eid, iccid, imei

HEADER = "kind,imei,iccid,eid,serial,activation_code"


def bad_check_digit(identifier: str) -> str:
    return identifier[:-1] + str((int(identifier[-1]) + 1) % 10)


def spaced(identifier: str) -> str:
    """As printed on a card: groups of four, separated by spaces."""
    return " ".join(identifier[i : i + 4] for i in range(0, len(identifier), 4))


def write(tmp_path: Path, *lines: str, name: str = "devices.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def run(path: Path | str) -> str:
    out = io.StringIO()
    call_command("import_devices", str(path), stdout=out, stderr=io.StringIO())
    return out.getvalue()


def rejected(path: Path | str) -> list[str]:
    """Run an import that must fail; return the problems it printed, one per line."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match=r"problem\(s\) found; nothing was imported"):
        call_command("import_devices", str(path), stdout=out, stderr=err)
    assert out.getvalue() == ""
    return err.getvalue().splitlines()


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_it_imports_every_kind_with_normalised_identifiers(db: None, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER,
        f"esim,,{spaced(iccid(101))},{eid(101)},,LPA:1$smdp.example.com$MATCH-101",
        f"sim,,{iccid(102).replace('898601', '89-8601-')}F,,  SN 102/a  ,",
        f"hotspot,{imei(103)[:8]}-{imei(103)[8:]},,,HS-103,",
    )
    assert run(path) == "3 created, 0 unchanged\n"

    esim = Device.objects.get(iccid=iccid(101))
    assert esim.kind == "esim"
    assert esim.eid == eid(101)
    assert esim.imei is None
    assert esim.serial is None
    assert esim.activation_code == "LPA:1$smdp.example.com$MATCH-101"
    assert esim.status == DeviceStatus.IN_STOCK
    sim = Device.objects.get(iccid=iccid(102))  # dashes and the trailing F are gone
    assert sim.kind == "sim"
    assert sim.serial == "SN 102/a"  # serial verbatim, only the surrounding blanks stripped
    assert sim.activation_code == ""
    hotspot = Device.objects.get(imei=imei(103))
    assert (hotspot.kind, hotspot.serial, hotspot.iccid) == ("hotspot", "HS-103", None)

    # create_device opened each card's ledger accounts.
    assert esim.credit_account.kind == AccountKind.DEVICE_CREDIT
    assert esim.credit_account.unit == "CNY"
    assert esim.overage_account.kind == AccountKind.DEVICE_OVERAGE
    assert esim.overage_account.unit == BYTES
    assert Account.objects.filter(code__startswith="device:").count() == 6
    # What a customer types from the card now resolves to the imported device.
    assert find_device(spaced(iccid(101))) == esim
    assert find_device("SN 102/a") == sim
    assert audit() == []


def test_every_bad_row_is_reported_with_its_line_and_nothing_is_written(
    db: None, tmp_path: Path
) -> None:
    too_long = "S" * 65
    path = write(
        tmp_path,
        HEADER,
        f"esim,,{iccid(101)},,SN-101,LPA:1$smdp.example$A",  # 2: fine on its own
        f"esim,,{bad_check_digit(iccid(102))},,,",  # 3
        "modem,,,,SN-104,",  # 4
        "sim,,,,,",  # 5
        f"hotspot,{bad_check_digit(imei(106))},,,,",  # 6
        f"esim,,,{bad_check_digit(eid(107))},,",  # 7
        "esim,12345,,,,",  # 8
        "esim,,12345678901234567890,,,",  # 9
        f"esim,,,,{too_long},",  # 10
        "esim,,,,SN-111,smdp.example$MATCH",  # 11
        f"esim,,{spaced(iccid(101))},,,",  # 12: the ICCID of line 2 again
        "esim,,,,SN-113",  # 13
        f"sim,{iccid(114)},{imei(114)},,,",  # 14: columns swapped
        "",
        f"esim,,,{eid(116)},,",  # 16: fine on its own
    )
    problems = rejected(path)
    assert problems == [
        f"line 3: ICCID check digit does not match: {bad_check_digit(iccid(102))}",
        "line 4: unknown kind 'modem' (expected one of esim, sim, hotspot)",
        "line 5: no identifier: give at least one of IMEI, ICCID, EID or serial",
        f"line 6: IMEI check digit does not match: {bad_check_digit(imei(106))}",
        f"line 7: EID check digits do not match: {bad_check_digit(eid(107))}",
        "line 8: IMEI must be 15 digits, not '12345'",
        "line 9: ICCID must be 19–20 digits starting with 89, not '12345678901234567890'",
        "line 10: serial is longer than 64 characters",
        "line 11: activation_code must start with LPA: (e.g. LPA:1$smdp.example$MATCHING-ID)",
        "line 12: duplicate ICCID " + iccid(101) + ": already on line 2",
        "line 13: expected 6 fields, found 5",
        f"line 14: IMEI must be 15 digits, not '{iccid(114)}'",
        f"line 14: ICCID must be 19–20 digits starting with 89, not '{imei(114)}'",
    ]
    assert Device.objects.count() == 0
    assert not Account.objects.exclude(kind="system").exists()  # system accounts come from migrate


def test_line_numbers_count_physical_lines_across_quoted_newlines(db: None, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER,
        f'esim,,{iccid(101)},,"SN',  # 2–3: a quoted serial spanning two lines
        '101",',
        "",
        "esim,,,,SN-105,LPA1$smdp.example$X",  # 5
    )
    assert rejected(path) == [
        "line 2: serial contains control characters",
        "line 5: activation_code must start with LPA: (e.g. LPA:1$smdp.example$MATCHING-ID)",
    ]


def test_the_same_identifier_in_two_columns_of_one_row_is_one_device(
    db: None, tmp_path: Path
) -> None:
    # Some operators print the ICCID as the card's serial.
    path = write(tmp_path, HEADER, f"sim,,{iccid(101)},,{iccid(101)},")
    assert run(path) == "1 created, 0 unchanged\n"
    assert find_device(iccid(101)).serial == iccid(101)


def test_an_identifier_in_another_column_of_another_row_is_a_duplicate(
    db: None, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        HEADER,
        f"esim,,{iccid(101)},,,",
        f"sim,,,,{iccid(101)},",
        f"sim,,,,{spaced(iccid(101))},",
        "hotspot,,,,0123-4567,",
        "hotspot,,,,01234567,",
    )
    assert rejected(path) == [
        f"line 3: duplicate serial {iccid(101)}: already on line 2",
        f"line 4: duplicate serial {spaced(iccid(101))}: already on line 2",
        "line 6: duplicate serial 01234567: already on line 5",
    ]


def test_a_serial_that_reads_as_another_cards_iccid_is_refused(
    actors: Actors, tmp_path: Path
) -> None:
    # A customer typing either value would reach both cards.
    create_device(kind="sim", serial=spaced(iccid(300)) + " F")
    existing = Device.objects.get(serial=spaced(iccid(300)) + " F")
    path = write(
        tmp_path,
        HEADER,
        f"sim,,{iccid(300)},,,",  # 2: the ICCID an existing serial reads as
        f"sim,,,,{actors.device.iccid[:10]}-{actors.device.iccid[10:]},",  # 3
    )
    assert rejected(path) == [
        f"line 2: ICCID {iccid(300)} already belongs to another device in inventory: "
        f"device {existing.pk} (serial {existing.serial})",
        f"line 3: serial {actors.device.iccid[:10]}-{actors.device.iccid[10:]} already belongs "
        f"to another device in inventory: device {actors.device.pk} "
        f"(ICCID {actors.device.iccid}, EID {actors.device.eid})",
    ]
    assert Device.objects.count() == 6


def test_reimporting_the_same_file_is_idempotent(db: None, tmp_path: Path) -> None:
    rows = [
        HEADER,
        f"esim,,{iccid(101)},{eid(101)},,LPA:1$smdp.example$A",
        f"sim,,{spaced(iccid(102))}F,,SN-102,",
        f"hotspot,{imei(103)},,,,",
    ]
    path = write(tmp_path, *rows)
    assert run(path) == "3 created, 0 unchanged\n"
    accounts = Account.objects.count()

    assert run(path) == "0 created, 3 unchanged\n"
    assert Device.objects.count() == 3
    assert Account.objects.count() == accounts

    bigger = write(tmp_path, *rows, f"esim,,,{eid(104)},,", name="more.csv")
    assert run(bigger) == "1 created, 3 unchanged\n"
    assert Device.objects.count() == 4
    assert audit() == []


def test_it_refuses_identifiers_that_belong_to_other_devices(
    actors: Actors, tmp_path: Path
) -> None:
    first, second, third, fourth, fifth = actors.devices  # esim, ICCID n + EID n
    path = write(
        tmp_path,
        HEADER,
        f"esim,,{first.iccid},,,",  # 2: same ICCID, but without the device's EID
        f"sim,,,,{spaced(second.iccid)},",  # 3: a serial equal to another card's ICCID
        f"esim,,{third.iccid},{fourth.eid},,",  # 4: identifiers of two devices
        f"esim,,{iccid(200)},,,",  # 5: fine on its own
    )
    assert rejected(path) == [
        f"line 2: ICCID {first.iccid} already belongs to another device in inventory: "
        f"device {first.pk} (ICCID {first.iccid}, EID {first.eid})",
        f"line 3: serial {spaced(second.iccid)} already belongs to another device in inventory: "
        f"device {second.pk} (ICCID {second.iccid}, EID {second.eid})",
        f"line 4: ICCID {third.iccid} already belongs to another device in inventory: "
        f"device {third.pk} (ICCID {third.iccid}, EID {third.eid})",
        f"line 4: EID {fourth.eid} already belongs to another device in inventory: "
        f"device {fourth.pk} (ICCID {fourth.iccid}, EID {fourth.eid})",
    ]
    assert Device.objects.count() == 5
    assert not Device.objects.filter(iccid=iccid(200)).exists()
    assert fifth.pk


def test_it_does_not_change_an_existing_device_with_the_same_identifiers(
    actors: Actors, tmp_path: Path
) -> None:
    device = actors.device
    unchanged = write(tmp_path, HEADER, f"esim,,{device.iccid},{device.eid},,", name="same.csv")
    assert run(unchanged) == "0 created, 1 unchanged\n"

    changed = write(
        tmp_path,
        HEADER,
        f"sim,,{device.iccid},{device.eid},,",
        f"esim,,{actors.devices[1].iccid},{actors.devices[1].eid},,LPA:1$smdp.example$NEW",
        name="changed.csv",
    )
    described = f"device {device.pk} (ICCID {device.iccid}, EID {device.eid})"
    other = actors.devices[1]
    assert rejected(changed) == [
        f"line 2: {described} is already in inventory as kind esim, not sim; "
        "an import does not change existing devices",
        f"line 3: device {other.pk} (ICCID {other.iccid}, EID {other.eid}) is already in "
        "inventory with a different activation code; an import does not change existing devices",
    ]
    device.refresh_from_db()
    other.refresh_from_db()
    assert device.kind == "esim"
    assert other.activation_code == ""


def test_an_identifier_imported_with_an_odd_check_digit_blocks_the_same_value_in_a_file(
    db: None, tmp_path: Path
) -> None:
    odd = bad_check_digit(iccid(101))
    create_device(kind="sim", iccid=odd)  # the operator's earlier import is the truth
    path = write(tmp_path, HEADER, f"sim,,,,{odd},")
    device = Device.objects.get(iccid=odd)
    assert rejected(path) == [
        f"line 2: serial {odd} already belongs to another device in inventory: "
        f"device {device.pk} (ICCID {odd})"
    ]


def test_it_reads_a_file_with_a_byte_order_mark(db: None, tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, f"esim,,{iccid(101)},,,", encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert run(path) == "1 created, 0 unchanged\n"
    assert Device.objects.get(iccid=iccid(101)).kind == "esim"


def test_header_columns_may_come_in_any_order_and_case(db: None, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "Serial, ICCID ,kind,EID,IMEI,Activation_Code",
        f"SN-101,{iccid(101)},hotspot,,,",
    )
    assert run(path) == "1 created, 0 unchanged\n"
    device = Device.objects.get(serial="SN-101")
    assert (device.kind, device.iccid) == ("hotspot", iccid(101))


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (
            "kind,imei,iccid,eid,serial",
            "line 1: the header must name the columns kind,imei,iccid,eid,serial,activation_code[,pin] "
            "(missing activation_code)",
        ),
        (
            "kind,imei,iccid,eid,serial,activation_code,colour",
            "line 1: the header must name the columns kind,imei,iccid,eid,serial,activation_code[,pin] "
            "(unexpected colour)",
        ),
        (
            "kind,imei,iccid,iccid,serial,activation_code",
            "line 1: the header must name the columns kind,imei,iccid,eid,serial,activation_code[,pin] "
            "(missing eid; repeated iccid)",
        ),
        (
            f"esim,,{iccid(101)},,,",
            "line 1: the header must name the columns kind,imei,iccid,eid,serial,activation_code[,pin] "
            "(missing kind, imei, iccid, eid, serial, activation_code; unexpected esim, (empty), "
            f"{iccid(101)}, (empty), (empty), (empty))",
        ),
    ],
)
def test_it_requires_the_header_row(db: None, tmp_path: Path, header: str, problem: str) -> None:
    path = write(tmp_path, header, f"esim,,{iccid(102)},,,")
    assert rejected(path) == [problem]
    assert Device.objects.count() == 0


def test_a_header_without_rows_imports_nothing(db: None, tmp_path: Path) -> None:
    assert run(write(tmp_path, HEADER, "", ",,,,,")) == "0 created, 0 unchanged\n"


@pytest.mark.parametrize("content", [b"", b"\n \n", b"\xef\xbb\xbf"])
def test_an_empty_file_is_refused(db: None, tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    assert rejected(path) == [
        f"{path} is empty; the first line must be the header "
        "kind,imei,iccid,eid,serial,activation_code[,pin]"
    ]


def test_a_file_that_is_not_utf8_is_refused_with_its_line(db: None, tmp_path: Path) -> None:
    gbk = "卡".encode("gbk")
    path = tmp_path / "gbk.csv"
    path.write_bytes(f"{HEADER}\nesim,,{iccid(101)},,,\nsim,,,,".encode() + gbk + b",\n")
    assert rejected(path) == [
        f"line 3: the file is not UTF-8 text (byte 0x{gbk[0]:02x}); save it as CSV UTF-8"
    ]
    assert Device.objects.count() == 0


def test_a_missing_file_is_refused(db: None, tmp_path: Path) -> None:
    assert rejected(tmp_path / "missing.csv") == [f"{tmp_path / 'missing.csv'}: no such file"]
    assert rejected(tmp_path) == [f"{tmp_path}: cannot read (Is a directory)"]


@pytest.mark.parametrize(
    ("lines", "problem"),
    [
        (['esim,,"8986"01,,,'], "line 3: malformed CSV: ',' expected after '\"'"),
        (['esim,,"8986,,,', "sim,,,,SN-1,"], "line 3: malformed CSV: unexpected end of data"),
    ],
)
def test_malformed_csv_is_refused_with_its_line(
    db: None, tmp_path: Path, lines: list[str], problem: str
) -> None:
    path = write(tmp_path, HEADER, f"esim,,{iccid(101)},,,", *lines)
    assert rejected(path) == [problem]
    assert Device.objects.count() == 0


def test_existence_lookups_are_batched_not_per_row(
    db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, django_assert_num_queries
) -> None:
    rows = [f"esim,,{iccid(n)},,SN-{n},LPA:1$smdp.example${n}" for n in range(100, 150)]
    path = write(tmp_path, HEADER, *rows)
    assert run(path) == "50 created, 0 unchanged\n"
    monkeypatch.setattr(importer, "LOOKUP_BATCH", 10)
    # 100 identifiers in batches of 10, one query for serials written with separators, and
    # the savepoint and its release, the audit row (in a savepoint of its own): no query per
    # row.
    with django_assert_num_queries(10 + 1 + 2 + 3):
        assert run(path) == "0 created, 50 unchanged\n"


def test_a_device_added_during_the_import_rolls_the_whole_file_back(
    db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, HEADER, f"esim,,{iccid(101)},,,", f"esim,,{iccid(102)},,,")
    looked_up = importer._owners

    def racing_owners(values: set[str]) -> dict[str, list[importer.Existing]]:
        owners = looked_up(values)
        create_device(kind="sim", iccid=iccid(102))  # a competing writer wins the race
        return owners

    monkeypatch.setattr(importer, "_owners", racing_owners)
    [problem] = rejected(path)
    assert problem.startswith(
        "lines 2–3 could not be saved because inventory changed during the import ("
    )
    assert problem.endswith("); nothing was imported, run the import again")
    assert not Device.objects.filter(iccid=iccid(101)).exists()


def test_it_draws_a_progress_bar_only_on_a_terminal(
    db: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, HEADER, *(f"esim,,{iccid(n)},,," for n in range(100, 103)))
    out = io.StringIO()
    call_command("import_devices", str(path), stdout=out)
    assert capsys.readouterr().err == ""

    terminal = Tty()
    call_command("import_devices", str(path), stdout=terminal)
    assert terminal.getvalue() == "0 created, 3 unchanged\n"
    path = write(tmp_path, HEADER, *(f"esim,,{iccid(n)},,," for n in range(200, 203)), name="b")
    call_command("import_devices", str(path), stdout=terminal)
    bar = capsys.readouterr().err
    assert "Creating devices" in bar
    assert "3/3" in bar


# --- binding PINs (the optional pin column) ---------------------------------------------------

PIN_HEADER = HEADER + ",pin"


def test_it_imports_binding_pins_hashed(db: None, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        PIN_HEADER,
        f"esim,,{iccid(101)},,,LPA:1$smdp.example$MATCH-101,4821 0937",
        f"sim,,{iccid(102)},,,,ab-12-cd",
        f"hotspot,{imei(103)},,,,,",  # no PIN: only an eSIM's activation code could prove it
    )
    assert run(path) == "3 created, 0 unchanged\n"
    esim, sim, hotspot = (
        Device.objects.get(pk=find_device(i).pk) for i in (iccid(101), iccid(102), imei(103))
    )
    assert esim.pin_hash.startswith("v1$")
    assert "48210937" not in esim.pin_hash
    assert pin_matches(esim.pin_hash, "48210937")
    assert pin_matches(sim.pin_hash, "AB12CD")
    assert hotspot.pin_hash == ""
    # Re-importing the same file changes nothing (the salted hashes stay as they are).
    hashes = dict(Device.objects.values_list("pk", "pin_hash"))
    assert run(path) == "0 created, 3 unchanged\n"
    assert dict(Device.objects.values_list("pk", "pin_hash")) == hashes


def test_the_pin_column_is_optional_and_may_come_anywhere(db: None, tmp_path: Path) -> None:
    path = write(
        tmp_path, "PIN,kind,imei,iccid,eid,serial,activation_code", f"654321,sim,,{iccid(101)},,,"
    )
    assert run(path) == "1 created, 0 unchanged\n"
    assert pin_matches(Device.objects.get().pin_hash, "654321")


def test_bad_pins_are_reported_with_their_lines(db: None, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        PIN_HEADER,
        f"sim,,{iccid(101)},,,,12345",
        f"sim,,{iccid(102)},,,,123456",
        f"sim,,{iccid(103)},,,,1234567890123",
        f"sim,,{iccid(104)},,,,12_34_56",
        f"sim,,{iccid(105)},,,,１２３４５６",  # full-width digits are digits
        f"sim,,{iccid(106)},,,,12/34/56",
    )
    assert rejected(path) == [
        "line 2: pin: a PIN has 6 to 12 letters or digits, not 5",
        "line 4: pin: a PIN has 6 to 12 letters or digits, not 13",
        "line 5: pin: a PIN has only letters and digits (spaces and dashes are ignored)",
        "line 7: pin: a PIN has only letters and digits (spaces and dashes are ignored)",
    ]
    assert Device.objects.count() == 0


def test_a_file_with_pins_gives_existing_devices_without_one_their_pin(
    actors: Actors, tmp_path: Path
) -> None:
    first, second = actors.devices[:2]
    given = write(
        tmp_path,
        PIN_HEADER,
        f"esim,,{first.iccid},{first.eid},,,111111",
        f"esim,,{second.iccid},{second.eid},,,",
        name="given.csv",
    )
    assert run(given) == "0 created, 1 unchanged, 1 existing device given its PIN\n"
    assert pin_matches(Device.objects.get(pk=first.pk).pin_hash, "111111")
    assert Device.objects.get(pk=second.pk).pin_hash == ""
    assert run(given) == "0 created, 2 unchanged\n"  # the same PIN again: unchanged

    changed = write(
        tmp_path, PIN_HEADER, f"esim,,{first.iccid},{first.eid},,,222222", name="changed.csv"
    )
    assert rejected(changed) == [
        f"line 2: device {first.pk} (ICCID {first.iccid}, EID {first.eid}) is already in "
        "inventory with a different PIN; an import does not change existing devices"
    ]
    assert pin_matches(Device.objects.get(pk=first.pk).pin_hash, "111111")
    # A file without the column leaves PINs alone.
    assert run(write(tmp_path, HEADER, f"esim,,{first.iccid},{first.eid},,", name="none.csv")) == (
        "0 created, 1 unchanged\n"
    )


def test_pins_from_an_import_bind_the_card(db: None, tmp_path: Path) -> None:
    run(write(tmp_path, PIN_HEADER, f"sim,,{iccid(101)},,,,7788-9900"))
    me = Customer.objects.create(phone="+8613800138000")
    device, created = bind_device(me, iccid(101), proof="77889900")
    assert created
    assert device.owner_id == me.pk
