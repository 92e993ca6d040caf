"""Website: my top-up history, receipts from it, and its CSV export."""

from __future__ import annotations

import csv
import io
from zoneinfo import ZoneInfo

import pytest
from django.utils import translation

from simtopup.orders.customer import place_balance_order
from simtopup.orders.models import Order
from tests.payments_support import bind, give_credit
from tests.support import Actors
from tests.web_support import LANGUAGES, browser, customer, text


def two_orders(actors: Actors) -> tuple[object, list[Order]]:
    me = customer(time_zone="Asia/Shanghai")
    bind(actors.device, me)
    give_credit(actors.device, 10000, "test:credit")
    orders = [
        place_balance_order(me, actors.device, actors.plans["day-1g"]),
        place_balance_order(me, actors.device, actors.plans["month-20g"]),
    ]
    return me, orders


@pytest.mark.parametrize("language", LANGUAGES)
def test_it_lists_every_order_of_mine_newest_first(actors: Actors, language: str) -> None:
    me, (first, second) = two_orders(actors)
    other = customer("+8613800138001")
    bind(actors.devices[1], other)
    give_credit(actors.devices[1], 1000, "test:other")
    theirs = place_balance_order(other, actors.devices[1], actors.plans["day-1g"])
    page = browser(me, language=language).get("/my/orders")
    assert page.status_code == 200
    body = text(page)
    assert body.index(f"#{second.pk}<") < body.index(f"#{first.pk}<")
    assert first.receipt_no in body
    assert second.receipt_no in body
    assert theirs.receipt_no not in body
    assert actors.devices[1].masked not in body
    assert "¥5.00" in body
    assert "¥59.00" in body
    assert f"/orders/{first.pk}/receipt.pdf" in body
    local = first.created_at.astimezone(ZoneInfo("Asia/Shanghai"))
    assert local.strftime("%Y-%m-%d %H:%M") in body
    assert "Asia/Shanghai" not in body  # the zone in words (Beijing time), not its IANA name
    with translation.override(language):
        assert (
            translation.gettext("Times in %(zone)s.")
            % {"zone": translation.gettext("Beijing time")}
            in body
        )


def test_an_empty_history_invites_to_top_up(actors: Actors) -> None:
    page = browser(customer()).get("/my/orders")
    assert page.status_code == 200
    assert 'href="/topup"' in text(page)
    assert "/my/orders.csv" not in text(page)


def test_receipts_download_for_my_orders_only(actors: Actors) -> None:
    me, (first, _second) = two_orders(actors)
    mine = browser(me).get(f"/orders/{first.pk}/receipt.pdf")
    assert mine.status_code == 200
    assert mine.content.startswith(b"%PDF")
    assert (
        browser(customer("+8613800138009")).get(f"/orders/{first.pk}/receipt.pdf").status_code
        == 404
    )
    assert browser().get(f"/orders/{first.pk}/receipt.pdf").status_code == 404


def test_the_csv_export_has_a_bom_translated_headers_and_local_times(actors: Actors) -> None:
    me, (first, second) = two_orders(actors)
    response = browser(me, language="zh-hans").get("/my/orders.csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response["Content-Disposition"]
    raw = response.content
    assert raw.startswith(b"\xef\xbb\xbf")  # Excel reads it as UTF-8
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    english = list(
        csv.reader(io.StringIO(browser(me).get("/my/orders.csv").content.decode("utf-8-sig")))
    )
    assert len(rows) == len(english) == 3
    assert english[0][0] == "Order number"
    assert english[0][1] == "Time (Beijing time)"
    assert rows[0][1] != english[0][1] or rows[0][2] != english[0][2]  # headers translated
    assert [r[0] for r in rows[1:]] == [str(second.pk), str(first.pk)]
    assert rows[2][3] == "day-1g 简"  # plan names in the page's language
    assert rows[2][4] == actors.device.masked
    assert rows[2][5:7] == ["5.00", "CNY"]
    assert rows[2][8] == first.receipt_no
    local = first.created_at.astimezone(ZoneInfo("Asia/Shanghai"))
    assert rows[2][1] == local.strftime("%Y-%m-%d %H:%M:%S")


def test_the_csv_holds_only_my_orders(actors: Actors) -> None:
    _me, _orders = two_orders(actors)
    raw = browser(customer("+8613800138009")).get("/my/orders.csv").content
    assert len(list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))) == 1
