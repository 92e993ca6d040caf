"""What the staff refunds of fulfilled orders left open (payments/staff_refunds.py):

1. the dashboard's revenue is net of the refunds decided in its window, and for a day of
   bundle sales it equals what the ledger's revenue account took in minus what left it;
2. the customer sees each refund of a fulfilled order — website order page and history, app
   API order body, receipt (PDF and the verification page) — in zh-Hans, zh-Hant and en;
3. a provider refund that failed after its retries is retried through the provider or sent
   to the card's credit instead from the desk's refund page: exactly once, audited with a
   reason, the refundable total unchanged and check-ledger clean.
"""

from __future__ import annotations

import io
import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.db.models import Sum
from django.test import TestCase
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.html import escape
from pypdf import PdfReader

from simtopup.audit.models import Action, AuditEntry
from simtopup.core.errors import DomainError
from simtopup.ledger import reports as ledger_reports
from simtopup.ledger.actions import balance, system_account
from simtopup.ledger.models import Transfer
from simtopup.orders import reports as orders_reports
from simtopup.orders.models import Order, OrderStatus
from simtopup.orders.receipts import receipt_facts, render_receipt_pdf
from simtopup.payments import reports as payments_reports
from simtopup.payments.actions import gateway_clearing_expected
from simtopup.payments.models import (
    Payment,
    PaymentStatus,
    Refund,
    RefundDestination,
    RefundStatus,
)
from simtopup.payments.providers.base import ProviderError, RefundResult
from simtopup.payments.providers.sandbox import SandboxProvider
from simtopup.payments.staff_refunds import (
    failed_refund_to_credit,
    refundable,
    retry_failed_refund,
)
from tests.payments_support import (
    app,
    assert_ledger_clean,
    credit_of,
    make_customer,
    pay_on_page,
    post_json,
    run_tasks,
    sandbox_direct,
)
from tests.staff_support import console_client, make_staff
from tests.support import Actors
from tests.test_concurrency import run_concurrently
from tests.test_desk_refunds import ACTOR, paid_by_card, paid_by_credit, refund
from tests.web_support import LANGUAGES, browser

pytestmark = pytest.mark.usefixtures("sandbox_direct", "_memory_senders")
__all__ = ["connection", "sandbox_direct"]

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def _memory_senders(settings: Any) -> None:
    from simtopup.notifications.backends import memory

    settings.SMS_SENDER = "memory"
    settings.EMAIL_SENDER = "memory"
    settings.DISPLAY_TIME_ZONE = "Asia/Shanghai"
    memory.outbox.clear()


class FailingRefunds(SandboxProvider):
    """The sandbox, except that it refuses refunds while ``failing``."""

    failing = True

    def refund(self, *args: Any, **kwargs: Any) -> RefundResult:
        if type(self).failing:
            raise ProviderError("refund_refused", "the bank refused it", retryable=True)
        return super().refund(*args, **kwargs)


@pytest.fixture
def failing_provider(settings: Any, monkeypatch: pytest.MonkeyPatch) -> type[FailingRefunds]:
    settings.PAYMENT_REFUND_BACKOFF = []  # the first refusal is the last
    monkeypatch.setitem(
        __import__("simtopup.payments.registry").payments.registry.PROVIDER_CLASSES,
        "sandbox",
        "tests.test_refund_followups.FailingRefunds",
    )
    FailingRefunds.failing = True
    return FailingRefunds


def failed_refund(order: Order, amount: int) -> Refund:
    """A staff refund through the provider that the provider refused for good."""
    made = refund(order, amount, "provider")
    assert "failed" in run_tasks()
    made.refresh_from_db()
    assert made.status == RefundStatus.FAILED
    return made


def audit_rows() -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=Action.REFUND).order_by("pk"))


def before_after(row: AuditEntry) -> tuple[dict[str, Any], dict[str, Any]]:
    assert row.before is not None
    assert row.after is not None
    return row.before, row.after


