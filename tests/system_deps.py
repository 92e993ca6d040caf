"""Tests that need system packages (scripts/install-system-deps installs them on Debian).

Elsewhere such a test skips and says what is missing; in CI (``CI=1`` or
``SIMTOPUP_REQUIRE_SYSTEM_DEPS=1``, which ``.ci/run`` exports) it fails instead, so a CI
machine without the packages can never pass by skipping.
"""

from __future__ import annotations

import os
import shutil

import pytest

INSTALL_HINT = "run scripts/install-system-deps (Debian: poppler-utils, fonts-noto-cjk, chromium)"


def required() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"} or (
        os.environ.get("SIMTOPUP_REQUIRE_SYSTEM_DEPS") == "1"
    )


def missing(what: str, detail: str = "") -> None:
    """Skip the calling test because ``what`` is not installed — or fail it in CI."""
    reason = f"not installed: {what}; {detail or INSTALL_HINT}"
    if required():
        pytest.fail(f"{reason} (required: CI / SIMTOPUP_REQUIRE_SYSTEM_DEPS=1)", pytrace=False)
    pytest.skip(reason)


def need_tools(*names: str) -> dict[str, str]:
    """Paths of the command-line tools ``names`` (e.g. ``pdftotext``)."""
    found = {name: shutil.which(name) for name in names}
    absent = [name for name, path in found.items() if path is None]
    if absent:
        missing(", ".join(absent))
    return {name: path for name, path in found.items() if path}


def need_receipt_font() -> None:
    from django.core.exceptions import ImproperlyConfigured

    from simtopup.orders.receipts import receipt_font

    try:
        receipt_font("zh-hans")
    except ImproperlyConfigured as exc:
        missing("a font with Chinese glyphs (Noto Sans CJK, fonts-noto-cjk)", str(exc))


def chromium() -> str:
    """The headless browser for browser tests."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    missing("chromium")
    raise AssertionError("unreachable")
