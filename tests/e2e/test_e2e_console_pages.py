"""The operator console's remaining pages in a real browser (at desktop size, in zh-Hans and
English): a finance clerk records a reseller's bank deposit, opens the reseller's monthly
statement and downloads it as PDF and CSV, and reads the ledger by day; a support agent asks
goodwill credit above the approval limit, which waits until a finance clerk approves it from
the console home's link row; the agent suspends and reinstates the card, takes it out of its
customer's account and opens the customer's ticket; a reseller's owner downloads a past
month's statement from the portal. No page may draw a Content-Security-Policy complaint; the
screenshots (console-*.png) were looked at."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from simtopup.accounts.models import Customer
from simtopup.core.money import format_money
from simtopup.devices.models import Device, DeviceStatus, GoodwillCredit, GoodwillStatus
from simtopup.resellers.models import Reseller, ResellerDeposit
from simtopup.support.actions import create_ticket
from tests import agent_support
from tests.e2e.conftest import shot
from tests.payments_support import bind, give_credit
from tests.staff_support import PASSWORD, add_authenticator, code_of, make_staff

LANGUAGES = ["zh-hans", "en"]


def _csp_watch(page: Any) -> list[str]:
    """The Content-Security-Policy complaints ``page`` logs from now on."""
    complaints: list[str] = []
    page.on(
        "console",
        lambda m: complaints.append(m.text) if "Content Security Policy" in m.text else None,
    )
    return complaints


def _log_in(page: Any, site: str, user: Any) -> None:
    """The console's login: password and the authenticator app's code."""
    totp = add_authenticator(user)
    page.goto(f"{site}/admin/login/")
    page.fill("input[name=username]", user.get_username())
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=otp_token]", code_of(totp))
    page.locator("input[type=submit], button[type=submit]").first.click()
    page.wait_for_url(f"{site}/admin/")


def _download(page: Any, selector: str) -> bytes:
    with page.expect_download() as waiting:
        page.click(selector)
    return Path(waiting.value.path()).read_bytes()


def _style(page: Any, selector: str, name: str) -> str:
    """The computed CSS property ``name`` (camelCase) of the first element matching."""
    return str(page.locator(selector).first.evaluate(f"e => getComputedStyle(e).{name}"))


def _csv_header(language: str) -> list[str]:
    with translation.override(language):
        return [_(w) for w in ("Line", "Date", "Reference", "Plan", "Count", "Amount", "Currency")]


def _submit(page: Any, form: str = "#content-main form") -> None:
    page.locator(f"{form} input[type=submit], {form} button[type=submit]").first.click()


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_finance_clerk_records_a_deposit_and_reads_the_statements(
    site: str, desktop: Any, language: str
) -> None:
    alice = Reseller.objects.get(name="Alice Mobile")
    clerk = make_staff(f"clerk-{language}", "finance")
    page = desktop(language)
    complaints = _csp_watch(page)
    _log_in(page, site, clerk)
    tools = page.locator("#console-tools")
    with translation.override(language):
        deposits_title, statements_title, ledger_title = (
            _("Reseller deposits"),
            _("Reseller statements"),
            _("Ledger by day"),
        )
        revenue = _("Revenue")
        recorded = _("Deposit %(reference)s of %(amount)s recorded for %(reseller)s.") % {
            "reference": f"BANK-{language}-0001",
            "amount": format_money(123450, "CNY"),
            "reseller": alice.code,
        }

    # A deposit, with the bank's reference.
    tools.get_by_role("link", name=deposits_title).click()
    page.wait_for_url("**/admin/finance/deposits/")
    shot(page, f"console-deposits-{language}")
    # Django 6.1's blank choice speaks the clerk's language too.
    assert (language == "en") == ("Select an option" in page.inner_text("#id_reseller"))
    page.select_option("#id_reseller", str(alice.pk))
    page.fill("#id_amount", "1234.50")
    page.fill("#id_bank_reference", f"BANK-{language}-0001")
    page.fill("#id_received_on", timezone.localdate().isoformat())
    page.fill("#id_reason", "对公转账" if language == "zh-hans" else "wire transfer")
    _submit(page, "#record-deposit form")
    page.wait_for_selector(".messagelist")
    assert recorded in page.locator(".messagelist").inner_text()
    assert f"BANK-{language}-0001" in page.locator("#deposits tbody").inner_text()
    assert ResellerDeposit.objects.filter(bank_reference=f"BANK-{language}-0001").count() == 1
    shot(page, f"console-deposits-recorded-{language}")

    # The same bank reference twice is refused on the form.
    page.select_option("#id_reseller", str(alice.pk))
    page.fill("#id_amount", "1234.50")
    page.fill("#id_bank_reference", f"BANK-{language}-0001")
    page.fill("#id_received_on", timezone.localdate().isoformat())
    page.fill("#id_reason", "again")
    _submit(page, "#record-deposit form")
    page.wait_for_selector("#record-deposit .errorlist")
    assert ResellerDeposit.objects.filter(bank_reference=f"BANK-{language}-0001").count() == 1
    shot(page, f"console-deposits-duplicate-{language}")

    # This month's statement of the reseller: the deposit on it, as PDF and CSV too.
    page.goto(f"{site}/admin/")
    tools.get_by_role("link", name=statements_title).click()
    page.wait_for_url("**/admin/finance/statements/")
    shot(page, f"console-statements-{language}")
    page.select_option("#id_reseller", str(alice.pk))
    page.fill("#id_month", f"{timezone.localdate():%Y-%m}")
    _submit(page, "#pick-statement form")
    page.wait_for_url("**/admin/finance/statements/*/*/*/html/")
    assert f"BANK-{language}-0001" in page.locator("#deposits").inner_text()
    assert "1,234.50" in page.locator("#deposits").inner_text()
    shot(page, f"console-statement-{language}")
    assert _download(page, "#statement-pdf").startswith(b"%PDF")
    text = _download(page, "#statement-csv").decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == _csv_header(language)
    assert any(f"BANK-{language}-0001" in row for row in rows)

    # The ledger by day: thirty days, today's first; ninety on asking.
    page.goto(f"{site}/admin/")
    tools.get_by_role("link", name=ledger_title).click()
    page.wait_for_url("**/admin/finance/ledger/")
    assert revenue in page.locator("#ledger-days thead").text_content()
    assert page.locator("#ledger-days tbody tr").count() == 30
    assert _style(page, "#ledger-days tbody td.num", "textAlign") == "right"  # money lines up
    shot(page, f"console-ledger-days-{language}")
    page.locator("#content-main a[href*='days=90']").click()
    page.wait_for_url("**/admin/finance/ledger/?days=90*")
    assert page.locator("#ledger-days tbody tr").count() == 90
    assert complaints == []


def _customer_with_a_card(phone: str) -> Device:
    customer = Customer.objects.create(phone=phone, language="zh-hans")
    device = Device.objects.order_by("pk")[0]
    bind(device, customer)
    give_credit(device, 2000, f"e2e:console:{phone}")
    create_ticket(
        reply_channel="phone",
        reply_to=phone,
        message="余额不对，请帮忙看看。",
        device=device.iccid or "",
        customer=customer,
    )
    return device


@pytest.mark.parametrize("language", LANGUAGES)
def test_goodwill_above_the_limit_waits_for_finance_and_the_card_actions(
    site: str, desktop: Any, language: str, settings: Any
) -> None:
    settings.GOODWILL_APPROVAL_ABOVE = 5000  # ¥50.00
    device = _customer_with_a_card("+8613800138001")
    agent = make_staff(f"agent-{language}", "support")
    page = desktop(language)
    complaints = _csp_watch(page)
    _log_in(page, site, agent)
    story = f"{site}/admin/desk/devices/{device.pk}/"
    was = device.status
    page.goto(story)
    assert page.locator("#desk-credit").inner_text() == "¥20.00"

    # Goodwill of ¥80.00 is above the limit: it waits.
    page.locator("a.desk-action-goodwill").click()
    page.wait_for_url(f"{site}/admin/desk/devices/{device.pk}/goodwill/**")
    shot(page, f"console-goodwill-form-{language}")
    page.fill("input[name=amount]", "80.00")
    page.fill("textarea[name=reason]", "网络故障补偿" if language == "zh-hans" else "outage")
    _submit(page)
    page.wait_for_url(story)
    with translation.override(language):
        waits = _("%(amount)s waits for a second staff member's approval.") % {"amount": "¥80.00"}
    assert waits in page.locator(".messagelist").inner_text()
    assert page.locator("#desk-credit").inner_text() == "¥20.00"
    grant = GoodwillCredit.objects.get(device=device)
    assert grant.status == GoodwillStatus.PENDING

    # A finance clerk approves it from the console home's link row, with a reason.
    clerk_page = desktop(language)
    clerk_complaints = _csp_watch(clerk_page)
    _log_in(clerk_page, site, make_staff(f"clerk-{language}", "finance"))
    with translation.override(language):
        clerk_page.locator("#console-tools").get_by_role(
            "link", name=_("Goodwill credit awaiting approval")
        ).click()
    clerk_page.wait_for_url("**/admin/desk/goodwill/")
    assert "¥80.00" in clerk_page.locator("#content-main tbody").inner_text()
    shot(clerk_page, f"console-goodwill-list-{language}")
    clerk_page.locator(f"#content-main a[href$='/desk/goodwill/{grant.pk}/']").click()
    clerk_page.fill("textarea[name=reason]", "已核实" if language == "zh-hans" else "checked")
    shot(clerk_page, f"console-goodwill-decide-{language}")
    for decision in ("approve", "reject"):  # the console's buttons, not the browser's grey ones
        colour = _style(clerk_page, f"button[value={decision}]", "backgroundColor")
        assert colour not in {"rgb(239, 239, 239)", "rgba(0, 0, 0, 0)"}, colour
    clerk_page.locator("button[value=approve]").click()
    clerk_page.wait_for_url("**/admin/desk/goodwill/")
    with translation.override(language):
        assert (
            _("Goodwill credit approved and credited to the card.")
            in clerk_page.locator(".messagelist").inner_text()
        )
        assert _("No goodwill credit is waiting for approval.") in clerk_page.content()
    shot(clerk_page, f"console-goodwill-approved-{language}")
    page.goto(story)
    assert page.locator("#desk-credit").inner_text() == "¥100.00"
    shot(page, f"console-desk-credited-{language}")

    # Suspend, then reinstate.
    page.locator("a.desk-action-suspend").click()
    page.wait_for_url(f"{site}/admin/desk/devices/{device.pk}/status/**")
    page.select_option("select[name=cause]", index=0)
    page.fill("textarea[name=reason]", "客户报失" if language == "zh-hans" else "reported lost")
    shot(page, f"console-suspend-{language}")
    labels = page.locator("#content-main .form-row label").all_inner_texts()
    assert len(set(labels)) == len(labels) == 2, labels  # the cause and the reason told apart
    _submit(page)
    page.wait_for_url(story)
    device.refresh_from_db()
    assert device.status == DeviceStatus.SUSPENDED
    page.locator("a.desk-action-suspend").click()
    page.wait_for_selector("button[value=reinstate]")
    page.fill("textarea[name=reason]", "已找回" if language == "zh-hans" else "found again")
    shot(page, f"console-reinstate-{language}")
    page.locator("button[value=reinstate]").click()
    page.wait_for_url(story)
    device.refresh_from_db()
    assert device.status == was  # as before the suspension

    # The customer's ticket, then the card out of the customer's account.
    page.locator("#desk-tickets a").first.click()
    page.wait_for_url(f"{site}/admin/desk/tickets/**")
    assert "余额不对" in page.locator(".thread").inner_text()
    shot(page, f"console-ticket-{language}")
    page.goto(story)
    page.locator("a.desk-action-unbind").click()
    page.wait_for_url(f"{site}/admin/desk/devices/{device.pk}/unbind/**")
    page.fill("textarea[name=reason]", "客户转让" if language == "zh-hans" else "handed on")
    shot(page, f"console-unbind-{language}")
    _submit(page)
    page.wait_for_url(story)
    device.refresh_from_db()
    assert device.owner_id is None
    with translation.override(language):
        gone = _("The card is no longer in the customer's account.")
    assert gone in page.locator(".messagelist").inner_text()
    assert complaints == []
    assert clerk_complaints == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_resellers_owner_downloads_a_past_months_statement(
    site: str, desktop: Any, language: str
) -> None:
    alice = Reseller.objects.get(name="Alice Mobile")
    Reseller.objects.filter(pk=alice.pk).update(created_at=timezone.now() - timedelta(days=70))
    agent_support.make_staff(alice, "owner@alice.example", "owner")
    page = desktop(language)
    complaints = _csp_watch(page)
    page.goto(f"{site}/agent/login")
    page.fill("input[name=username]", "owner@alice.example")
    page.fill("input[name=password]", agent_support.PASSWORD)
    page.click("button[type=submit].primary")
    page.wait_for_url(f"{site}/agent/")
    page.goto(f"{site}/agent/statements")
    months = page.locator("table.agent-statements tbody tr")
    assert months.count() >= 2
    shot(page, f"console-agent-statements-{language}")
    first = months.first
    assert first.locator("a", has_text="PDF").count() == 1
    assert _download(page, "table.agent-statements tbody tr:first-child a[href$='.pdf']")[:4] == (
        b"%PDF"
    )
    text = _download(page, "table.agent-statements tbody tr:first-child a[href$='.csv']")
    rows = list(csv.reader(io.StringIO(text.decode("utf-8-sig"))))
    assert rows[0] == _csv_header(language)
    assert complaints == []