# --- 3. a failed provider refund: the domain --------------------------------------------------


def test_a_failed_refund_retried_through_the_provider_is_made_once(
    actors: Actors, failing_provider: type[FailingRefunds]
) -> None:
    order = paid_by_card(actors, "+8613600000001")
    revenue_before = balance(system_account("revenue", "CNY"))
    failed = failed_refund(order, 200)
    # Failed for good, its money still counts as refunded (it sits in gateway clearing).
    assert refundable(order).remaining == 300
    assert_ledger_clean()
    transfers = Transfer.objects.count()

    failing_provider.failing = False
    with TestCase.captureOnCommitCallbacks(execute=True):
        again = retry_failed_refund(failed, "bank fixed their side", ACTOR, "10.0.0.9")
    assert (again.status, again.attempts, again.destination) == ("pending", 0, "provider")
    assert Transfer.objects.count() == transfers  # the ledger does not move on a retry
    row = audit_rows()[-1]
    assert row.reason == "bank fixed their side"
    before, after = before_after(row)
    assert before["status"] == "failed"
    assert before["last_error"].startswith("refund_refused")
    assert after == {"refund": failed.reference, "status": "pending", "retry": True}
    # Exactly once: a second retry of the same failure is refused, and changes nothing.
    with pytest.raises(DomainError) as caught:
        retry_failed_refund(failed, "again", ACTOR)
    assert caught.value.code == "refund_not_failed"
    assert len(audit_rows()) == 2

    assert "refunded" in run_tasks()
    failed.refresh_from_db()
    assert failed.status == RefundStatus.SUCCEEDED
    assert refundable(order).remaining == 300
    assert balance(system_account("revenue", "CNY")) == revenue_before - 200
    assert Payment.objects.get(order=order).status == PaymentStatus.SUCCEEDED
    assert_ledger_clean()


def test_a_failed_refund_sent_to_the_card_s_credit_moves_the_money_once(
    actors: Actors, failing_provider: type[FailingRefunds]
) -> None:
    order = paid_by_card(actors, "+8613600000002")
    first = refund(order, 100, "credit")
    failed = failed_refund(order, 400)  # the rest: the payment is refunded in full
    assert Payment.objects.get(order=order).status == PaymentStatus.REFUND_PENDING
    revenue = system_account("revenue", "CNY")
    revenue_before, credit_before = balance(revenue), credit_of(actors.device)
    expected_before = gateway_clearing_expected()["system:gateway_clearing:CNY"]

    with TestCase.captureOnCommitCallbacks(execute=True):
        moved = failed_refund_to_credit(failed, "customer asked for credit", ACTOR, "10.0.0.9")
    assert (moved.destination, moved.status) == ("credit", "succeeded")
    assert moved.settled_at is not None
    assert moved.last_error  # what happened at the provider stays on the row
    # gateway clearing → card credit; revenue already paid this refund when it was decided.
    assert credit_of(actors.device) == credit_before + 400
    assert balance(revenue) == revenue_before
    move = Transfer.objects.get(
        idempotency_key=f"order:{order.pk}:refund:{failed.reference}:credit"
    )
    assert (move.source.code, move.destination_id, move.amount) == (
        "system:gateway_clearing:CNY",
        actors.device.credit_account_id,
        400,
    )
    assert gateway_clearing_expected()["system:gateway_clearing:CNY"] == expected_before - 400
    assert Payment.objects.get(order=order).status == PaymentStatus.REFUNDED
    assert Order.objects.get(pk=order.pk).status == OrderStatus.FULFILLED
    state = refundable(order)
    assert (state.refunded, state.remaining) == (500, 0)
    row = audit_rows()[-1]
    assert row.reason == "customer asked for credit"
    before, after = before_after(row)
    assert (before["destination"], after["destination"]) == ("provider", "credit")
    assert after["payment_status"] == "refunded"
    assert_ledger_clean()

    # Exactly once, whichever way is tried next.
    for again in (failed_refund_to_credit, retry_failed_refund):
        with pytest.raises(DomainError) as caught:
            again(failed, "twice", ACTOR)
        assert caught.value.code == "refund_not_failed"
    with pytest.raises(DomainError):
        failed_refund_to_credit(first, "a credit refund never failed", ACTOR)
    assert credit_of(actors.device) == credit_before + 400
    assert len(audit_rows()) == 3
    assert_ledger_clean()


