"""The daily reconciliation (finance/actions.py) against each provider's own statement, served
offline in the provider's documented format: Stripe's balance transactions (a JSON list in
pages, ``has_more`` / ``starting_after``) from a loopback Stripe API; Alipay's trade bill (a
signed ``alipay.data.dataservice.bill.downloadurl.query`` answer, then a ZIP of GBK CSV files
with ``#`` comment lines) from a loopback gateway; WeChat Pay's trade bill (a signed
``/v3/bill/tradebill`` answer with the bill's SHA-1, then the gzip-compressed CSV whose cells
start with a backtick) from a loopback APIv3 gateway; and the sandbox gateway's own books.
Each mismatch kind is planted; the console pages, the CSV, the CLI and the daily job too.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
import zipfile
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from simtopup.audit.models import Action, AuditEntry
from simtopup.finance import actions as finance
from simtopup.finance.models import Outcome, ReconciliationLine, ReconciliationRun, RunStatus
from simtopup.orders.models import Order, OrderStatus
from simtopup.payments.models import (
    Payment,
    PaymentStatus,
    Refund,
    RefundStatus,
    SandboxCharge,
    SandboxChargeStatus,
    SandboxRefund,
)
from simtopup.payments.providers import base
from simtopup.payments.providers._common import BEIJING
from simtopup.payments.providers.alipay import parse_trade_bill as parse_alipay_bill
from simtopup.payments.providers.wechatpay import parse_trade_bill as parse_wechat_bill
from tests.loopback import LoopbackService
from tests.payment_keys import KeyPair, apiv3_key, key_pair, wechat_signature_headers
from tests.staff_support import console_client, make_staff
from tests.support import Actors

DAY = date(2026, 11, 25)


# --- our books ------------------------------------------------------------------------------


def paid(
    actors: Actors,
    provider: str,
    reference: str,
    amount: int,
    captured_at: datetime | None,
    *,
    status: str = PaymentStatus.SUCCEEDED,
    provider_ref: str = "",
) -> Payment:
    """An order paid through ``provider`` (captured at ``captured_at``; None: never)."""
    from simtopup.catalog.models import Plan

    order = Order.objects.create(
        channel="app",
        status=OrderStatus.FULFILLED if captured_at else OrderStatus.CANCELLED,
        device=actors.device,
        plan=Plan.objects.get(code="day-1g"),
        payment_method="alipay",
        amount=amount,
        retail_amount=amount,
        currency="CNY",
    )
    return Payment.objects.create(
        order=order,
        provider=provider,
        method="alipay",
        status=status if captured_at else PaymentStatus.FAILED,
        amount=amount,
        currency="CNY",
        reference=reference,
        provider_ref=provider_ref,
        captured_at=captured_at,
    )


def refunded(payment: Payment, reference: str, settled_at: datetime) -> Refund:
    Payment.objects.filter(pk=payment.pk).update(status=PaymentStatus.REFUNDED)
    # Refunds name their order where refunds are per order (staff refunds, issue 14).
    per_order = any(f.name == "order" for f in Refund._meta.get_fields())
    return Refund.objects.create(
        **({"order": payment.order} if per_order else {}),
        payment=payment,
        reference=reference,
        amount=payment.amount,
        currency=payment.currency,
        reason="customer",
        status=RefundStatus.SUCCEEDED,
        settled_at=settled_at,
    )


def at_beijing(hour: int, minute: int = 0, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=BEIJING).astimezone(UTC)


def at_utc(hour: int, minute: int = 0, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def outcomes(run: ReconciliationRun) -> dict[str, str]:
    """``{reference or provider ref: outcome}`` of a run's lines."""
    return {
        line.reference or line.provider_ref: line.outcome
        for line in ReconciliationLine.objects.filter(run=run)
    }


# --- the sandbox: its own books ---------------------------------------------------------------


def charge(reference: str, amount: int, settled_at: datetime, **changes: Any) -> SandboxCharge:
    fields: dict[str, Any] = {
        "public_id": "sbx_" + reference,
        "merchant": "simtopup-sandbox",
        "reference": reference,
        "amount": amount,
        "currency": "CNY",
        "method": "alipay",
        "description": "day-1g",
        "notify_url": "http://127.0.0.1/payments/webhooks/sandbox",
        "return_url": "http://127.0.0.1/return",
        "status": SandboxChargeStatus.SUCCEEDED,
        "settled_at": settled_at,
        **changes,
    }
    return SandboxCharge.objects.create(**fields)


@pytest.fixture
def sandbox_day(actors: Actors) -> dict[str, Any]:
    """A day of the sandbox with one line of each outcome planted."""
    ok = paid(actors, "sandbox", "pay_sbx_ok", 3000, at_utc(9))
    charge("pay_sbx_ok", 3000, at_utc(9))
    wrong = paid(actors, "sandbox", "pay_sbx_amount", 3000, at_utc(10))
    charge("pay_sbx_amount", 3100, at_utc(10))  # the gateway took ¥31.00, we asked ¥30.00
    paid(actors, "sandbox", "pay_sbx_theirs_missing", 500, at_utc(11))
    charge("pay_sbx_unknown", 700, at_utc(12))  # money we never heard of
    paid(actors, "sandbox", "pay_sbx_state", 900, None)  # we think it failed
    charge("pay_sbx_state", 900, at_utc(13))
    back = paid(actors, "sandbox", "pay_sbx_refunded", 1200, at_utc(8))
    made = charge("pay_sbx_refunded", 1200, at_utc(8), status=SandboxChargeStatus.REFUNDED)
    refunded(back, "rfd_sbx_1", at_utc(14))
    gave = SandboxRefund.objects.create(
        public_id="sbxr_1", charge=made, refund_reference="rfd_sbx_1", amount=1200
    )
    SandboxRefund.objects.filter(pk=gave.pk).update(created_at=at_utc(14))
    # The day before and after (UTC) are not this day's.
    paid(actors, "sandbox", "pay_sbx_yesterday", 100, at_utc(23, 59, DAY - timedelta(days=1)))
    charge("pay_sbx_yesterday", 100, at_utc(23, 59, DAY - timedelta(days=1)))
    return {"ok": ok, "wrong": wrong}


