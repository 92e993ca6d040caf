"""Import device inventory from a CSV file (``simtopup import-devices FILE.csv``).

The file is all-or-nothing: every row is checked first, and if any row is bad nothing is
written and every problem is reported with its line number. Re-importing a file is
idempotent: a device already in inventory with the same identifiers is left alone.

An optional ``pin`` column gives each card its binding PIN (printed on its packaging; a
customer needs it to add the card to an account, see :mod:`simtopup.devices.binding`). It is
stored only as a keyed hash. A device already in inventory without a PIN gets the file's PIN
(so existing stock can be given PINs by importing it again with the column); a device that
has a different PIN is a conflict, like any other change.

Identifiers share one namespace across columns: an identifier typed by a customer is looked
up in every column (:func:`simtopup.devices.identifiers.find_device`), so a serial that equals
another device's ICCID would make that lookup ambiguous and is refused like any duplicate.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, TextIO

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from tqdm import tqdm

from simtopup.audit.log import SYSTEM, record
from simtopup.audit.models import Action
from simtopup.devices.binding import hash_pin, normalise_pin, pin_matches, pin_problem
from simtopup.devices.identifiers import IdentifierKind, normalise_digits, parse
from simtopup.devices.inventory import DeviceSpec, create_devices
from simtopup.devices.models import Device, DeviceKind

COLUMNS = ("kind", "imei", "iccid", "eid", "serial", "activation_code")
OPTIONAL_COLUMNS = ("pin",)
# The header as the command's help and the problems show it (optional columns in brackets).
HEADER = ",".join(COLUMNS) + "".join(f"[,{c}]" for c in OPTIONAL_COLUMNS)
LABELS = {"imei": "IMEI", "iccid": "ICCID", "eid": "EID", "serial": "serial"}
SHAPES = {
    "imei": (IdentifierKind.IMEI, gettext_lazy("15 digits")),
    "iccid": (IdentifierKind.ICCID, gettext_lazy("19–20 digits starting with 89")),
    "eid": (IdentifierKind.EID, gettext_lazy("32 digits")),
}
MAX_SERIAL_LENGTH = Device._meta.get_field("serial").max_length or 64
MAX_ACTIVATION_CODE_LENGTH = Device._meta.get_field("activation_code").max_length or 255
ACTIVATION_CODE_PREFIX = "LPA:"
BATCH_SIZE = 500  # devices created per bulk insert
# Values per existence query; each is bound once per identifier column (4 × 500 parameters),
# well inside SQLite's and PostgreSQL's limits.
LOOKUP_BATCH = 500
# Serials that are digits once spaces, dashes and a trailing F are removed.
FORMATTED_DIGITS = r"^[-0-9\s]+[fF]?$"


@dataclass(frozen=True)
class Problem:
    line: int | None  # None: about the file as a whole
    message: str

    def __str__(self) -> str:
        if self.line is None:
            return self.message
        return _("line %(line)d: %(message)s") % {"line": self.line, "message": self.message}


class ImportRejected(Exception):
    """The file was refused; nothing was written."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(f"{len(problems)} problem(s)")
        self.problems = problems


@dataclass(frozen=True)
class ImportResult:
    created: int
    unchanged: int
    pins_added: int = 0  # devices already in inventory that got their PIN from this file


@dataclass
class Row:
    line: int
    kind: str = ""
    activation_code: str = ""
    pin: str = ""  # normalised; empty: the file gives none
    # column → normalised value, only the identifiers the row gives
    identifiers: dict[str, str] = field(default_factory=dict)
    valid: bool = True

    def spec(self) -> DeviceSpec:
        return DeviceSpec(
            kind=self.kind,
            activation_code=self.activation_code,
            pin=self.pin,
            **self.identifiers,  # type: ignore[typeddict-item]
        )

    def lookup_keys(self) -> list[tuple[str, str, str]]:
        """(column, value, lookup key) for every identifier of the row."""
        return [(c, v, key) for c, v in self.identifiers.items() for key in lookup_keys(c, v)]


class Existing(NamedTuple):
    pk: int
    kind: str
    imei: str | None
    iccid: str | None
    eid: str | None
    serial: str | None
    activation_code: str
    pin_hash: str

    @property
    def identifiers(self) -> dict[str, str]:
        values = {"imei": self.imei, "iccid": self.iccid, "eid": self.eid, "serial": self.serial}
        return {column: value for column, value in values.items() if value}

    def lookup_keys(self) -> set[str]:
        return {key for c, v in self.identifiers.items() for key in lookup_keys(c, v)}

    def describe(self) -> str:
        shown = ", ".join(f"{LABELS[c]} {v}" for c, v in self.identifiers.items())
        return _("device %(pk)d (%(identifiers)s)") % {"pk": self.pk, "identifiers": shown}