def test_a_failed_order_s_automatic_refund_can_go_to_the_card_s_credit(
    actors: Actors, settings: Any, failing_provider: type[FailingRefunds]
) -> None:
    settings.NETWORK_ADAPTER = "tests.test_desk_refunds.RefusingUpstream"
    token, _c = make_customer("+8613600000003")
    response = post_json(
        app(token),
        "/api/v1/orders",
        {"device": actors.device.iccid, "plan": "day-1g", "payment_method": "card"},
    )
    pay_on_page(response.json()["payment"]["checkout_url"])
    run_tasks()
    order = Order.objects.get(pk=response.json()["id"])
    automatic = Refund.objects.get(order=order)
    assert automatic.status == RefundStatus.FAILED
    assert order.status == OrderStatus.FAILED  # its money never reached the payer
    with TestCase.captureOnCommitCallbacks(execute=True):
        failed_refund_to_credit(automatic, "provider closed the card", ACTOR)
    assert Order.objects.get(pk=order.pk).status == OrderStatus.REFUNDED
    assert Payment.objects.get(order=order).status == PaymentStatus.REFUNDED
    assert credit_of(actors.device) == 500
    assert_ledger_clean()


def test_no_reason_or_not_failed_is_refused_and_changes_nothing(
    actors: Actors, failing_provider: type[FailingRefunds]
) -> None:
    order = paid_by_card(actors, "+8613600000004")
    failed = failed_refund(order, 200)
    before = (Transfer.objects.count(), len(audit_rows()))
    for action in (retry_failed_refund, failed_refund_to_credit):
        with pytest.raises(DomainError) as caught:
            action(failed, "  ", ACTOR)
        assert caught.value.code == "reason_required"
    failed.refresh_from_db()
    assert failed.status == RefundStatus.FAILED
    assert (Transfer.objects.count(), len(audit_rows())) == before


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_two_staff_resolving_one_failed_refund_at_once_resolve_it_once(
    actors: Actors, failing_provider: type[FailingRefunds]
) -> None:
    order = paid_by_card(actors, "+8613600000005")
    failed = failed_refund(order, 300)
    credit_before = credit_of(actors.device)

    def job(action: Any) -> Any:
        def run() -> str:
            try:
                action(failed, "both at once", ACTOR)
            except DomainError as exc:
                return exc.code
            return "done"

        return run

    outcomes = run_concurrently(
        [job(failed_refund_to_credit), job(failed_refund_to_credit), job(retry_failed_refund)],
        threads=3,
    )
    assert sorted(outcomes) == ["done", "refund_not_failed", "refund_not_failed"]
    failed.refresh_from_db()
    moved = credit_of(actors.device) - credit_before
    assert moved in (0, 300)
    assert (failed.destination == "credit") == (moved == 300)
    assert refundable(order).remaining == 200
    assert_ledger_clean()


# --- 3. a failed provider refund: the desk's page ---------------------------------------------

