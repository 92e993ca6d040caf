"""The console's finance pages: reseller deposits, monthly statements, the ledger by day.

Finance records deposits and reads the reports; support may do neither (every view, GET and
POST); each page speaks zh-Hans, zh-Hant and English. The ledger by day is checked against
the ledger: each day's balance is the sum of the account's transfers up to the day's end in
the operator's zone, and today's is the account's balance now.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
from django.db import transaction
from django.db.models import Sum
from django.test import Client

from simtopup.audit.models import Action, AuditEntry
from simtopup.core.money import format_money
from simtopup.core.transactions import durable
from simtopup.ledger.actions import Posting, balance, post, system_account
from simtopup.ledger.models import Account, Transfer
from simtopup.ledger.reports import balances_by_day
from simtopup.resellers.actions import record_deposit, sell_topup
from simtopup.resellers.models import ResellerDeposit
from tests.staff_support import console_client, make_staff
from tests.support import Actors, float_of, iccid

SHANGHAI = ZoneInfo("Asia/Shanghai")
LANGS = [
    ("en", "Reseller deposits", "Record a deposit"),
    ("zh-hans", "代理商入账", "登记入账"),
    ("zh-hant", "代理商入帳", "登記入帳"),
]


@pytest.fixture(autouse=True)
def operator_zone(settings: Any) -> None:
    settings.DISPLAY_TIME_ZONE = "Asia/Shanghai"


@contextmanager
def clock(at: datetime) -> Iterator[None]:
    with mock.patch("django.utils.timezone.now", return_value=at):
        yield


@pytest.fixture
def finance(actors: Actors) -> Client:
    return console_client(make_staff("fin", "finance"))


@pytest.fixture
def support(actors: Actors) -> Client:
    return console_client(make_staff("sup", "support"))


def statement_url(reseller_id: int, year: int, month: int, fmt: str) -> str:
    return f"/admin/finance/statements/{reseller_id}/{year}/{month}/{fmt}/"


# --- deposits -------------------------------------------------------------------------------


@pytest.mark.parametrize(("lang", "title", "heading"), LANGS)
def test_the_deposits_page_speaks_each_language(
    finance: Client, actors: Actors, lang: str, title: str, heading: str
) -> None:
    record_deposit(actors.bob, 2500, "BOC-77", date(2026, 12, 1), actor="cli:o", reason="wire")
    page = finance.get("/admin/finance/deposits/", HTTP_ACCEPT_LANGUAGE=lang)
    html = page.content.decode()
    assert page.status_code == 200
    assert title in html
    assert heading in html
    assert "BOC-77" in html
    assert actors.bob.code in html


def test_finance_records_a_deposit_and_a_repeat_is_refused(finance: Client, actors: Actors) -> None:
    before = float_of(actors.alice)
    form = {
        "reseller": actors.alice.pk,
        "amount": "1000.00",
        "bank_reference": "CMB-2026-1201",
        "received_on": "2026-12-01",
        "reason": "wire of 1 December",
    }
    done = finance.post("/admin/finance/deposits/", form, REMOTE_ADDR="198.51.100.4")
    assert done.status_code == 302
    assert done["Location"] == "/admin/finance/deposits/"
    assert float_of(actors.alice) == before + 100000
    entry = AuditEntry.objects.get(action=Action.RESELLER_DEPOSIT)
    assert entry.actor.startswith("staff:")
    assert entry.actor.endswith(":fin")
    assert entry.reason == "wire of 1 December"
    assert entry.after is not None
    assert entry.after["bank_reference"] == "CMB-2026-1201"
    listed = finance.get("/admin/finance/deposits/").content.decode()
    assert "CMB-2026-1201" in listed
    assert "wire of 1 December" in listed

    again = finance.post(
        "/admin/finance/deposits/",
        {**form, "bank_reference": "cmb-2026-1201"},
        HTTP_ACCEPT_LANGUAGE="zh-hans",
    )
    assert again.status_code == 409
    assert "该代理商的这笔银行流水号已登记过入账。" in again.content.decode()
    assert float_of(actors.alice) == before + 100000
    assert ResellerDeposit.objects.count() == 1


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("amount", "12.345", "more decimals"),
        ("amount", "0", "greater than zero"),
        ("amount", "ten", "decimal number"),
        ("received_on", "2999-01-01", "cannot be in the future"),
        ("reason", "", "This field is required"),
    ],
)
def test_a_wrong_deposit_form_says_what_is_wrong(
    finance: Client, actors: Actors, field: str, value: str, message: str
) -> None:
    form = {
        "reseller": actors.bob.pk,
        "amount": "10.00",
        "bank_reference": "R-1",
        "received_on": "2026-12-01",
        "reason": "wire",
        field: value,
    }
    page = finance.post("/admin/finance/deposits/", form)
    assert page.status_code == 400
    assert message in page.content.decode()
    assert not ResellerDeposit.objects.exists()


# --- statements -----------------------------------------------------------------------------


@pytest.fixture
def this_month(actors: Actors) -> None:
    """This month of Alice's: a deposit and a sale (she was made today)."""
    record_deposit(actors.alice, 50000, "OCT-DEP", date(2026, 12, 1), actor="cli:o", reason="w")
    durable(lambda: sell_topup(actors.alice, iccid(1), "day-1g", "S-1"))


