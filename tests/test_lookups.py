"""``field__any=[…]`` (core/lookups.py): the array literal it writes itself on PostgreSQL
means exactly the list it was given, whatever the strings hold."""

from __future__ import annotations

import pytest
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st

from simtopup.core.lookups import array_literal
from simtopup.devices.models import Device
from tests.support import Actors

pytestmark = pytest.mark.django_db

# What PostgreSQL text can hold: any character but NUL (the API refuses NUL before this).
TEXT = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=12)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL array literals")
@settings(max_examples=200, deadline=None)
@given(
    st.lists(TEXT, min_size=1, max_size=8) | st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1)
)
def test_the_literal_reads_back_as_the_list(values: list[object]) -> None:
    literal = array_literal(values)
    assert literal is not None
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT %s::{literal[0]}[]", [literal[1]])
        assert cursor.fetchone()[0] == values


def test_mixed_or_empty_lists_are_left_to_the_driver() -> None:
    assert array_literal([]) is None
    assert array_literal([1, "2"]) is None
    assert array_literal([True, False]) is None
    assert array_literal([1.5]) is None


def test_lookups_find_rows_by_ids_and_strings(actors: Actors) -> None:
    devices = list(Device.objects.order_by("pk")[:2])
    ids = {d.pk for d in devices}
    assert set(Device.objects.filter(pk__any=ids).values_list("pk", flat=True)) == ids
    iccids = {d.iccid for d in devices} | {'no "such" \\ {card}, really'}
    found = Device.objects.filter(iccid__any=iccids).values_list("pk", flat=True)
    assert set(found) == ids
    assert not Device.objects.filter(pk__any=[]).exists()