DESK_WORDS = {
    "en": ("Retry through the provider", "Send to the card's credit instead"),
    "zh-hans": ("原路重试退款", "改退到卡内余额"),
    "zh-hant": ("原路重試退款", "改退到卡內餘額"),
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_desk_page_offers_both_ways_out_of_a_failed_refund(
    actors: Actors, failing_provider: type[FailingRefunds], language: str
) -> None:
    order = paid_by_card(actors, "+8613600000010")
    failed = failed_refund(order, 200)
    agent = console_client(make_staff("sam", "support"), HTTP_ACCEPT_LANGUAGE=language)
    page = agent.get(
        reverse("admin:desk-refund", args=[order.pk]), headers={"accept-language": language}
    )
    assert page.status_code == 200
    body = page.content.decode()
    for word in DESK_WORDS[language]:
        assert word in body, (language, word)
    assert reverse("admin:desk-refund-failed", args=[failed.pk]) in body
    assert "refund_refused" in body  # the provider's last answer


def test_the_desk_sends_a_failed_refund_to_the_credit_with_a_message(
    actors: Actors, failing_provider: type[FailingRefunds]
) -> None:
    order = paid_by_card(actors, "+8613600000011")
    failed = failed_refund(order, 200)
    agent = console_client(make_staff("sam", "support"))
    url = reverse("admin:desk-refund-failed", args=[failed.pk])
    page = reverse("admin:desk-refund", args=[order.pk])
    assert agent.get(url).status_code == 405
    missing = agent.post(url, {"action": "credit", "reason": ""})
    assert missing.status_code == 302
    assert "Say why the order is refunded." in agent.get(page).content.decode()
    unknown = agent.post(url, {"action": "refund-twice", "reason": "x"})
    assert unknown["Location"] == page
    with TestCase.captureOnCommitCallbacks(execute=True):
        done = agent.post(url, {"action": "credit", "reason": "the card is closed"})
    assert done.status_code == 302
    assert done["Location"] == page
    failed.refresh_from_db()
    assert (failed.destination, failed.status) == ("credit", "succeeded")
    shown = agent.get(page).content.decode()
    assert "¥2.00 went back to the card&#x27;s credit instead." in shown
    assert reverse("admin:desk-refund-failed", args=[failed.pk]) not in shown  # resolved
    assert audit_rows()[-1].reason == "the card is closed"
    assert audit_rows()[-1].actor.startswith("staff:")
    # Posted again (a double click): nothing more happens.
    agent.post(url, {"action": "credit", "reason": "the card is closed"})
    assert "Only a refund through the provider that failed" in agent.get(page).content.decode()
    assert len(audit_rows()) == 2
    assert_ledger_clean()


def test_the_desk_retries_a_failed_refund_through_the_provider(
    actors: Actors, failing_provider: type[FailingRefunds]
) -> None:
    order = paid_by_card(actors, "+8613600000012")
    failed = failed_refund(order, 200)
    failing_provider.failing = False
    agent = console_client(make_staff("fin", "finance"))
    with TestCase.captureOnCommitCallbacks(execute=True):
        done = agent.post(
            reverse("admin:desk-refund-failed", args=[failed.pk]),
            {"action": "retry", "reason": "try again"},
        )
    assert done.status_code == 302
    assert (
        "was asked of the payment&#x27;s provider again"
        in agent.get(done["Location"]).content.decode()
    )
    assert "refunded" in run_tasks()
    failed.refresh_from_db()
    assert failed.status == RefundStatus.SUCCEEDED
    assert_ledger_clean()


def test_staff_without_the_permission_cannot_resolve_a_failed_refund(
    actors: Actors, failing_provider: type[FailingRefunds]
) -> None:
    order = paid_by_card(actors, "+8613600000013")
    failed = failed_refund(order, 200)
    nobody = User.objects.create_user("noone", "noone@example.com", "pw-x-Rz4k", is_staff=True)
    browser_ = console_client(nobody)
    url = reverse("admin:desk-refund-failed", args=[failed.pk])
    for action in ("retry", "credit"):
        assert browser_.post(url, {"action": action, "reason": "x"}).status_code == 403
    assert browser_.get(url).status_code == 403
    failed.refresh_from_db()
    assert failed.status == RefundStatus.FAILED
    assert len(audit_rows()) == 1


# --- 1. the dashboard's revenue and the ledger's ---------------------------------------------


def ledger_revenue_of(since: datetime, until: datetime) -> int:
    """Straight from the transfers: into the revenue account minus out of it."""
    account = system_account("revenue", "CNY")
    window = Transfer.objects.filter(created_at__gte=since, created_at__lt=until)
    into = window.filter(destination=account).aggregate(s=Sum("amount"))["s"] or 0
    out = window.filter(source=account).aggregate(s=Sum("amount"))["s"] or 0
    return int(into - out)


def test_the_dashboard_revenue_of_a_day_is_the_ledger_s_including_a_partial_refund(
    actors: Actors,
) -> None:
    card = paid_by_card(actors, "+8613600000020")  # ¥5.00, a day pass
    by_credit = paid_by_credit(actors, "+8613600000021")  # ¥5.00 from the card's credit
    refund(card, 150, "provider", reason="half a day down")  # a partial staff refund
    refund(by_credit, 100, "credit", reason="goodwill")
    run_tasks()
    today = orders_reports.window("today")
    ledger = ledger_revenue_of(today.start, today.end)
    assert ledger == 1000 - 150 - 100

    for field in ("channel", "payment_method"):
        rows = payments_reports.revenue_by(field, today.start, today.end)
        assert sum(r.revenue for r in rows) == ledger, field
        assert sum(r.sold for r in rows) == 1000
        assert sum(r.refunded for r in rows) == 250
    by_method = {
        r.key: r for r in payments_reports.revenue_by("payment_method", today.start, today.end)
    }
    assert (by_method["card"].sold, by_method["card"].refunded, by_method["card"].revenue) == (
        500,
        150,
        350,
    )
    assert by_method["balance"].revenue == 400
    (moves,) = ledger_reports.revenue_movements(today.start, today.end)
    assert (moves.currency, moves.into, moves.out, moves.net) == ("CNY", 1000, 250, ledger)

    page = console_client(make_staff("fin-dash", "finance")).get("/admin/dashboard/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "7.50 CNY" in body  # the ledger's net for the day, and the revenue's sum
    assert "3.50 CNY" in body  # card: 5.00 sold − 1.50 refunded
    assert "1.50 CNY" in body
    assert "Revenue in the ledger" in body


def test_a_refund_lowers_the_revenue_of_the_day_it_is_decided(actors: Actors) -> None:
    order = paid_by_card(actors, "+8613600000022")
    yesterday = timezone.now() - timedelta(days=1)
    Order.objects.filter(pk=order.pk).update(created_at=yesterday)
    refund(order, 200, "credit")
    today = orders_reports.window("today")
    (row,) = payments_reports.revenue_by("channel", today.start, today.end)
    assert (row.count, row.sold, row.refunded, row.revenue) == (0, 0, 200, -200)


@pytest.mark.parametrize(
    ("language", "words"),
    [
        ("zh-hans", ("账本中的收入", "销售额", "净额")),
        ("zh-hant", ("帳本中的收入", "銷售額", "淨額")),
    ],
)
def test_the_dashboard_s_new_lines_speak_chinese(
    actors: Actors, language: str, words: tuple[str, ...]
) -> None:
    client = console_client(make_staff(f"fin-{language}", "finance"))
    body = client.get("/admin/dashboard/", headers={"accept-language": language}).content.decode()
    for word in words:
        assert word in body


# --- 2. what the customer sees -----------------------------------------------------------------

CUSTOMER_WORDS = {
    "en": (
        "Refunded ¥1.00 on {day} (to your card's credit)",
        "A refund of ¥2.00 to your original payment method is on its way (decided on {day})",
        "Refunded ¥2.00 on {day} (to your original payment method)",
    ),
    "zh-hans": (
        "已于 {day} 退款 ¥1.00（退到卡内余额）",
        "退款 ¥2.00 正在原路退回您的支付方式（{day} 发起）",
        "已于 {day} 退款 ¥2.00（原路退回您的支付方式）",
    ),
    "zh-hant": (
        "已於 {day} 退款 ¥1.00（退到卡內餘額）",
        "退款 ¥2.00 正在原路退回您的付款方式（{day} 發起）",
        "已於 {day} 退款 ¥2.00（原路退回您的付款方式）",
    ),
}


def refunded_order(actors: Actors) -> tuple[Order, Any, Refund]:
    """A card order of a logged-in customer with a credit refund (made) and a provider
    refund (still on its way)."""
    token, customer = make_customer("+8613600000030")
    customer.time_zone = "Asia/Shanghai"
    customer.save(update_fields=["time_zone"])
    response = post_json(
        app(token),
        "/api/v1/orders",
        {"device": actors.device.iccid, "plan": "day-1g", "payment_method": "card"},
    )
    pay_on_page(response.json()["payment"]["checkout_url"])
    run_tasks()
    order = Order.objects.get(pk=response.json()["id"])
    refund(order, 100, "credit")
    pending = refund(order, 200, "provider")  # its task is not run yet: on its way
    return order, (token, customer), pending


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_customer_sees_each_refund_on_the_website_and_the_receipt(
    actors: Actors, language: str
) -> None:
    order, (_token, customer), pending = refunded_order(actors)
    day = f"{timezone.now().astimezone(SHANGHAI):%Y-%m-%d}"
    made, on_its_way, made_later = (w.format(day=day) for w in CUSTOMER_WORDS[language])
    client = browser(customer, language=language)
    for path in (reverse("web:order-status", args=[order.pk]), reverse("web:history")):
        body = client.get(path).content.decode()
        assert escape(made) in body, (path, language)
        assert escape(on_its_way) in body, (path, language)
    with translation.override(language):
        facts = receipt_facts(order, SHANGHAI)
    assert facts.refunds == (made, on_its_way)
    verified = client.get(reverse("verify-receipt", args=[order.receipt_no])).content.decode()
    assert escape(made) in verified

    run_tasks()  # the provider makes the refund
    body = client.get(reverse("web:order-status", args=[order.pk])).content.decode()
    assert escape(made_later) in body
    assert escape(on_its_way) not in body
    pending.refresh_from_db()
    assert pending.status == RefundStatus.SUCCEEDED
    if language == "en":
        pdf = render_receipt_pdf(order, language, "Asia/Shanghai")
        raw = PdfReader(io.BytesIO(pdf)).pages[0].extract_text().replace("\x00", "")
        text = " ".join(raw.split())
        assert "Refunded" in text
        assert "(to your original payment method)" in text
        assert "(to your card's credit)" in text


def test_the_app_api_order_lists_its_refunds(actors: Actors) -> None:
    order, (token, _customer), _pending = refunded_order(actors)
    body = app(token).get(f"/api/v1/orders/{order.pk}").json()
    assert [(r["amount"], r["destination"], r["status"]) for r in body["refunds"]] == [
        ({"amount": "1.00", "currency": "CNY"}, "credit", "refunded"),
        ({"amount": "2.00", "currency": "CNY"}, "provider", "pending"),
    ]
    assert body["refunds"][1]["at"].endswith("Z")
    # The existing fields are unchanged.
    assert body["status"] == "fulfilled"
    assert body["amount"] == {"amount": "5.00", "currency": "CNY"}
    assert body["payment"]["status"] == "succeeded"
    listed = app(token).get("/api/v1/orders").json()["items"]
    assert listed[0]["refunds"] == body["refunds"]
    run_tasks()
    body = app(token).get(f"/api/v1/orders/{order.pk}").json()
    assert body["refunds"][1]["status"] == "refunded"
    schema = app(token).get("/api/v1/openapi.json")
    if schema.status_code == 200:
        assert "RefundOut" in schema.content.decode()


def test_a_failed_order_lists_no_refund_lines(actors: Actors, settings: Any) -> None:
    settings.NETWORK_ADAPTER = "tests.test_desk_refunds.RefusingUpstream"
    token, _c = make_customer("+8613600000031")
    response = post_json(
        app(token),
        "/api/v1/orders",
        {"device": actors.device.iccid, "plan": "day-1g", "payment_method": "card"},
    )
    pay_on_page(response.json()["payment"]["checkout_url"])
    run_tasks()
    body = app(token).get(f"/api/v1/orders/{response.json()['id']}").json()
    assert body["status"] == "refunded"
    assert body["refunds"] == []  # told by its status
    assert Refund.objects.filter(destination=RefundDestination.PROVIDER).count() == 1


def test_the_dashboard_counts_failed_refunds_and_links_to_them(
    actors: Actors, failing_provider: type[FailingRefunds]
) -> None:
    order = paid_by_card(actors, "+8613600000023")
    failed = failed_refund(order, 200)
    assert payments_reports.refunds_open().failed == 1
    client = console_client(make_staff("fin-failed", "finance"))
    body = client.get("/admin/dashboard/").content.decode()
    assert "Refunds failed at the provider" in body
    link = re.search(r'id="failed-refunds-link" href="([^"]+)"', body)
    assert link
    listed = client.get(link.group(1).replace("&amp;", "&"))
    assert listed.status_code == 200
    assert list(listed.context["cl"].queryset) == [failed]
    with TestCase.captureOnCommitCallbacks(execute=True):
        failed_refund_to_credit(failed, "card closed", ACTOR)
    assert payments_reports.refunds_open().failed == 0


def test_order_lists_read_their_refunds_in_one_query_whatever_their_length(
    actors: Actors,
) -> None:
    """The app's order list and the website's history cost the same statements for one
    refunded order as for three (refunds come prefetched, not one query per row)."""
    from tests.test_poll_lists import statements

    token, customer = make_customer("+8613600000031")
    api, web = app(token), browser(customer, language="en")
    counts = []
    for n in range(3):
        response = post_json(
            api,
            "/api/v1/orders",
            {"device": actors.device.iccid, "plan": "day-1g", "payment_method": "card"},
        )
        pay_on_page(response.json()["payment"]["checkout_url"])
        run_tasks()
        refund(Order.objects.get(pk=response.json()["id"]), 100, "credit")
        if n in (0, 2):
            listed, api_count = statements(api, "/api/v1/orders")
            assert [len(i["refunds"]) for i in listed.json()["items"]] == [1] * (n + 1)
            _page, web_count = statements(web, reverse("web:history"))
            counts.append((api_count, web_count))
    assert counts[0] == counts[1]


def test_the_history_csv_lists_each_refund(actors: Actors) -> None:
    import csv
    import io as io_

    order, (_token, customer), _pending = refunded_order(actors)
    day = f"{timezone.now().astimezone(SHANGHAI):%Y-%m-%d}"
    made, on_its_way, _later = (w.format(day=day) for w in CUSTOMER_WORDS["en"])
    raw = browser(customer, language="en").get(reverse("web:history-csv")).content
    rows = list(csv.reader(io_.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0][-1] == "Refunds"
    (row,) = [r for r in rows[1:] if r[0] == str(order.pk)]
    assert row[-1] == f"{made}; {on_its_way}"


def test_a_payment_with_a_failed_refund_is_not_refunded_until_that_one_is_made(
    actors: Actors, failing_provider: type[FailingRefunds]
) -> None:
    """The rest refunded to the credit after a provider refund failed: the refunds add up to
    the payment, but one of them is not made, so the payment waits (refund_pending) until
    that one goes to the credit (settle_refunded_payment, one rule for every path)."""
    order = paid_by_card(actors, "+8613600000003")
    failed = failed_refund(order, 400)
    refund(order, 100, "credit")
    assert Payment.objects.get(order=order).status == PaymentStatus.REFUND_PENDING
    with TestCase.captureOnCommitCallbacks(execute=True):
        failed_refund_to_credit(failed, "customer asked for credit", ACTOR)
    assert Payment.objects.get(order=order).status == PaymentStatus.REFUNDED
    assert_ledger_clean()