def lookup_keys(column: str, value: str) -> tuple[str, ...]:
    """The keys under which a stored identifier can be reached; devices must not share one.

    :func:`simtopup.devices.identifiers.find_device` compares the typed text as is with every
    serial, and the same text without separators with every identifier column. A serial
    printed as ``8986 0100 …`` is reached by typing exactly that, and the same keystrokes
    would also reach the card whose ICCID is ``89860100…``: its digits are a key too.
    """
    if column == "serial":
        digits = normalise_digits(value)
        if digits != value and digits.isdigit():
            return (value, digits)
    return (value,)


def import_devices(
    path: str | Path, *, actor: str = SYSTEM, progress: TextIO | None = None
) -> ImportResult:
    """Import the CSV file at ``path`` in one transaction, or raise :class:`ImportRejected`;
    the import is one ``device.import`` row of the audit log (``actor``, the counts and the
    file's name) in that transaction.

    ``progress``: a terminal stream to draw a progress bar on while devices are created.
    """
    text = read_text(Path(path))
    rows, problems = parse_rows(text)
    lines = (0, 0)
    pins_added = 0
    try:
        with transaction.atomic(durable=True):
            problems += check_duplicates(rows)
            to_create, unchanged, pins, conflicts = match_inventory(rows)
            problems += conflicts
            if problems:
                raise ImportRejected(sorted(problems, key=lambda p: p.line or 0))
            pins_added = add_pins(pins)
            batch: list[Row] = []
            for row in _progress(to_create, progress):
                batch.append(row)
                if len(batch) == BATCH_SIZE or row is to_create[-1]:
                    lines = (batch[0].line, batch[-1].line)
                    create_devices([row.spec() for row in batch])
                    batch = []
            record(
                Action.DEVICE_IMPORT,
                ("devices.device", ""),
                actor=actor,
                after={
                    "file": Path(path).name,
                    "created": len(to_create),
                    "unchanged": unchanged,
                    "pins_added": pins_added,
                },
            )
    except IntegrityError as exc:
        # Another writer added one of these identifiers after we looked; the whole file
        # has been rolled back, so running it again is safe.
        raise ImportRejected(
            [
                Problem(
                    None,
                    _(
                        "lines %(first)d–%(last)d could not be saved because inventory changed "
                        "during the import (%(error)s); nothing was imported, run the import again"
                    )
                    % {"first": lines[0], "last": lines[1], "error": " ".join(str(exc).split())},
                )
            ]
        ) from exc
    return ImportResult(created=len(to_create), unchanged=unchanged, pins_added=pins_added)


def read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImportRejected(
            [Problem(None, _("%(path)s: no such file") % {"path": path})]
        ) from None
    except OSError as exc:
        raise ImportRejected(
            [
                Problem(
                    None,
                    _("%(path)s: cannot read (%(error)s)") % {"path": path, "error": exc.strerror},
                )
            ]
        ) from None
    try:
        text = data.decode("utf-8-sig")  # Excel writes a byte-order mark
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ImportRejected(
            [
                Problem(
                    line,
                    _("the file is not UTF-8 text (byte 0x%(byte)02x); save it as CSV UTF-8")
                    % {"byte": data[exc.start]},
                )
            ]
        ) from None
    if not text.strip():
        raise ImportRejected(
            [
                Problem(
                    None,
                    _("%(path)s is empty; the first line must be the header %(header)s")
                    % {"path": path, "header": HEADER},
                )
            ]
        )
    return text