def test_it_finds_each_kind_of_mismatch_in_the_sandboxs_books(
    sandbox_day: dict[str, Any],
) -> None:
    run = finance.reconcile("sandbox", DAY, actor="cli:tester")

    assert run.status == RunStatus.COMPLETED
    assert (run.provider, run.day, run.run_no, run.zone) == ("sandbox", DAY, 1, "UTC")
    assert outcomes(run) == {
        "pay_sbx_ok": Outcome.MATCHED,
        "pay_sbx_refunded": Outcome.MATCHED,
        "rfd_sbx_1": Outcome.MATCHED,
        "pay_sbx_amount": Outcome.AMOUNT_MISMATCH,
        "pay_sbx_theirs_missing": Outcome.MISSING_THEIRS,
        "pay_sbx_unknown": Outcome.MISSING_OURS,
        "pay_sbx_state": Outcome.STATE_MISMATCH,
    }
    assert (
        run.statement_lines,
        run.matched,
        run.amount_mismatch,
        run.state_mismatch,
        run.missing_ours,
        run.missing_theirs,
    ) == (6, 3, 1, 1, 1, 1)
    wrong = ReconciliationLine.objects.get(run=run, reference="pay_sbx_amount")
    assert (wrong.our_amount, wrong.their_amount, wrong.payment) == (
        3000,
        3100,
        sandbox_day["wrong"],
    )
    state = ReconciliationLine.objects.get(run=run, reference="pay_sbx_state")
    assert (state.our_state, state.their_state) == ("failed", "succeeded")
    refund = ReconciliationLine.objects.get(run=run, reference="rfd_sbx_1")
    assert refund.kind == "refund"
    assert refund.refund is not None
    [entry] = AuditEntry.objects.filter(action=Action.RECONCILIATION)
    assert entry.actor == "cli:tester"
    assert entry.object_id == str(run.pk)
    after = entry.after or {}
    assert after["amount_mismatch"] == 1
    assert after["status"] == "completed"


def test_every_run_is_kept_with_its_own_number(sandbox_day: dict[str, Any]) -> None:
    first = finance.reconcile("sandbox", DAY)
    SandboxCharge.objects.filter(reference="pay_sbx_amount").update(amount=3000)
    second = finance.reconcile("sandbox", DAY)

    assert (first.run_no, second.run_no) == (1, 2)
    assert (first.amount_mismatch, second.amount_mismatch) == (1, 0)
    assert ReconciliationRun.objects.count() == 2


def test_a_statement_line_without_our_reference_is_matched_by_the_providers_id(
    actors: Actors,
) -> None:
    paid(actors, "sandbox", "pay_sbx_noref", 800, at_utc(9), provider_ref="sbx_pay_sbx_noref")
    charge("pay_sbx_noref", 800, at_utc(9))
    SandboxCharge.objects.filter(reference="pay_sbx_noref").update(reference="")

    run = finance.reconcile("sandbox", DAY)
    assert outcomes(run) == {"pay_sbx_noref": Outcome.MATCHED}
    assert (run.matched, run.missing_theirs) == (1, 0)


def test_a_refund_line_without_our_reference_is_matched_by_the_providers_refund_id(
    actors: Actors,
) -> None:
    back = paid(actors, "sandbox", "pay_sbx_rf_noref", 1200, at_utc(8))
    made = charge("pay_sbx_rf_noref", 1200, at_utc(8), status=SandboxChargeStatus.REFUNDED)
    ours = refunded(back, "rfd_sbx_noref", at_utc(14))
    Refund.objects.filter(pk=ours.pk).update(provider_refund_ref="sbxr_noref")
    gave = SandboxRefund.objects.create(
        public_id="sbxr_noref", charge=made, refund_reference="", amount=1200
    )
    SandboxRefund.objects.filter(pk=gave.pk).update(created_at=at_utc(14))

    run = finance.reconcile("sandbox", DAY)
    line = ReconciliationLine.objects.get(run=run, kind="refund")
    assert (line.outcome, line.refund_id) == (Outcome.MATCHED, ours.pk)
    assert (run.matched, run.missing_ours, run.missing_theirs) == (2, 0, 0)


def test_a_capture_just_across_midnight_still_matches(actors: Actors) -> None:
    # We recorded the capture a second after midnight; the gateway a second before.
    paid(actors, "sandbox", "pay_sbx_midnight", 800, at_utc(0, 0, DAY + timedelta(days=1)))
    charge("pay_sbx_midnight", 800, at_utc(23, 59))

    run = finance.reconcile("sandbox", DAY)
    assert outcomes(run) == {"pay_sbx_midnight": Outcome.MATCHED}
    assert run.missing_ours == 0


