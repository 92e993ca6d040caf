"""CSV downloads that spreadsheet programs open safely and correctly.

Every CSV the product offers (a customer's top-up history, a reseller's float statement, the
operator's audit log) is built here, so that two rules hold for all of them:

* UTF-8 with a byte-order mark: without it Excel reads UTF-8 as the local code page and the
  Chinese in plan names and headers comes out garbled;
* no cell is run as a formula (CSV injection): text that starts like one (``=``, ``+``,
  ``-``, ``@``, a tab or a carriage return) gets a leading apostrophe, which the spreadsheet
  shows as text. A reseller's ``reference`` or a plan's name is typed by someone else, and
  ``=HYPERLINK(…)`` in it must not become a live link in an operator's spreadsheet. Plain
  numbers (``-4.60``, a refund) are left alone, so columns still add up.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable

from django.http import HttpResponse

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


def safe_cell(value: object) -> object:
    """``value`` as a spreadsheet should get it: text that looks like a formula is quoted."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not NUMBER.fullmatch(value):
        return "'" + value
    return value


class Sheet:
    """Rows written one by one, then answered as a CSV download."""

    def __init__(self, header: Iterable[object]) -> None:
        self._buffer = io.StringIO()
        self._buffer.write("\ufeff")
        self._writer = csv.writer(self._buffer)
        self.row(header)

    def row(self, cells: Iterable[object]) -> None:
        self._writer.writerow([safe_cell(cell) for cell in cells])

    def response(self, filename: str) -> HttpResponse:
        response = HttpResponse(
            self._buffer.getvalue().encode("utf-8"), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response
