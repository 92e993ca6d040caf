"""Helpers for tests (and bench/soak.py) that run the product as real processes: the
``simtopup`` command line, a free loopback port, and what /proc says about a process."""

from __future__ import annotations

import contextlib
import socket
import sys
from pathlib import Path


def simtopup(*args: str) -> list[str]:
    """The ``simtopup`` command of this interpreter's environment, with ``args``."""
    executable = Path(sys.executable).with_name("simtopup")
    command = [str(executable)] if executable.exists() else [sys.executable, "-m", "simtopup.cli"]
    return [*command, *args]


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alive(pid: int) -> bool:
    """Running, not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def children(pid: int) -> list[int]:
    """The living child processes of ``pid`` (of all its threads)."""
    found: list[int] = []
    for task_dir in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in (task_dir / "children").read_text().split()]
    return sorted(p for p in found if alive(p))


def cmdline(pid: int) -> str:
    """The command line of ``pid``, arguments joined by spaces ("" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
