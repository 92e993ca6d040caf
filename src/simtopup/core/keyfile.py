"""Per-installation secrets generated once and kept in the data directory.

When ``SIMTOPUP_SECRET_KEY`` or ``SIMTOPUP_NETWORK_SECRET`` is not set, settings read the
value from a file in ``SIMTOPUP_DATA_DIR`` (``secret_key``, ``network_secret``), creating it
with a random value on first use. Nothing about it can be derived from the installation's
path or anything else an outsider knows.

Imported by the settings module: no Django imports here.

Creation is atomic and safe when several processes start at once (``serve``'s web workers
and worker, a test run's subprocesses): the value is written and flushed to a private
temporary file (mode 0600) which is then hard-linked to the final name. ``link`` fails when
the name exists, so the first process wins and every other one reads the winner's file —
which is complete from the moment it has its name. Where hard links are not supported the
file is created with ``O_CREAT | O_EXCL`` instead and readers wait for its content.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from pathlib import Path

# How long a reader waits for a file another process has just created without hard links.
WAIT_SECONDS = 5.0


class KeyFileError(Exception):
    """The file exists but holds no value, or cannot be read or written."""


def read_or_create(path: Path, nbytes: int = 48) -> str:
    """The secret stored in ``path``; a new random one (``nbytes`` of randomness, URL-safe
    text) is stored there first when the file does not exist."""
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(nbytes)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        _write_new(temporary, value)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process was first: its value wins
        except OSError:  # no hard links on this file system
            with contextlib.suppress(FileExistsError):
                _write_new(path, value)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    return _read(path)


def _write_new(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (value + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _read(path: Path) -> str:
    """The file's value; waits a little for a file being written by another process."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        value = path.read_text().strip()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise KeyFileError(f"{path} is empty: delete it to have a new secret generated")
        time.sleep(0.05)


def mode_too_open(path: Path) -> bool:
    """Whether the group or others may read or write the file."""
    try:
        return bool(path.stat().st_mode & 0o077)
    except OSError:
        return False