def parse_rows(text: str) -> tuple[list[Row], list[Problem]]:
    """Check the header and every row on its own (no database access)."""
    problems: list[Problem] = []
    rows: list[Row] = []
    records = _records(text, problems)
    header_line, header = next(records, (1, []))
    if problems:  # the CSV itself is broken before the header ends
        return rows, problems
    names = [name.strip().lower() for name in header]
    missing = [c for c in COLUMNS if c not in names]
    known = COLUMNS + OPTIONAL_COLUMNS
    unknown = [name or _("(empty)") for name in names if name not in known]
    repeated = sorted({name for name in names if name in known and names.count(name) > 1})
    if missing or unknown or repeated:
        details = []
        if missing:
            details.append(_("missing %(columns)s") % {"columns": ", ".join(missing)})
        if unknown:
            details.append(_("unexpected %(columns)s") % {"columns": ", ".join(unknown)})
        if repeated:
            details.append(_("repeated %(columns)s") % {"columns": ", ".join(repeated)})
        problems.append(
            Problem(
                header_line,
                _("the header must name the columns %(header)s (%(details)s)")
                % {"header": HEADER, "details": "; ".join(details)},
            )
        )
        return rows, problems
    for line, fields in records:
        if len(fields) != len(names):
            problems.append(
                Problem(
                    line,
                    _("expected %(expected)d fields, found %(found)d")
                    % {"expected": len(names), "found": len(fields)},
                )
            )
            continue
        row, row_problems = parse_row(line, dict(zip(names, fields, strict=True)))
        rows.append(row)
        problems += row_problems
    return rows, problems


def _records(text: str, problems: list[Problem]) -> Iterator[tuple[int, list[str]]]:
    """Yield (first line number, fields) for each non-blank CSV record."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problems.append(Problem(start, _("malformed CSV: %(error)s") % {"error": exc}))
            return
        line, start = start, reader.line_num + 1
        if any(value.strip() for value in fields):
            yield line, fields


def parse_row(line: int, values: dict[str, str]) -> tuple[Row, list[Problem]]:
    problems: list[str] = []
    row = Row(line)
    kind = values["kind"].strip().lower()
    if kind in DeviceKind.values:
        row.kind = kind
    elif not kind:
        problems.append(_("kind is missing (expected one of %(kinds)s)") % {"kinds": _kinds()})
    else:
        problems.append(
            _("unknown kind %(kind)r (expected one of %(kinds)s)")
            % {"kind": values["kind"].strip(), "kinds": _kinds()}
        )
    given = False
    for column, (expected, shape) in SHAPES.items():
        raw = values[column].strip()
        if not raw:
            continue
        given = True
        parsed = parse(raw)
        label = LABELS[column]
        if parsed.kind != expected:
            problems.append(
                _("%(label)s must be %(shape)s, not %(value)r")
                % {"label": label, "shape": shape, "value": raw}
            )
        elif not parsed.check_ok:
            problems.append(
                _("EID check digits do not match: %(value)s") % {"value": parsed.value}
                if column == "eid"
                else _("%(label)s check digit does not match: %(value)s")
                % {"label": label, "value": parsed.value}
            )
        else:
            row.identifiers[column] = parsed.value
    serial = values["serial"].strip()
    if serial:
        given = True
        if len(serial) > MAX_SERIAL_LENGTH:
            problems.append(
                _("serial is longer than %(max)d characters") % {"max": MAX_SERIAL_LENGTH}
            )
        elif not serial.isprintable():
            problems.append(_("serial contains control characters"))
        else:
            row.identifiers["serial"] = serial
    if not given:
        problems.append(_("no identifier: give at least one of IMEI, ICCID, EID or serial"))
    code = values["activation_code"].strip()
    if code and not code.startswith(ACTIVATION_CODE_PREFIX):
        problems.append(
            _("activation_code must start with %(prefix)s (e.g. LPA:1$smdp.example$MATCHING-ID)")
            % {"prefix": ACTIVATION_CODE_PREFIX}
        )
    elif len(code) > MAX_ACTIVATION_CODE_LENGTH:
        problems.append(
            _("activation_code is longer than %(max)d characters")
            % {"max": MAX_ACTIVATION_CODE_LENGTH}
        )
    else:
        row.activation_code = code
    pin = values.get("pin", "").strip()
    if pin:
        problem = pin_problem(pin)
        if problem:
            problems.append(_("pin: %(problem)s") % {"problem": problem})
        else:
            row.pin = normalise_pin(pin)
    row.valid = not problems
    return row, [Problem(line, message) for message in problems]


def check_duplicates(rows: Iterable[Row]) -> list[Problem]:
    """The same identifier twice in the file (in any column) is refused; within a row it is fine."""
    seen: dict[str, int] = {}
    problems = []
    for row in rows:
        reported = set()
        for column, value, key in row.lookup_keys():
            first = seen.setdefault(key, row.line)
            if first != row.line and column not in reported:
                reported.add(column)
                problems.append(
                    Problem(
                        row.line,
                        _("duplicate %(label)s %(value)s: already on line %(first)d")
                        % {"label": LABELS[column], "value": value, "first": first},
                    )
                )
    return problems


def match_inventory(rows: list[Row]) -> tuple[list[Row], int, list[tuple[int, str]], list[Problem]]:
    """Split valid rows into new devices and unchanged ones, and list the PINs to add to
    devices that have none ((device id, PIN)); refuse conflicts with inventory."""
    owners = _owners({key for row in rows if row.valid for _c, _v, key in row.lookup_keys()})
    to_create: list[Row] = []
    unchanged = 0
    pins: list[tuple[int, str]] = []
    problems: list[Problem] = []
    for row in rows:
        if not row.valid:
            continue
        matched = {
            device.pk: device for _c, _v, key in row.lookup_keys() for device in owners.get(key, ())
        }
        if not matched:
            to_create.append(row)
            continue
        if len(matched) == 1:
            (device,) = matched.values()
            if device.identifiers == row.identifiers:
                if device.kind != row.kind:
                    problems.append(
                        Problem(
                            row.line,
                            _(
                                "%(device)s is already in inventory as kind %(existing)s, not "
                                "%(kind)s; an import does not change existing devices"
                            )
                            % {
                                "device": device.describe(),
                                "existing": device.kind,
                                "kind": row.kind,
                            },
                        )
                    )
                elif device.activation_code != row.activation_code:
                    problems.append(
                        Problem(
                            row.line,
                            _(
                                "%(device)s is already in inventory with a different activation "
                                "code; an import does not change existing devices"
                            )
                            % {"device": device.describe()},
                        )
                    )
                elif row.pin and device.pin_hash and not pin_matches(device.pin_hash, row.pin):
                    problems.append(
                        Problem(
                            row.line,
                            _(
                                "%(device)s is already in inventory with a different PIN; an "
                                "import does not change existing devices"
                            )
                            % {"device": device.describe()},
                        )
                    )
                elif row.pin and not device.pin_hash:
                    pins.append((device.pk, row.pin))
                else:
                    unchanged += 1
                continue
        reported = set()
        for column, value, key in row.lookup_keys():
            for device in owners.get(key, ()):
                if (column, device.pk) in reported:
                    continue
                reported.add((column, device.pk))
                problems.append(
                    Problem(
                        row.line,
                        _(
                            "%(label)s %(value)s already belongs to another device in inventory: "
                            "%(device)s"
                        )
                        % {"label": LABELS[column], "value": value, "device": device.describe()},
                    )
                )
    return to_create, unchanged, pins, problems


def add_pins(pins: list[tuple[int, str]]) -> int:
    """Give devices without a PIN the file's PIN (only if they still have none)."""
    added = 0
    for start in range(0, len(pins), BATCH_SIZE):
        batch = dict(pins[start : start + BATCH_SIZE])
        devices = list(Device.objects.filter(pk__in=batch, pin_hash="").only("pk", "pin_hash"))
        for device in devices:
            device.pin_hash = hash_pin(batch[device.pk])
        added += Device.objects.bulk_update(devices, ["pin_hash"], batch_size=BATCH_SIZE)
    return added