# --- Stripe: balance transactions, in pages -----------------------------------------------------


class FakeStripeApi:
    """api.stripe.com's ``GET /v1/balance_transactions`` on loopback: ``page_size`` objects
    a page, newest first, ``has_more`` and ``starting_after`` as Stripe pages them; every
    request's query recorded."""

    def __init__(self, transactions: list[dict[str, Any]], page_size: int = 2) -> None:
        self.transactions = transactions
        self.page_size = page_size
        self.queries: list[dict[str, list[str]]] = []
        self.authorizations: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                fake.queries.append(query)
                fake.authorizations.append(self.headers.get("Authorization", ""))
                status, body = fake.answer(parts.path, query)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", "req_fake")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.service = LoopbackService(Handler, name="fake-stripe", hold_timeout=5).start()

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        if path != "/v1/balance_transactions":
            return 404, {"error": {"type": "invalid_request_error", "code": "resource_missing"}}
        gte = int(query["created[gte]"][0])
        lt = int(query["created[lt]"][0])
        chosen = sorted(
            (t for t in self.transactions if gte <= t["created"] < lt),
            key=lambda t: -t["created"],
        )
        after = query.get("starting_after", [""])[0]
        if after:
            ids = [t["id"] for t in chosen]
            chosen = chosen[ids.index(after) + 1 :]
        page = chosen[: self.page_size]
        return 200, {
            "object": "list",
            "url": "/v1/balance_transactions",
            "has_more": len(chosen) > self.page_size,
            "data": page,
        }

    def close(self) -> None:
        self.service.close()


def stripe_charge(bt: str, ref: str, amount: int, created: datetime, **changes: Any) -> dict:
    """A ``charge`` balance transaction with its source expanded, as Stripe sends it: the
    balance moved in USD, the charge itself in CNY (its own amount is what we compare)."""
    return {
        "id": bt,
        "object": "balance_transaction",
        "type": "charge",
        "reporting_category": "charge",
        "amount": round(amount * 0.14),
        "currency": "usd",
        "fee": 12,
        "net": round(amount * 0.14) - 12,
        "created": int(created.timestamp()),
        "status": "available",
        "source": {
            "id": "ch_" + bt,
            "object": "charge",
            "amount": amount,
            "currency": "cny",
            "status": "succeeded",
            "metadata": {},
            "payment_intent": {
                "id": "pi_" + bt,
                "object": "payment_intent",
                "metadata": {"reference": ref},
            },
            **changes,
        },
    }


def stripe_refund(bt: str, ref: str, refund_ref: str, amount: int, created: datetime) -> dict:
    return {
        "id": bt,
        "object": "balance_transaction",
        "type": "refund",
        "reporting_category": "refund",
        "amount": -round(amount * 0.14),
        "currency": "usd",
        "fee": 0,
        "net": -round(amount * 0.14),
        "created": int(created.timestamp()),
        "status": "available",
        "source": {
            "id": "re_" + bt,
            "object": "refund",
            "amount": amount,
            "currency": "cny",
            "status": "succeeded",
            "metadata": {"reference": ref, "refund_reference": refund_ref},
            "payment_intent": {"id": "pi_x", "object": "payment_intent", "metadata": {}},
        },
    }


@pytest.fixture
def stripe_settings(settings: Any) -> Any:
    settings.STRIPE_SECRET_KEY = "sk_test_51Fake"
    settings.STRIPE_WEBHOOK_SECRET = "whsec_test_0123456789abcdef"
    settings.STRIPE_ACCOUNT = ""
    settings.STRIPE_API_VERSION = ""
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    settings.STRIPE_TIMEOUT_SECONDS = 5
    return settings


@pytest.fixture
def stripe_api(stripe_settings: Any, actors: Actors) -> Iterator[FakeStripeApi]:
    ok = paid(actors, "stripe", "pay_str_ok", 3000, at_utc(9), provider_ref="pi_bt1")
    paid(actors, "stripe", "pay_str_amount", 5900, at_utc(10))
    back = paid(actors, "stripe", "pay_str_refunded", 500, at_utc(1))
    refunded(back, "rfd_str_1", at_utc(15))
    paid(actors, "stripe", "pay_str_missing", 800, at_utc(16))
    fake = FakeStripeApi(
        [
            stripe_charge("bt1", "pay_str_ok", 3000, at_utc(9)),
            stripe_charge("bt2", "pay_str_amount", 5800, at_utc(10)),
            stripe_charge("bt3", "pay_str_refunded", 500, at_utc(1)),
            stripe_refund("bt4", "pay_str_refunded", "rfd_str_1", 500, at_utc(15)),
            stripe_charge("bt5", "pay_str_stranger", 100, at_utc(17)),
            # A payout and a fee are not ours to match; the day after is another day.
            {
                "id": "bt6",
                "object": "balance_transaction",
                "type": "payout",
                "reporting_category": "payout",
                "amount": -10000,
                "currency": "usd",
                "created": int(at_utc(18).timestamp()),
                "source": {"id": "po_1", "object": "payout", "amount": 10000},
            },
            stripe_charge("bt7", "pay_str_tomorrow", 100, at_utc(0, 30, DAY + timedelta(1))),
        ]
    )
    stripe_settings.STRIPE_API_BASE = fake.service.origin
    assert ok.pk
    yield fake
    fake.close()


