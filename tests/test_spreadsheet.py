"""core/spreadsheet.py: every CSV download quotes formula-like text and keeps numbers."""

from __future__ import annotations

import csv
import io

from hypothesis import given
from hypothesis import strategies as st

from simtopup.core.spreadsheet import FORMULA_STARTS, Sheet, safe_cell


@given(
    st.sampled_from(FORMULA_STARTS),
    st.text(st.characters(exclude_categories=("Nd",)), max_size=20),  # no digit: not a number
)
def test_text_that_starts_like_a_formula_is_quoted(start: str, rest: str) -> None:
    text = start + rest
    assert safe_cell(text) == "'" + text


@given(st.integers(-(10**12), 10**12), st.integers(0, 99))
def test_numbers_stay_numbers(units: int, cents: int) -> None:
    for text in (str(units), f"{units}.{cents:02d}", f"+{abs(units)}"):
        assert safe_cell(text) == text


@given(st.text(max_size=20).filter(lambda t: not t.startswith(FORMULA_STARTS)))
def test_other_text_and_non_text_are_left_alone(text: str) -> None:
    assert safe_cell(text) == text
    assert safe_cell(None) is None
    assert safe_cell(42) == 42


def test_a_sheet_is_utf8_with_a_bom_and_quotes_every_row() -> None:
    sheet = Sheet(["名称", "=header"])
    sheet.row(["=HYPERLINK(1)", "-4.60"])
    response = sheet.response("x.csv")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="x.csv"'
    body = response.content
    assert body.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows == [["名称", "'=header"], ["'=HYPERLINK(1)", "-4.60"]]