def _owners(keys: set[str]) -> dict[str, list[Existing]]:
    """Lookup key → devices in inventory that answer to it (see :func:`lookup_keys`).

    Batched ``IN`` queries on the four indexed identifier columns, plus one query for the
    serials that only match after separators are stripped (``8986 0112 …`` answers to the
    ICCID ``89860112…`` in :func:`find_device`).
    """
    owners: dict[str, list[Existing]] = {}

    def add(device: Existing) -> None:
        for key in device.lookup_keys():
            if key in keys:
                holders = owners.setdefault(key, [])
                if device not in holders:
                    holders.append(device)

    ordered = sorted(keys)
    for start in range(0, len(ordered), LOOKUP_BATCH):
        batch = ordered[start : start + LOOKUP_BATCH]
        query = Q(imei__in=batch) | Q(iccid__in=batch) | Q(eid__in=batch) | Q(serial__in=batch)
        for fields in Device.objects.filter(query).order_by("pk").values_list(*Existing._fields):
            add(Existing(*fields))
    if keys:
        formatted = Device.objects.filter(serial__regex=FORMATTED_DIGITS).order_by("pk")
        for fields in formatted.values_list(*Existing._fields).iterator(chunk_size=2000):
            add(Existing(*fields))
    return owners


def _progress(rows: list[Row], stream: TextIO | None) -> Iterable[Row]:
    if stream is None:
        return rows
    return tqdm(rows, total=len(rows), file=stream, unit="device", desc=_("Creating devices"))


def _kinds() -> str:
    return ", ".join(DeviceKind.values)