def test_it_reads_every_page_of_stripes_balance_transactions(stripe_api: FakeStripeApi) -> None:
    run = finance.reconcile("stripe", DAY)

    assert run.status == RunStatus.COMPLETED, run.error_message
    assert outcomes(run) == {
        "pay_str_ok": Outcome.MATCHED,
        "pay_str_amount": Outcome.AMOUNT_MISMATCH,
        "pay_str_refunded": Outcome.MATCHED,
        "rfd_str_1": Outcome.MATCHED,
        "pay_str_stranger": Outcome.MISSING_OURS,
        "pay_str_missing": Outcome.MISSING_THEIRS,
    }
    # Three pages of two: the second and third ask after the last id of the one before.
    assert [q.get("starting_after") for q in stripe_api.queries] == [None, ["bt5"], ["bt2"]]
    first = stripe_api.queries[0]
    assert first["created[gte]"] == [str(int(at_utc(0).timestamp()))]
    assert first["created[lt]"] == [str(int(at_utc(0, 0, DAY + timedelta(1)).timestamp()))]
    assert first["limit"] == ["100"]
    expand = {v[0] for k, v in first.items() if k.startswith("expand[")}
    assert expand == {"data.source", "data.source.payment_intent"}
    assert stripe_api.authorizations[0] == "Bearer sk_test_51Fake"
    amount = ReconciliationLine.objects.get(run=run, reference="pay_str_amount")
    # The charge's own CNY amounts, not the balance's converted USD ones.
    assert (amount.our_amount, amount.their_amount, amount.currency) == (5900, 5800, "CNY")


def test_an_unreachable_provider_gives_a_failed_run_not_a_crash(
    stripe_settings: Any, actors: Actors
) -> None:
    stripe_settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens on discard
    paid(actors, "stripe", "pay_str_ok", 3000, at_utc(9))

    run = finance.reconcile("stripe", DAY, actor="cli:tester")

    assert run.status == RunStatus.FAILED
    assert run.error_code == "provider_unavailable"
    assert not ReconciliationLine.objects.filter(run=run).exists()
    [entry] = AuditEntry.objects.filter(action=Action.RECONCILIATION)
    assert (entry.after or {})["status"] == "failed"
    with pytest.raises(CommandError, match="provider_unavailable"):
        call_command("finance", "reconcile", "--provider", "stripe", "--day", DAY.isoformat())
    assert ReconciliationRun.objects.filter(status=RunStatus.FAILED).count() == 2


def test_an_unconfigured_provider_gives_a_failed_run(settings: Any, db: None) -> None:
    settings.ALIPAY_APP_ID = ""
    run = finance.reconcile("alipay", DAY)
    assert (run.status, run.error_code, run.zone) == (
        RunStatus.FAILED,
        "provider_misconfigured",
        "Asia/Shanghai",
    )


# --- Alipay: the trade bill, a ZIP of GBK CSV files ---------------------------------------------

ALIPAY_HEADER = (
    "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,"
    "终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,"
    "商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,"
    "退款批次号/请求号,服务费（元）,分润（元）,备注"
)


def alipay_row(
    trade_no: str, ref: str, kind: str, order: str, received: str, finished: str, request_no: str
) -> str:
    cells = [
        trade_no,
        ref,
        kind,
        "月套餐 20GB",
        finished,
        finished,
        "",
        "",
        "",
        "",
        "abc***@163.com",
        order,
        received,
        "0.00",
        "0.00",
        "0.00",
        "0.00",
        "0.00",
        "",
        "0.00",
        "0.00",
        request_no,
        "-0.18",
        "0.00",
        "",
    ]
    # Alipay pads every cell with a tab.
    return ",".join(cell + "\t" for cell in cells)


class _GbkName(zipfile.ZipInfo):
    """A member whose name is written in GBK without the UTF-8 flag, as Alipay writes it."""

    def _encodeFilenameFlags(self) -> tuple[bytes, int]:
        return self.filename.encode("gbk"), self.flag_bits


def alipay_bill(rows: list[str]) -> bytes:
    detail = "\n".join(
        [
            "#支付宝业务明细查询",
            "#账号：[20881021776494500156]",
            "#起始日期：[2026年11月25日 00:00:00]   终止日期：[2026年11月26日 00:00:00]",
            "#-----------------------------------------业务明细列表----------------------------------------",
            ALIPAY_HEADER,
            *rows,
            "#-----------------------------------------业务明细列表结束------------------------------------",
            "#交易合计：3笔，商家实收共：89.00元，商家优惠共：0.00元",
            "#退款合计：1笔，商家实收退款共：-5.00元，商家优惠退款共：0.00元",
            "#导出时间：[2026年11月26日 09:12:43]",
        ]
    )
    summary = "\n".join(
        [
            "#支付宝业务汇总查询",
            "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）",
            "合计,,3,1,89.00,84.00",
        ]
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in (
            ("20881021776494500156_20261125_业务明细(汇总).csv", summary),
            ("20881021776494500156_20261125_业务明细.csv", detail),
        ):
            info = _GbkName(name, date_time=(2026, 11, 26, 9, 12, 43))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, text.encode("gbk"))
    return buffer.getvalue()