@pytest.mark.parametrize(
    ("lang", "words"),
    [
        ("en", ["Float statement", "Opening float", "Closing float", "OCT-DEP", "day-1g"]),
        ("zh-hans", ["预存款对账单", "期初预存款", "期末预存款", "OCT-DEP", "day-1g 简"]),
        ("zh-hant", ["預存款對帳單", "期初預存款", "期末預存款", "OCT-DEP", "day-1g 繁"]),
    ],
)
def test_the_statement_page_speaks_each_language(
    finance: Client, actors: Actors, this_month: None, lang: str, words: list[str]
) -> None:
    today = datetime.now(SHANGHAI)
    picker = finance.get("/admin/finance/statements/", HTTP_ACCEPT_LANGUAGE=lang)
    assert picker.status_code == 200
    chosen = finance.get(
        "/admin/finance/statements/",
        {"reseller": str(actors.alice.pk), "month": f"{today:%Y-%m}"},
        HTTP_ACCEPT_LANGUAGE=lang,
    )
    url = statement_url(actors.alice.pk, today.year, today.month, "html")
    assert chosen.status_code == 302
    assert chosen["Location"] == url
    page = finance.get(url, HTTP_ACCEPT_LANGUAGE=lang)
    html = page.content.decode()
    assert page.status_code == 200
    for word in words:
        assert word in html, word
    assert format_money(float_of(actors.alice), "CNY") in html  # the closing float
    assert statement_url(actors.alice.pk, today.year, today.month, "pdf") in html


def test_the_statement_downloads_as_csv_and_pdf(
    finance: Client, actors: Actors, this_month: None
) -> None:
    today = datetime.now(SHANGHAI)
    csv = finance.get(statement_url(actors.alice.pk, today.year, today.month, "csv"))
    assert csv.status_code == 200
    assert csv["Content-Type"].startswith("text/csv")
    assert "OCT-DEP" in csv.content.decode("utf-8")
    from tests.system_deps import need_receipt_font

    need_receipt_font()
    pdf = finance.get(statement_url(actors.alice.pk, today.year, today.month, "pdf"))
    assert pdf.status_code == 200
    assert pdf["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")


def test_the_statement_picker_refuses_a_month_to_come(finance: Client, actors: Actors) -> None:
    page = finance.get(
        "/admin/finance/statements/", {"reseller": str(actors.alice.pk), "month": "2999-01"}
    )
    assert page.status_code == 400
    assert "month to come" in page.content.decode()
    assert finance.get(statement_url(actors.alice.pk, 2999, 1, "html")).status_code == 404
    assert finance.get(statement_url(actors.alice.pk, 2026, 13, "html")).status_code == 404
    assert finance.get(statement_url(actors.alice.pk, 2026, 11, "xml")).status_code == 404
    assert finance.get(statement_url(999999, 2026, 11, "html")).status_code == 404


# --- the ledger by day ----------------------------------------------------------------------


def end_of_day_sum(account: Account, day: date) -> int:
    until = datetime.combine(day + timedelta(days=1), time.min, tzinfo=SHANGHAI)
    before = Transfer.objects.filter(created_at__lt=until)
    incoming = before.filter(destination=account).aggregate(s=Sum("amount"))["s"] or 0
    outgoing = before.filter(source=account).aggregate(s=Sum("amount"))["s"] or 0
    return int(incoming - outgoing)


def moved(stem_from: str, stem_to: str, amount: int, at: datetime, key: str) -> None:
    with clock(at), transaction.atomic():
        post(
            [
                Posting(
                    system_account(stem_from, "CNY"),
                    system_account(stem_to, "CNY"),
                    amount,
                    "test",
                    key,
                )
            ]
        )


