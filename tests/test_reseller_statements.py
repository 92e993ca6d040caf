"""Reseller deposits and monthly float statements (issue 14, point 5).

A reseller made in September pays two deposits and sells in October, sells in November
(one sale at 00:30 on 1 November in Shanghai, which is still 31 October in UTC), gets a
plain credit, and in the first minutes of December (Shanghai) a November sale fails and is
refunded. Each month's statement must add up (opening + deposits + other credits − sales +
refunds = closing), chain into the next month, and agree with the ledger's own sums at each
month's edge in the operator's time zone.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.db.models import Q, Sum
from django.test import Client

from simtopup.audit.models import Action, AuditEntry
from simtopup.core.errors import DomainError
from simtopup.core.transactions import durable
from simtopup.ledger.models import Transfer
from simtopup.orders.actions import fail_and_refund
from simtopup.orders.models import Order, OrderStatus
from simtopup.resellers.actions import create_reseller, credit_float, record_deposit, sell_topup
from simtopup.resellers.models import Reseller, ResellerDeposit
from simtopup.resellers.statements import as_csv, as_pdf, month_bounds, past_months, statement
from tests.agent_support import log_in, make_staff
from tests.support import Actors, float_of, iccid
from tests.system_deps import need_receipt_font, need_tools

FAILING = "tests.test_balance_payment.FlakyUpstream"  # asynchronous; refuses for good


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@contextmanager
def clock(at: datetime) -> Iterator[None]:
    with mock.patch("django.utils.timezone.now", return_value=at):
        yield


@pytest.fixture(autouse=True)
def operator_zone(settings: Any) -> None:
    settings.DISPLAY_TIME_ZONE = "Asia/Shanghai"


_refs = iter(range(1, 10_000))


def sold(reseller: Reseller, n: int, plan: str, at: datetime) -> Order:
    with clock(at):
        return durable(lambda: sell_topup(reseller, iccid(n), plan, f"S{next(_refs)}"))


def deposit(reseller: Reseller, amount: int, reference: str, at: datetime) -> ResellerDeposit:
    with clock(at):
        return record_deposit(
            reseller,
            amount,
            reference,
            at.date(),
            actor="staff:1:fin",
            ip="192.0.2.7",
            reason="bank transfer",
        )


def ledger_float_before(reseller: Reseller, moment: datetime) -> int:
    """The float as the sum of its transfers before ``moment``: the ledger, independently."""
    account = reseller.float_account_id
    before = Transfer.objects.filter(created_at__lt=moment)
    incoming = before.filter(destination_id=account).aggregate(s=Sum("amount"))["s"] or 0
    outgoing = before.filter(source_id=account).aggregate(s=Sum("amount"))["s"] or 0
    return int(incoming - outgoing)


@pytest.fixture
def carol(actors: Actors, settings: Any) -> Reseller:
    """Carol's shop (10 % off retail) and its autumn: see the module's docstring."""
    with clock(utc(2026, 9, 20, 2)):
        reseller, _key = create_reseller("Carol 卡罗通讯", discount_bps=1000)
    deposit(reseller, 1_000_000, "BANK-001", utc(2026, 10, 5, 3))
    sold(reseller, 1, "day-1g", utc(2026, 10, 20, 4))  # 450
    # 23:30 on 31 October in Shanghai: October.
    deposit(reseller, 200_000, "BANK-002", utc(2026, 10, 31, 15, 30))
    # 00:30 on 1 November in Shanghai (16:30 on 31 October in UTC): November.
    sold(reseller, 2, "month-20g", utc(2026, 10, 31, 16, 30))  # 5310
    with clock(utc(2026, 11, 10, 5)), transaction.atomic():
        credit_float(reseller, 5_000, "goodwill for a slow week")
    settings.NETWORK_ADAPTER = FAILING
    # 23:00 on 30 November in Shanghai: a November sale, still on its way.
    failing = sold(reseller, 3, "credit-50", utc(2026, 11, 30, 15))  # 4500
    assert failing.status == OrderStatus.PAID
    # 00:10 on 1 December in Shanghai: it fails and its price goes back to the float.
    with clock(utc(2026, 11, 30, 16, 10)), transaction.atomic():
        assert fail_and_refund(failing, "upstream_refused", "test")
    reseller.refresh_from_db()
    return reseller


DECEMBER_NOW = utc(2026, 12, 2, 3)


# --- the statement adds up, against the ledger ---------------------------------------------


def test_each_month_adds_up_chains_and_agrees_with_the_ledger(carol: Reseller) -> None:
    months = [(2026, 9), (2026, 10), (2026, 11), (2026, 12)]
    statements = [statement(carol, y, m, now=DECEMBER_NOW) for y, m in months]
    for st in statements:
        assert st.opening + st.net == st.closing
        assert st.balanced
        start, end = month_bounds(st.year, st.month)
        assert st.opening == ledger_float_before(carol, start)
        assert st.closing == ledger_float_before(carol, end)
    for earlier, later in itertools.pairwise(statements):
        assert earlier.closing == later.opening
    assert statements[-1].closing == float_of(carol)

    september, october, november, december = statements
    assert (september.opening, september.closing, september.sales_count) == (0, 0, 0)

    assert october.opening == 0
    assert [(d.reference, d.amount, d.received_on) for d in october.deposits] == [
        ("BANK-001", 1_000_000, date(2026, 10, 5)),
        ("BANK-002", 200_000, date(2026, 10, 31)),
    ]
    assert (october.sales_count, october.sales_total) == (1, 450)
    assert october.closing == 1_200_000 - 450
    assert october.complete

    assert november.deposits == ()
    assert [(c.amount, c.reference) for c in november.other_credits] == [
        (5_000, "goodwill for a slow week")
    ]
    assert (november.sales_count, november.sales_total) == (2, 5310 + 4500)
    assert [(p.plan.code, p.count, p.total) for p in november.by_plan] == [
        ("month-20g", 1, 5310),
        ("credit-50", 1, 4500),
    ]
    assert (november.refunds_count, november.refunds_total) == (0, 0)

    assert (december.refunds_count, december.refunds_total) == (1, 4500)
    assert december.sales_count == 0
    assert not december.complete
    assert december.closing == 1_200_000 - 450 - 5310 + 5_000


def test_a_month_to_come_or_out_of_range_has_no_statement(carol: Reseller) -> None:
    for year, month in [(2027, 1), (2026, 13), (1999, 12)]:
        with pytest.raises(DomainError) as refused:
            statement(carol, year, month, now=DECEMBER_NOW)
        assert refused.value.code == "invalid_month"


def test_the_portal_lists_months_that_are_over_since_the_reseller_began(carol: Reseller) -> None:
    assert past_months(carol, now=DECEMBER_NOW) == [(2026, 11), (2026, 10), (2026, 9)]


# --- deposits: exactly once per bank reference, audited -------------------------------------


def test_a_deposit_credits_the_float_once_and_is_audited(actors: Actors) -> None:
    reseller = actors.bob
    before = float_of(reseller)
    made = record_deposit(
        reseller,
        123_45,
        "  HSBC  7781 ",
        date(2026, 12, 1),
        actor="staff:9:finn",
        ip="192.0.2.1",
        reason="wire of 1 December",
    )
    assert made.bank_reference == "HSBC 7781"
    assert float_of(reseller) == before + 123_45
    transfer = Transfer.objects.get(pk=made.transfer_id)
    assert (transfer.kind, transfer.amount, transfer.destination_id) == (
        "float_credit",
        123_45,
        reseller.float_account_id,
    )
    assert transfer.destination_balance == before + 123_45
    entry = AuditEntry.objects.get(action=Action.RESELLER_DEPOSIT)
    assert entry.actor == "staff:9:finn"
    assert entry.ip == "192.0.2.1"
    assert entry.reason == "wire of 1 December"
    assert entry.object_id == str(reseller.pk)
    assert entry.after is not None
    assert entry.after["bank_reference"] == "HSBC 7781"
    assert entry.after["deposited"] == "123.45"
    assert entry.after["received_on"] == "2026-12-01"
    assert entry.after["transfer"] == transfer.pk
    assert entry.before is not None
    assert Decimal(entry.after["float"]) - Decimal(entry.before["float"]) == Decimal("123.45")


@pytest.mark.parametrize("again", ["HSBC 7781", "hsbc 7781", " HSBC   7781"])
def test_a_bank_reference_recorded_twice_is_refused(actors: Actors, again: str) -> None:
    reseller = actors.bob
    record_deposit(
        reseller, 10_000, "HSBC 7781", date(2026, 12, 1), actor="cli:ops", reason="first"
    )
    balance = float_of(reseller)
    transfers = Transfer.objects.count()
    with pytest.raises(DomainError) as refused:
        record_deposit(reseller, 10_000, again, date(2026, 12, 1), actor="cli:ops", reason="second")
    assert refused.value.code == "duplicate_bank_reference"
    assert refused.value.status == 409
    assert [e.field for e in refused.value.errors] == ["bank_reference"]
    assert float_of(reseller) == balance
    assert Transfer.objects.count() == transfers
    assert ResellerDeposit.objects.filter(reseller=reseller).count() == 1
    assert AuditEntry.objects.filter(action=Action.RESELLER_DEPOSIT).count() == 1


def test_another_reseller_may_have_the_same_bank_reference(actors: Actors) -> None:
    for reseller in (actors.alice, actors.bob):
        record_deposit(reseller, 500, "REF-1", date(2026, 12, 1), actor="cli:ops", reason="r")
    assert ResellerDeposit.objects.filter(bank_reference="REF-1").count() == 2


@pytest.mark.parametrize(
    ("amount", "reference", "received_on", "reason", "code"),
    [
        (0, "R1", date(2026, 12, 1), "r", "amount_not_positive"),
        (100, "   ", date(2026, 12, 1), "r", "bank_reference_required"),
        (100, "R" * 101, date(2026, 12, 1), "r", "bank_reference_too_long"),
        (100, "R1", date(2026, 12, 1), "  ", "reason_required"),
        (100, "R1", date(2026, 12, 6), "r", "received_in_future"),
    ],
)
def test_a_deposit_refuses_what_cannot_be_recorded(
    actors: Actors, amount: int, reference: str, received_on: date, reason: str, code: str
) -> None:
    before = float_of(actors.bob)
    # 23:30 on 5 December in Shanghai: the 5th is today, the 6th is the future.
    with clock(utc(2026, 12, 5, 15, 30)), pytest.raises(DomainError) as refused:
        record_deposit(actors.bob, amount, reference, received_on, actor="cli:ops", reason=reason)
    assert refused.value.code == code
    assert float_of(actors.bob) == before
    assert not ResellerDeposit.objects.exists()
    assert not AuditEntry.objects.filter(action=Action.RESELLER_DEPOSIT).exists()


def test_a_plain_credit_and_a_deposit_post_the_same_way(actors: Actors) -> None:
    with transaction.atomic():
        plain = credit_float(actors.bob, 700, "correction")
    made = record_deposit(actors.bob, 700, "X-1", date(2026, 12, 1), actor="cli:o", reason="r")
    dep = Transfer.objects.get(pk=made.transfer_id)
    assert (plain.source_id, plain.destination_id, plain.kind) == (
        dep.source_id,
        dep.destination_id,
        dep.kind,
    )


def test_the_command_records_a_deposit_as_the_os_user(actors: Actors) -> None:
    out = io.StringIO()
    call_command(
        "reseller",
        "deposit",
        "--agent-code",
        actors.bob.code.lower(),
        "--amount",
        "1000.00",
        "--bank-reference",
        "ICBC-42",
        "--received-on",
        "2026-12-01",
        "--reason",
        "wire",
        stdout=out,
    )
    answer = json.loads(out.getvalue())
    assert answer["bank_reference"] == "ICBC-42"
    assert answer["deposited"] == {"amount": "1000.00", "currency": "CNY"}
    assert answer["float"]["amount"] == "1050.00"  # 50.00 at creation
    entry = AuditEntry.objects.get(action=Action.RESELLER_DEPOSIT)
    assert entry.actor.startswith("cli:")
    assert entry.reason == "wire"
    with pytest.raises(CommandError, match="duplicate_bank_reference"):
        call_command(
            "reseller",
            "deposit",
            "--agent-code",
            actors.bob.code,
            "--amount",
            "1000.00",
            "--bank-reference",
            "icbc-42",
            "--received-on",
            "2026-12-01",
            "--reason",
            "again",
            stdout=io.StringIO(),
        )
    with pytest.raises(CommandError, match="no reseller"):
        call_command(
            "reseller",
            "deposit",
            "--agent-code",
            "AGNOPE",
            "--amount",
            "1.00",
            "--bank-reference",
            "Z",
            "--received-on",
            "2026-12-01",
            "--reason",
            "r",
        )


# --- CSV and PDF ----------------------------------------------------------------------------


def rows_of(sheet_bytes: bytes) -> list[list[str]]:
    text = sheet_bytes.decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:])))


def test_the_csv_lines_add_up_from_opening_to_closing(carol: Reseller) -> None:
    st = statement(carol, 2026, 11, now=DECEMBER_NOW)
    rows = rows_of(as_csv(st, "en").response("x.csv").content)
    assert rows[0] == ["Line", "Date", "Reference", "Plan", "Count", "Amount", "Currency"]
    assert rows[1][:1] + rows[1][5:] == ["Opening float", "11995.50", "CNY"]
    assert rows[1][1] == "2026-11-01"
    assert rows[-1][0] == "Closing float"
    assert rows[-1][1] == "2026-11-30"
    between = sum(Decimal(r[5]) for r in rows[2:-1])
    assert Decimal(rows[1][5]) + between == Decimal(rows[-1][5])
    assert [
        "Other credit",
        "2026-11-10",
        "goodwill for a slow week",
        "",
        "",
        "50.00",
        "CNY",
    ] in rows
    assert ["Top-ups sold", "", "", "month-20g", "1", "-53.10", "CNY"] in rows


def test_the_csv_speaks_chinese(carol: Reseller) -> None:
    st = statement(carol, 2026, 10, now=DECEMBER_NOW)
    rows = rows_of(as_csv(st, "zh-hans").response("x.csv").content)
    assert rows[0] == ["项目", "日期", "参考号", "套餐", "笔数", "金额", "币种"]
    assert ["入账", "2026-10-31", "BANK-002", "", "", "2000.00", "CNY"] in rows
    assert ["售出充值", "", "", "day-1g 简", "1", "-4.50", "CNY"] in rows
    hant = rows_of(as_csv(st, "zh-hant").response("x.csv").content)
    assert hant[1][0] == "期初預存款"


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "statement.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", "-layout", str(path), "-"], capture_output=True, check=True
    )
    return out.stdout.decode()


@pytest.mark.parametrize(
    ("language", "words"),
    [
        (
            "zh-hans",
            [
                "预存款对账单 2026-10",
                "卡罗通讯",
                "期初预存款",
                "银行入账",
                "BANK-002",
                "期末预存款",
            ],
        ),
        ("zh-hant", ["預存款對帳單 2026-10", "期初預存款", "銀行入帳", "day-1g 繁"]),
        ("en", ["Float statement 2026-10", "Opening float", "Deposits", "BANK-001", "day-1g"]),
    ],
)
def test_the_pdf_reads_in_each_language(
    carol: Reseller, tmp_path: Path, language: str, words: list[str]
) -> None:
    need_receipt_font()
    need_tools("pdftotext")
    st = statement(carol, 2026, 10, now=DECEMBER_NOW)
    pdf = as_pdf(st, language)
    assert pdf.startswith(b"%PDF")
    text = pdf_text(pdf, tmp_path)
    for word in words:
        assert word in text, (word, text)
    assert "¥11,995.50" in text  # the closing float: 12,000.00 − 4.50
    assert carol.code in text


# --- the reseller portal --------------------------------------------------------------------


@pytest.fixture
def carol_owner(carol: Reseller) -> Client:
    make_staff(carol, "owner@carol.example", "owner")
    client = Client()
    assert log_in(client, "owner@carol.example").status_code == 302
    return client


def portal_url(reseller: Reseller, year: int, month: int, fmt: str) -> str:
    return f"/agent/statements/{reseller.code}/{year}-{month}.{fmt}"


@pytest.mark.parametrize(
    ("lang", "title"),
    [("en", "Monthly statements"), ("zh-hans", "月结单"), ("zh-hant", "月結單")],
)
def test_the_portal_lists_the_months_with_links(
    carol_owner: Client, carol: Reseller, lang: str, title: str
) -> None:
    with clock(DECEMBER_NOW):
        page = carol_owner.get("/agent/statements", HTTP_ACCEPT_LANGUAGE=lang)
    html = page.content.decode()
    assert page.status_code == 200
    assert title in html
    for year, month in [(2026, 11), (2026, 10), (2026, 9)]:
        for fmt in ("pdf", "csv"):
            assert portal_url(carol, year, month, fmt) in html
    assert portal_url(carol, 2026, 12, "pdf") not in html
    transactions = carol_owner.get("/agent/transactions", HTTP_ACCEPT_LANGUAGE=lang)
    assert 'href="/agent/statements"' in transactions.content.decode()


def test_owner_and_clerk_download_their_statements(
    carol_owner: Client, carol: Reseller, tmp_path: Path
) -> None:
    make_staff(carol, "clerk@carol.example", "clerk")
    clerk = Client()
    assert log_in(clerk, "clerk@carol.example").status_code == 302
    for client in (carol_owner, clerk):
        response = client.get(portal_url(carol, 2026, 10, "csv"), HTTP_ACCEPT_LANGUAGE="zh-hans")
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/csv")
        assert f"statement-{carol.code}-2026-10.csv" in response["Content-Disposition"]
        assert "no-store" in response["Cache-Control"]
        rows = rows_of(response.content)
        assert rows[0][0] == "项目"
        assert ["入账", "2026-10-05", "BANK-001", "", "", "10000.00", "CNY"] in rows
    need_receipt_font()
    need_tools("pdftotext")
    pdf = carol_owner.get(portal_url(carol, 2026, 11, "pdf"), HTTP_ACCEPT_LANGUAGE="en")
    assert pdf.status_code == 200
    assert pdf["Content-Type"] == "application/pdf"
    text = pdf_text(pdf.content, tmp_path)
    assert "Float statement 2026-11" in text
    assert "month-20g" in text


def test_another_resellers_statement_and_other_months_are_not_found(
    carol_owner: Client, carol: Reseller, actors: Actors
) -> None:
    assert carol_owner.get(portal_url(actors.alice, 2026, 10, "csv")).status_code == 404
    assert carol_owner.get(portal_url(actors.alice, 2026, 10, "pdf")).status_code == 404
    with clock(DECEMBER_NOW):
        assert carol_owner.get(portal_url(carol, 2026, 12, "csv")).status_code == 404  # not over
    assert carol_owner.get(portal_url(carol, 2026, 8, "csv")).status_code == 404  # before carol
    assert carol_owner.get(portal_url(carol, 2026, 10, "xlsx")).status_code == 404
    # Alice's owner gets Alice's own, never Carol's.
    make_staff(actors.alice, "owner@alice.example", "owner")
    alice = Client()
    assert log_in(alice, "owner@alice.example").status_code == 302
    assert alice.get(portal_url(carol, 2026, 10, "csv")).status_code == 404
    visitor = Client().get(portal_url(carol, 2026, 10, "csv"))
    assert visitor.status_code == 302
    assert visitor["Location"].startswith("/agent/login")


def test_a_float_only_in_one_statement_is_the_ledgers(carol: Reseller) -> None:
    """The opening of a month is the balance the ledger recorded on the float's last
    transfer before it, not a sum: both agree here, and the transfer says so."""
    start, _end = month_bounds(2026, 11)
    account = carol.float_account_id
    last = (
        Transfer.objects.filter(Q(source_id=account) | Q(destination_id=account))
        .filter(created_at__lt=start)
        .order_by("-pk")
        .first()
    )
    assert last is not None
    recorded = last.source_balance if last.source_id == account else last.destination_balance
    assert statement(carol, 2026, 11, now=DECEMBER_NOW).opening == recorded


# --- exactly once under concurrency ---------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_one_bank_reference_recorded_at_once_by_many_credits_once() -> None:
    """Eight threads record the same bank transfer at the same moment (committed data, each
    with its own connection): one deposit, one credit, one audit row; the rest are told it
    is a duplicate."""
    from tests.test_concurrency import run_concurrently

    reseller, _key = create_reseller("Race Mobile")

    def attempt(n: int) -> Callable[[], str]:
        def job() -> str:
            try:
                record_deposit(
                    Reseller.objects.select_related("float_account").get(pk=reseller.pk),
                    10_000,
                    "SWIFT-RACE-1" if n % 2 else "swift-race-1 ",
                    date(2026, 12, 1),
                    actor=f"cli:t{n}",
                    reason="race",
                )
            except DomainError as exc:
                return exc.code
            return "recorded"

        return job

    outcomes = run_concurrently([attempt(n) for n in range(8)], threads=8)
    assert sorted(outcomes) == ["duplicate_bank_reference"] * 7 + ["recorded"]
    assert float_of(reseller) == 10_000
    assert ResellerDeposit.objects.filter(reseller=reseller).count() == 1
    assert AuditEntry.objects.filter(action=Action.RESELLER_DEPOSIT).count() == 1
    assert statement(reseller, *this_month_now()).deposits_total == 10_000


def this_month_now() -> tuple[int, int]:
    from simtopup.resellers.statements import this_month

    return this_month()