class BillFiles:
    """A download server (Alipay's dwbillcenter.alipay.com) on loopback."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                data = served.files.get(urlsplit(self.path).path)
                self.send_response(200 if data is not None else 404)
                self.send_header("Content-Type", "application/oct-stream")
                self.send_header("Content-Length", str(len(data or b"")))
                self.end_headers()
                self.wfile.write(data or b"")

            def log_message(self, *args: Any) -> None:
                pass

        self.service = LoopbackService(Handler, name="bill-files", hold_timeout=5).start()


@pytest.fixture
def alipay_day(settings: Any, actors: Actors) -> Iterator[tuple[Any, BillFiles]]:
    from tests.test_provider_alipay import APP_ID, FakeAlipayGateway

    app, platform = key_pair("alipay-app"), key_pair("alipay-platform")
    gateway = FakeAlipayGateway(app, platform)
    files = BillFiles()
    settings.ALIPAY_APP_ID = APP_ID
    settings.ALIPAY_APP_PRIVATE_KEY = app.private_base64
    settings.ALIPAY_PUBLIC_KEY = platform.public_base64
    settings.ALIPAY_SELLER_ID = ""
    settings.ALIPAY_SANDBOX = False
    settings.ALIPAY_GATEWAY = gateway.url
    settings.ALIPAY_PAYMENT_MODE = "page"
    settings.ALIPAY_TIMEOUT_SECONDS = 5
    settings.ALIPAY_VERBOSE = False
    files.files["/downloadFile.do"] = alipay_bill(
        [
            alipay_row(
                "2026112522001404120500000001",
                "pay_ali_ok",
                "交易",
                "30.00",
                "30.00",
                "2026-11-25 00:00:05",
                "",
            ),
            alipay_row(
                "2026112522001404120500000002",
                "pay_ali_amount",
                "交易",
                "54.00",
                "54.00",
                "2026-11-25 12:00:00",
                "",
            ),
            alipay_row(
                "2026112522001404120500000003",
                "pay_ali_back",
                "交易",
                "5.00",
                "5.00",
                "2026-11-25 13:00:00",
                "",
            ),
            alipay_row(
                "2026112522001404120500000003",
                "pay_ali_back",
                "退款",
                "5.00",
                "-5.00",
                "2026-11-25 23:59:59",
                "rfd_ali_1",
            ),
        ]
    )
    download = f"{files.service.origin}/downloadFile.do"
    gateway.answers["alipay.data.dataservice.bill.downloadurl.query"] = lambda biz: {
        "code": "10000",
        "msg": "Success",
        "bill_download_url": download + "?bizType=trade&fileId=" + biz["bill_date"],
    }
    # Beijing midnight: 16:00 UTC the day before — still this Beijing day.
    paid(actors, "alipay", "pay_ali_ok", 3000, at_beijing(0, 0) + timedelta(seconds=7))
    paid(actors, "alipay", "pay_ali_amount", 5900, at_beijing(12))
    back = paid(actors, "alipay", "pay_ali_back", 500, at_beijing(13))
    refunded(back, "rfd_ali_1", at_beijing(23, 59))
    yield gateway, files
    gateway.close()
    files.service.close()


def test_it_reads_alipays_zip_of_gbk_csv_in_beijing_days(
    alipay_day: tuple[Any, BillFiles],
) -> None:
    gateway, _files = alipay_day
    run = finance.reconcile("alipay", DAY)

    assert run.status == RunStatus.COMPLETED, run.error_message
    assert run.zone == "Asia/Shanghai"
    assert outcomes(run) == {
        "pay_ali_ok": Outcome.MATCHED,
        "pay_ali_amount": Outcome.AMOUNT_MISMATCH,
        "pay_ali_back": Outcome.MATCHED,
        "rfd_ali_1": Outcome.MATCHED,
    }
    [asked] = gateway.requests  # signed by our app key, verified by the fake gateway
    assert asked["method"] == "alipay.data.dataservice.bill.downloadurl.query"
    assert asked["biz_content"] == {"bill_type": "trade", "bill_date": "2026-11-25"}
    line = ReconciliationLine.objects.get(run=run, reference="pay_ali_amount")
    assert (line.our_amount, line.their_amount) == (5900, 5400)
    assert line.at == at_beijing(12)


def test_alipays_bill_parser_reads_the_documented_layout() -> None:
    lines = parse_alipay_bill(
        alipay_bill(
            [
                alipay_row("T1", "pay_a", "交易", "0.01", "0.01", "2026-11-25 10:00:00", ""),
                alipay_row("T1", "pay_a", "退款", "0.01", "-0.01", "2026-11-25 11:00:00", "r1"),
            ]
        )
    )
    assert lines == [
        base.StatementLine("payment", "pay_a", "T1", 1, "CNY", at=at_beijing(10)),
        base.StatementLine(
            "refund", "r1", "T1", 1, "CNY", at=at_beijing(11), payment_reference="pay_a"
        ),
    ]
    with pytest.raises(base.ProviderError, match="malformed"):
        parse_alipay_bill(b"not a zip")


def test_no_alipay_bill_for_a_day_means_no_trade(alipay_day: tuple[Any, BillFiles]) -> None:
    gateway, _files = alipay_day
    gateway.answers["alipay.data.dataservice.bill.downloadurl.query"] = {
        "code": "40004",
        "msg": "Business Failed",
        "sub_code": "isp.bill_not_exist",
        "sub_msg": "账单不存在",
    }
    run = finance.reconcile("alipay", DAY)
    assert run.status == RunStatus.COMPLETED
    assert (run.statement_lines, run.missing_theirs) == (0, 4)


def test_an_alipay_outage_fails_the_run(alipay_day: tuple[Any, BillFiles]) -> None:
    gateway, _files = alipay_day
    gateway.http_status = 503
    run = finance.reconcile("alipay", DAY)
    assert (run.status, run.error_code) == (RunStatus.FAILED, "provider_unavailable")


# --- WeChat Pay: the trade bill, backtick CSV, gzip, SHA-1 -----------------------------------------

MCHID = "1900009191"
APPID = "wxd678efh567hg6787"
MERCHANT_SERIAL = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
PUBLIC_KEY_ID = "PUB_KEY_ID_0119000091912026112600000000000001"
WECHAT_HEADER = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,"
    "付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,"
    "退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注"
)


def wechat_row(
    when: str,
    transaction_id: str,
    ref: str,
    state: str,
    settle: str,
    total: str,
    refund_id: str = "",
    refund_no: str = "",
    refund: str = "0.00",
    refund_state: str = "",
    applied: str = "0.00",
) -> str:
    cells = [
        when,
        APPID,
        MCHID,
        "0",
        "",
        transaction_id,
        ref,
        "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
        "NATIVE",
        state,
        "OTHERS",
        "CNY",
        settle,
        "0.00",
        refund_id,
        refund_no,
        refund,
        "0.00",
        "ORIGINAL" if refund_id else "",
        refund_state,
        "月套餐, 20GB",  # a comma inside a cell
        "",
        "0.18000",
        "0.60%",
        total,
        applied,
        "",
    ]
    return ",".join("`" + cell for cell in cells)


def wechat_bill(rows: list[str]) -> bytes:
    return (
        "\n".join(
            [
                WECHAT_HEADER,
                *rows,
                "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额",
                f"`{len(rows)},`89.00,`5.00,`0.00,`0.54000,`89.00,`5.00",
            ]
        )
        + "\n"
    ).encode()


class FakeWechatBills:
    """api.mch.weixin.qq.com's tradebill and billdownload on loopback: requests must carry our
    merchant signature; the tradebill answer is signed with the platform key (the SDK checks
    it); the download is the gzip-compressed bill (not signed, as WeChat Pay's is not)."""

    def __init__(self, merchant: KeyPair, platform: KeyPair) -> None:
        self.merchant = merchant
        self.platform = platform
        self.bill = b""
        self.hash_value = ""
        self.queries: list[dict[str, list[str]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, content_type, data = fake.answer(
                    self.path, self.headers.get("Authorization", "")
                )
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                if content_type == "application/json":
                    for name, value in wechat_signature_headers(
                        data, fake.platform, PUBLIC_KEY_ID
                    ).items():
                        self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.service = LoopbackService(Handler, name="fake-wechat", hold_timeout=5).start()

    def answer(self, path: str, authorization: str) -> tuple[int, str, bytes]:
        fields = dict(re.findall(r'(\w+)="([^"]*)"', authorization))
        message = f"GET\n{path}\n{fields.get('timestamp')}\n{fields.get('nonce_str')}\n\n"
        if not (
            fields.get("mchid") == MCHID
            and self.merchant.verify_sha256(message.encode(), fields.get("signature", ""))
        ):
            return 401, "application/json", b'{"code":"SIGN_ERROR","message":"bad"}'
        parts = urlsplit(path)
        if parts.path == "/v3/bill/tradebill":
            self.queries.append(parse_qs(parts.query))
            if not self.bill:
                body = {"code": "NO_STATEMENT_EXIST", "message": "账单文件不存在"}
                return 400, "application/json", json.dumps(body).encode()
            body = {
                "download_url": f"{self.service.origin}/v3/billdownload/file?token=t0k",
                "hash_type": "SHA1",
                "hash_value": self.hash_value or hashlib.sha1(self.bill).hexdigest(),
            }
            return 200, "application/json", json.dumps(body).encode()
        if parts.path == "/v3/billdownload/file":
            return 200, "application/octet-stream", gzip.compress(self.bill)
        return 404, "application/json", b'{"code":"RESOURCE_NOT_EXISTS","message":"no"}'


@pytest.fixture
def wechat_day(settings: Any, actors: Actors) -> Iterator[FakeWechatBills]:
    merchant, platform = key_pair("wechat-merchant"), key_pair("wechat-platform")
    fake = FakeWechatBills(merchant, platform)
    settings.WECHATPAY_MCHID = MCHID
    settings.WECHATPAY_APPID = APPID
    settings.WECHATPAY_APIV3_KEY = apiv3_key()
    settings.WECHATPAY_PRIVATE_KEY = merchant.private_pem
    settings.WECHATPAY_CERT_SERIAL_NO = MERCHANT_SERIAL
    settings.WECHATPAY_PUBLIC_KEY = platform.public_pem
    settings.WECHATPAY_PUBLIC_KEY_ID = PUBLIC_KEY_ID
    settings.WECHATPAY_CERT_DIR = ""
    settings.WECHATPAY_GATEWAY = fake.service.origin
    settings.WECHATPAY_TIMEOUT_SECONDS = 5
    fake.bill = wechat_bill(
        [
            wechat_row("2026-11-25 09:00:00", "4200001", "pay_wx_ok", "SUCCESS", "30.00", "30.00"),
            wechat_row("2026-11-25 10:00:00", "4200002", "pay_wx_back", "SUCCESS", "5.00", "5.00"),
            wechat_row(
                "2026-11-25 11:00:00",
                "4200002",
                "pay_wx_back",
                "REFUND",
                "0.00",
                "5.00",
                refund_id="50300001",
                refund_no="rfd_wx_1",
                refund="5.00",
                refund_state="PROCESSING",
                applied="5.00",
            ),
            wechat_row(
                "2026-11-25 12:00:00", "4200003", "pay_wx_other", "SUCCESS", "49.00", "49.00"
            ),
        ]
    )
    paid(actors, "wechatpay", "pay_wx_ok", 3000, at_beijing(9))
    back = paid(actors, "wechatpay", "pay_wx_back", 500, at_beijing(10))
    refunded(back, "rfd_wx_1", at_beijing(11))  # we think it went through; WeChat: still going
    yield fake
    fake.service.close()


def test_it_reads_wechat_pays_backtick_bill_and_checks_its_hash(
    wechat_day: FakeWechatBills,
) -> None:
    run = finance.reconcile("wechatpay", DAY)

    assert run.status == RunStatus.COMPLETED, run.error_message
    assert outcomes(run) == {
        "pay_wx_ok": Outcome.MATCHED,
        "pay_wx_back": Outcome.MATCHED,
        "rfd_wx_1": Outcome.STATE_MISMATCH,
        "pay_wx_other": Outcome.MISSING_OURS,
    }
    assert wechat_day.queries == [
        {"bill_date": ["2026-11-25"], "bill_type": ["ALL"], "tar_type": ["GZIP"]}
    ]
    refund = ReconciliationLine.objects.get(run=run, reference="rfd_wx_1")
    assert (refund.our_state, refund.their_state, refund.provider_ref) == (
        "succeeded",
        "pending",
        "50300001",
    )


def test_a_wechat_bill_that_does_not_hash_to_its_value_is_refused(
    wechat_day: FakeWechatBills,
) -> None:
    wechat_day.hash_value = hashlib.sha1(b"another bill").hexdigest()
    run = finance.reconcile("wechatpay", DAY)
    assert (run.status, run.error_code) == (RunStatus.FAILED, "statement_hash_mismatch")


def test_no_wechat_bill_for_a_day_means_no_trade(wechat_day: FakeWechatBills) -> None:
    wechat_day.bill = b""
    run = finance.reconcile("wechatpay", DAY)
    assert (run.status, run.statement_lines, run.missing_theirs) == (RunStatus.COMPLETED, 0, 3)


def test_wechats_bill_parser_checks_the_summary_count() -> None:
    bill = wechat_bill(
        [wechat_row("2026-11-25 09:00:00", "4200001", "pay_a", "SUCCESS", "0.01", "0.01")]
    ).decode()
    [line] = parse_wechat_bill(bill)
    assert line == base.StatementLine("payment", "pay_a", "4200001", 1, "CNY", at=at_beijing(9))
    cut = bill.replace("`1,`89.00", "`2,`89.00")
    with pytest.raises(base.ProviderError, match="summary"):
        parse_wechat_bill(cut)


# --- the daily job, the CLI -------------------------------------------------------------------


def test_the_daily_job_reconciles_yesterday_once(sandbox_day: dict[str, Any]) -> None:
    now = at_utc(3, 0, DAY + timedelta(days=1))  # the sandbox's statement is ready after 1 h

    assert finance.run_daily(["sandbox"], now=now) == {"sandbox": "2026-11-25 completed"}
    assert finance.run_daily(["sandbox"], now=now + timedelta(hours=5)) == {}
    [run] = ReconciliationRun.objects.all()
    assert (run.day, run.scheduled, run.actor) == (DAY, True, "system")
    # Before the day's statement is ready, the day before is the due one.
    assert finance.due_day("sandbox", at_utc(0, 30, DAY + timedelta(days=1))) == DAY - timedelta(1)
    assert finance.due_day("alipay", at_beijing(9, 0, DAY + timedelta(1))) == DAY - timedelta(1)
    assert finance.due_day("alipay", at_beijing(10, 0, DAY + timedelta(1))) == DAY


def test_a_second_worker_racing_for_the_same_day_adds_no_second_daily_run(
    sandbox_day: dict[str, Any],
) -> None:
    now = at_utc(3, 0, DAY + timedelta(days=1))
    first = finance.reconcile("sandbox", DAY, scheduled=True)
    # The other worker looked before the first run was stored: it runs the day again, and
    # loses on the constraint (one completed daily run per provider and day).
    again = finance.reconcile("sandbox", DAY, scheduled=True)
    assert again == first
    assert ReconciliationRun.objects.filter(scheduled=True).count() == 1
    assert finance.run_daily(["sandbox"], now=now) == {}


def test_the_daily_job_retries_a_failed_day_later(stripe_settings: Any, db: None) -> None:
    stripe_settings.STRIPE_API_BASE = "http://127.0.0.1:9"
    now = timezone.now()
    day = finance.due_day("stripe", now)

    assert finance.run_daily(["stripe"], now=now) == {"stripe": f"{day} failed"}
    assert finance.run_daily(["stripe"], now=now + timedelta(minutes=10)) == {}
    assert finance.run_daily(["stripe"], now=now + timedelta(minutes=31)) == {
        "stripe": f"{day} failed"
    }
    assert ReconciliationRun.objects.filter(status=RunStatus.FAILED).count() == 2


def test_the_janitor_runs_the_daily_job_for_enabled_providers(
    settings: Any, db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from simtopup.ops import janitor

    settings.PAYMENT_PROVIDER = "sandbox"
    settings.PAYMENT_ROUTES = {}
    monkeypatch.setattr(janitor, "_reconciliation_due_at", 0.0)
    result = janitor.run_janitor()
    due = finance.due_day("sandbox", timezone.now())
    assert result["reconciliations"] == {"sandbox": f"{due} completed"}
    assert janitor.run_janitor()["reconciliations"] is None  # looked at every few minutes


def test_the_cli_records_the_os_user(sandbox_day: dict[str, Any]) -> None:
    out = io.StringIO()
    call_command(
        "finance", "reconcile", "--provider", "sandbox", "--day", DAY.isoformat(), stdout=out
    )
    assert "amount_mismatch 1" in out.getvalue()
    [entry] = AuditEntry.objects.filter(action=Action.RECONCILIATION)
    assert entry.actor.startswith("cli:")
    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        call_command("finance", "reconcile", "--provider", "sandbox", "--day", "25/11/2026")
    # Without --day: the provider's latest day whose statement is ready.
    call_command("finance", "reconcile", "--provider", "sandbox", stdout=io.StringIO())
    latest = ReconciliationRun.objects.order_by("-pk")[0]
    assert latest.day == finance.due_day("sandbox", timezone.now())


# --- the console ---------------------------------------------------------------------------------

INDEX = "/admin/finance/reconciliation/"


def test_the_console_pages_in_three_languages(sandbox_day: dict[str, Any]) -> None:
    clerk = console_client(make_staff("fin-recon", "finance"))
    assert reverse("admin:finance-reconciliation") == INDEX

    future = (timezone.now() + timedelta(days=3)).date().isoformat()
    refused = clerk.post(INDEX, {"provider": "sandbox", "day": future})
    assert refused.status_code == 200
    assert "The day has not come yet." in refused.content.decode()
    assert not ReconciliationRun.objects.exists()
    response = clerk.post(INDEX, {"provider": "sandbox", "day": DAY.isoformat()})
    run = ReconciliationRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:finance-reconciliation-run", args=[run.pk])
    [entry] = AuditEntry.objects.filter(action=Action.RECONCILIATION)
    assert entry.actor.startswith("staff:")
    assert entry.actor.endswith(":fin-recon")

    for language, index_words, run_words in (
        ("en", "Payment reconciliation", "Amount differs"),
        ("zh-hans", "支付对账", "金额不符"),
        ("zh-hant", "支付對帳", "金額不符"),
    ):
        headers = {"accept-language": language}
        page = clerk.get(INDEX, headers=headers).content.decode()
        assert index_words in page, language
        assert "2026-11-25" in page
        detail = clerk.get(response["Location"], headers=headers).content.decode()
        assert run_words in detail, language
        # Mismatches come first, matched lines last; each links to our payment.
        assert detail.index("pay_sbx_amount") < detail.index("pay_sbx_ok")
        assert reverse("admin:payments_payment_change", args=[sandbox_day["wrong"].pk]) in detail


def test_the_csv_lists_every_line(sandbox_day: dict[str, Any]) -> None:
    clerk = console_client(make_staff("fin-csv", "finance"))
    run = finance.reconcile("sandbox", DAY)
    response = clerk.get(reverse("admin:finance-reconciliation-csv", args=[run.pk]))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "reconciliation-sandbox-2026-11-25-1.csv" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["Outcome", "Type", "Our reference"]
    assert rows[1][:7] == [
        "Amount differs",
        "Payment",
        "pay_sbx_amount",
        "sbx_pay_sbx_amount",
        "CNY",
        "30.00",
        "31.00",
    ]
    assert [r[0] for r in rows[1:]].count("Matched") == 3
    assert len(rows) == 1 + 7


def test_support_may_not_see_or_run_the_reconciliation(sandbox_day: dict[str, Any]) -> None:
    run = finance.reconcile("sandbox", DAY)
    support = console_client(make_staff("sup-recon", "support"))
    assert "finance-reconciliation-link" not in support.get("/admin/").content.decode()
    finance_home = console_client(make_staff("fin-home-recon", "finance")).get("/admin/")
    assert "finance-reconciliation-link" in finance_home.content.decode()
    for url in (
        INDEX,
        reverse("admin:finance-reconciliation-run", args=[run.pk]),
        reverse("admin:finance-reconciliation-csv", args=[run.pk]),
    ):
        assert support.get(url).status_code == 403, url
    assert support.post(INDEX, {"provider": "sandbox", "day": DAY.isoformat()}).status_code == 403
    assert ReconciliationRun.objects.count() == 1
    # Without the second factor, not even finance gets in.
    anonymous = Client().get(INDEX)
    assert anonymous.status_code == 302
    assert "/login/" in anonymous["Location"]


def test_a_failed_run_says_why(stripe_settings: Any, db: None) -> None:
    stripe_settings.STRIPE_API_BASE = "http://127.0.0.1:9"
    clerk = console_client(make_staff("fin-fail", "finance"))
    response = clerk.post(INDEX, {"provider": "stripe", "day": DAY.isoformat()})
    page = clerk.get(response["Location"]).content.decode()
    assert "provider_unavailable" in page
    assert "could not be had" in page
    assert "Failed" in clerk.get(INDEX).content.decode()