def test_each_day_is_what_the_ledger_held_and_today_is_the_balance_now(actors: Actors) -> None:
    now = datetime.now(UTC)
    today = now.astimezone(SHANGHAI).date()
    first = today - timedelta(days=2)
    # 23:30 two days ago in Shanghai (UTC: 15:30), then 00:30 the next day (UTC: 16:30 still
    # the same UTC day): two different operator days.
    late = datetime.combine(first, time(23, 30), tzinfo=SHANGHAI)
    moved("gateway_clearing", "order_clearing", 7000, late, "t1")
    moved("order_clearing", "revenue", 7000, late + timedelta(hours=1), "t2")
    moved("gateway_clearing", "order_clearing", 300, late - timedelta(days=5), "t0")
    durable(lambda: sell_topup(actors.alice, iccid(2), "month-20g", "S-2"))  # today
    accounts = [system_account(s, "CNY") for s in ("revenue", "order_clearing", "gateway_clearing")]
    days = balances_by_day(accounts, first, today, SHANGHAI)
    assert [d.day for d in days] == [first, first + timedelta(days=1), today]
    for d in days:
        assert list(d.balances) == [end_of_day_sum(a, d.day) for a in accounts]
    assert list(days[-1].balances) == [balance(a) for a in accounts]
    # Two days ago: 70.00 into order clearing from the gateway; the next day, to revenue.
    assert days[0].changes[1:] == (7000, -7000)
    assert days[1].changes[:2] == (7000, -7000)
    assert days[0].balances[1] == 7300


@pytest.mark.parametrize(
    ("lang", "title", "column"),
    [
        ("en", "Ledger by day", "Gateway clearing"),
        ("zh-hans", "每日账本", "递延收入（未完成的订单）"),
        ("zh-hant", "每日帳本", "支付通路待清算"),
    ],
)
def test_the_ledger_page_shows_today_as_the_balances_now(
    finance: Client, actors: Actors, lang: str, title: str, column: str
) -> None:
    durable(lambda: sell_topup(actors.alice, iccid(3), "day-1g", "S-3"))
    page = finance.get("/admin/finance/ledger/?days=90", HTTP_ACCEPT_LANGUAGE=lang)
    html = page.content.decode()
    assert page.status_code == 200
    assert title in html
    assert column in html
    rows = html.split("<tbody>")[1].split("</tbody>")[0].split("<tr>")[1:]
    assert len(rows) == 90
    today = datetime.now(SHANGHAI).date()
    assert f"<td>{today:%Y-%m-%d}</td>" in rows[0]
    for stem in ("revenue", "order_clearing", "gateway_clearing"):
        shown = format_money(balance(system_account(stem, "CNY")), "CNY")
        assert f'<span class="balance">{shown}</span>' in rows[0]
    thirty = finance.get("/admin/finance/ledger/").content.decode()
    assert len(thirty.split("<tbody>")[1].split("</tbody>")[0].split("<tr>")[1:]) == 30


# --- permissions ----------------------------------------------------------------------------

FINANCE_PAGES = [
    "/admin/finance/deposits/",
    "/admin/finance/statements/",
    "/admin/finance/statements/{id}/2026/11/html/",
    "/admin/finance/statements/{id}/2026/11/csv/",
    "/admin/finance/statements/{id}/2026/11/pdf/",
    "/admin/finance/ledger/",
]


def test_support_is_refused_every_finance_page_and_action(support: Client, actors: Actors) -> None:
    for page in FINANCE_PAGES:
        url = page.format(id=actors.alice.pk)
        assert support.get(url).status_code == 403, url
        assert support.post(url, {"reseller": actors.alice.pk}).status_code == 403, url
    refused = support.post(
        "/admin/finance/deposits/",
        {
            "reseller": actors.alice.pk,
            "amount": "1.00",
            "bank_reference": "SUP",
            "received_on": "2026-12-01",
            "reason": "x",
        },
    )
    assert refused.status_code == 403
    assert not ResellerDeposit.objects.exists()


def test_pages_need_a_second_factor_and_staff(actors: Actors) -> None:
    for page in FINANCE_PAGES:
        url = page.format(id=actors.alice.pk)
        response = Client().get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")


def test_admin_sees_every_page_and_finance_pages_refuse_other_methods(
    actors: Actors, finance: Client
) -> None:
    admin = console_client(make_staff("adm", "admin"))
    for page in FINANCE_PAGES:
        assert admin.get(page.format(id=actors.alice.pk)).status_code in (200, 404)
    for page in FINANCE_PAGES[1:]:
        assert finance.post(page.format(id=actors.alice.pk)).status_code == 405
