"""A reseller's monthly float statement: opening float, deposits, other credits, sales (by
plan), refunds of failed top-ups, other debits and closing float, for one calendar month in
the operator's time zone — as numbers (:func:`statement`), a CSV (:func:`as_csv`) and a PDF
(:func:`as_pdf`). The console and the reseller portal serve the same three.

Every number is the ledger's. The opening and closing floats are the balances the ledger
recorded on the float's last transfer before the month's first and after its last instant
(``Transfer.destination_balance`` / ``source_balance``, ledger 0006: what the compare-and-swap
left, in the transfer's own transaction), not a sum computed beside it; the movements are the
float's transfers in the month, classified by kind. All of it is read in one snapshot, so

    opening + deposits + other credits − sales + refunds − other debits = closing

holds (:attr:`Statement.balanced`; the tests prove it against the ledger). A deposit is a
``float_credit`` transfer that a :class:`ResellerDeposit` points at; a sale an
``order_payment`` out of the float; a refund an ``order_refund`` back into it (the refund of a
failed top-up, which may belong to a sale of the month before).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet, Sum
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from fpdf import FPDF
from fpdf.enums import Align, XPos, YPos

from simtopup.catalog.models import Plan
from simtopup.core.errors import DomainError
from simtopup.core.money import format_money, to_decimal_string
from simtopup.core.spreadsheet import Sheet
from simtopup.ledger.audit import read_snapshot
from simtopup.ledger.keys import order_id_of
from simtopup.ledger.models import Transfer
from simtopup.orders.models import Order
from simtopup.orders.receipts import (
    customer_zone,
    format_time,
    normalise_language,
    receipt_font,
    zone_label,
)
from simtopup.resellers.models import Reseller, ResellerDeposit

# The oldest month a statement can be asked for (no ledger is older).
FIRST_YEAR = 2000


@dataclass(frozen=True)
class Credit:
    """A deposit, another credit or another debit of the float (``amount`` positive)."""

    at: datetime
    amount: int
    reference: str  # a deposit's bank reference; otherwise the transfer's memo
    received_on: date | None = None  # a deposit's day at the bank


@dataclass(frozen=True)
class PlanSales:
    plan: Plan
    count: int
    total: int


@dataclass(frozen=True)
class Statement:
    reseller: Reseller
    year: int
    month: int
    currency: str
    # The month as instants: [start, end) in the operator's zone.
    start: datetime
    end: datetime
    # The month is over (else the statement shows it up to when it was made).
    complete: bool
    opening: int
    closing: int
    deposits: tuple[Credit, ...] = ()
    other_credits: tuple[Credit, ...] = ()
    other_debits: tuple[Credit, ...] = ()
    sales_count: int = 0
    sales_total: int = 0
    by_plan: tuple[PlanSales, ...] = ()
    refunds_count: int = 0
    refunds_total: int = 0
    made_at: datetime = field(default_factory=timezone.now)

    @property
    def deposits_total(self) -> int:
        return sum(d.amount for d in self.deposits)

    @property
    def other_credits_total(self) -> int:
        return sum(c.amount for c in self.other_credits)

    @property
    def other_debits_total(self) -> int:
        return sum(c.amount for c in self.other_debits)

    @property
    def net(self) -> int:
        return (
            self.deposits_total
            + self.other_credits_total
            - self.sales_total
            + self.refunds_total
            - self.other_debits_total
        )

    @property
    def balanced(self) -> bool:
        return self.opening + self.net == self.closing

    @property
    def label(self) -> str:
        return f"{self.year}-{self.month:02d}"

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last_day(self) -> date:
        """The month's last day, or today for a month that is not over."""
        zone = customer_zone(None)
        if self.complete:
            return (self.end - timedelta(days=1)).astimezone(zone).date()
        return self.made_at.astimezone(zone).date()


def month_bounds(year: int, month: int) -> tuple[datetime, datetime]:
    """The calendar month in the operator's time zone, as [start, end) instants."""
    # Up to 9998: the end of December 9999 would be in year 10000, which ``date`` refuses.
    if not (1 <= month <= 12 and FIRST_YEAR <= year <= 9998):
        raise DomainError("invalid_month", gettext_lazy("There is no such month."), 404)
    zone = customer_zone(None)
    start = datetime.combine(date(year, month, 1), time.min, tzinfo=zone)
    following = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return start, datetime.combine(following, time.min, tzinfo=zone)


def this_month(now: datetime | None = None) -> tuple[int, int]:
    """(year, month) of today in the operator's calendar."""
    today = (now or timezone.now()).astimezone(customer_zone(None)).date()
    return today.year, today.month


def past_months(reseller: Reseller, *, now: datetime | None = None) -> list[tuple[int, int]]:
    """The months that are over since the reseller was created, newest first (the portal's
    list of statements)."""
    zone = customer_zone(None)
    first = reseller.created_at.astimezone(zone).date().replace(day=1)
    year, month = this_month(now)
    months = []
    while True:
        month -= 1
        if month == 0:
            year, month = year - 1, 12
        if date(year, month, 1) < first:
            break
        months.append((year, month))
    return months


def _balance_before(touching: QuerySet[Transfer], account_id: int, moment: datetime) -> int:
    """The float's balance as the ledger recorded it on its last transfer before
    ``moment`` (0 before the first). A transfer recorded before ledger 0006 has no recorded
    balance: then the balance is summed from the transfers up to it."""
    last = (
        touching.filter(created_at__lt=moment)
        .order_by("-pk")
        .values_list("pk", "source_id", "source_balance", "destination_balance")
        .first()
    )
    if last is None:
        return 0
    pk, source_id, source_balance, destination_balance = last
    recorded = source_balance if source_id == account_id else destination_balance
    if recorded is not None:
        return int(recorded)
    upto = touching.filter(pk__lte=pk)
    incoming = upto.filter(destination_id=account_id).aggregate(s=Sum("amount"))["s"] or 0
    outgoing = upto.filter(source_id=account_id).aggregate(s=Sum("amount"))["s"] or 0
    return int(incoming - outgoing)


def statement(
    reseller: Reseller, year: int, month: int, *, now: datetime | None = None
) -> Statement:
    """The reseller's float statement of one month (``invalid_month`` for a month that has
    not begun or does not exist). Read in one snapshot of the database."""
    start, end = month_bounds(year, month)
    made_at = now or timezone.now()
    if start > made_at:
        raise DomainError("invalid_month", gettext_lazy("There is no such month."), 404)
    account_id = reseller.float_account_id
    with read_snapshot():
        touching = Transfer.objects.filter(Q(source_id=account_id) | Q(destination_id=account_id))
        opening = _balance_before(touching, account_id, start)
        closing = _balance_before(touching, account_id, end)
        moves = list(
            touching.filter(created_at__gte=start, created_at__lt=end)
            .order_by("pk")
            .only("pk", "created_at", "kind", "amount", "memo", "source_id", "idempotency_key")
        )
        credit_ids = [t.pk for t in moves if t.kind == "float_credit"]
        deposits = {
            d.transfer_id: d for d in ResellerDeposit.objects.filter(transfer_id__in=credit_ids)
        }
        sale_orders = {
            t.pk: order_id_of(t.idempotency_key) for t in moves if t.kind == "order_payment"
        }
        plan_of = dict(
            Order.objects.filter(pk__in=[o for o in sale_orders.values() if o]).values_list(
                "pk", "plan_id"
            )
        )
        plans = Plan.objects.in_bulk(set(plan_of.values()))
    found: dict[str, list[Credit]] = defaultdict(list)
    counts: dict[int | None, int] = defaultdict(int)
    totals: dict[int | None, int] = defaultdict(int)
    sales_count = sales_total = refunds_count = refunds_total = 0
    for t in moves:
        incoming = t.source_id != account_id
        if incoming and t.kind == "order_refund":
            refunds_count += 1
            refunds_total += t.amount
        elif not incoming and t.kind == "order_payment":
            sales_count += 1
            sales_total += t.amount
            plan_id = plan_of.get(sale_orders[t.pk] or 0)
            counts[plan_id] += 1
            totals[plan_id] += t.amount
        elif incoming and t.pk in deposits:
            d = deposits[t.pk]
            found["deposits"].append(
                Credit(t.created_at, t.amount, d.bank_reference, d.received_on)
            )
        else:
            found["other_credits" if incoming else "other_debits"].append(
                Credit(t.created_at, t.amount, t.memo)
            )
    by_plan = sorted(
        (PlanSales(plans[p], counts[p], totals[p]) for p in counts if p in plans),
        key=lambda s: (s.plan.sort_order, s.plan.pk),
    )
    return Statement(
        reseller=reseller,
        year=year,
        month=month,
        currency=reseller.currency,
        start=start,
        end=end,
        complete=end <= made_at,
        opening=opening,
        closing=closing,
        deposits=tuple(sorted(found["deposits"], key=lambda d: (d.received_on, d.at))),
        other_credits=tuple(found["other_credits"]),
        other_debits=tuple(found["other_debits"]),
        sales_count=sales_count,
        sales_total=sales_total,
        by_plan=tuple(by_plan),
        refunds_count=refunds_count,
        refunds_total=refunds_total,
        made_at=made_at,
    )


# --- what a statement says, in the reader's language ---------------------------------------


@dataclass(frozen=True)
class SummaryLine:
    label: str
    count: int | None
    amount: int  # signed as it moves the float; the opening and closing are balances


def summary(st: Statement) -> list[SummaryLine]:
    """The statement's lines from opening to closing (inside the reader's language)."""
    lines = [
        SummaryLine(_("Opening float"), None, st.opening),
        SummaryLine(_("Deposits"), len(st.deposits), st.deposits_total),
        SummaryLine(_("Other credits"), len(st.other_credits), st.other_credits_total),
        SummaryLine(_("Top-ups sold"), st.sales_count, -st.sales_total),
        SummaryLine(_("Refunds of failed top-ups"), st.refunds_count, st.refunds_total),
    ]
    if st.other_debits:
        lines.append(SummaryLine(_("Other debits"), len(st.other_debits), -st.other_debits_total))
    lines.append(SummaryLine(_("Closing float"), None, st.closing))
    return lines


def period_text(st: Statement) -> str:
    """``2026-11-01 – 2026-11-30 (Beijing time)``: the days, and the zone they are in."""
    zone = customer_zone(None)
    return f"{st.first_day:%Y-%m-%d} – {st.last_day:%Y-%m-%d} ({zone_label(zone, st.start)})"


def filename(st: Statement, extension: str) -> str:
    return f"statement-{st.reseller.code}-{st.label}.{extension}"


def as_csv(st: Statement, language: str) -> Sheet:
    """The statement as a spreadsheet: one line per deposit, other credit and debit, one per
    plan sold, one for the refunds, between the opening and closing floats. The amounts are
    signed as they move the float, so the opening plus the lines between is the closing."""
    with translation.override(normalise_language(language)):
        zone = customer_zone(None)
        cur = st.currency

        def amount(minor: int) -> str:
            # Plain numbers (no currency symbol) so spreadsheets can add them up.
            return to_decimal_string(minor, cur)

        def day(moment: datetime) -> str:
            return f"{moment.astimezone(zone):%Y-%m-%d}"

        sheet = Sheet(
            [
                _("Line"),
                _("Date"),
                _("Reference"),
                _("Plan"),
                _("Count"),
                _("Amount"),
                _("Currency"),
            ]
        )
        sheet.row(
            [_("Opening float"), f"{st.first_day:%Y-%m-%d}", "", "", "", amount(st.opening), cur]
        )
        for d in st.deposits:
            received = f"{d.received_on:%Y-%m-%d}" if d.received_on else day(d.at)
            sheet.row([_("Deposit"), received, d.reference, "", "", amount(d.amount), cur])
        for c in st.other_credits:
            sheet.row([_("Other credit"), day(c.at), c.reference, "", "", amount(c.amount), cur])
        for p in st.by_plan:
            sheet.row([_("Top-ups sold"), "", "", p.plan.name, p.count, amount(-p.total), cur])
        if st.refunds_count:
            sheet.row(
                [
                    _("Refunds of failed top-ups"),
                    "",
                    "",
                    "",
                    st.refunds_count,
                    amount(st.refunds_total),
                    cur,
                ]
            )
        for c in st.other_debits:
            sheet.row([_("Other debit"), day(c.at), c.reference, "", "", amount(-c.amount), cur])
        sheet.row(
            [_("Closing float"), f"{st.last_day:%Y-%m-%d}", "", "", "", amount(st.closing), cur]
        )
        return sheet


# --- the PDF (the receipts' library and font: fpdf2 with an embedded CJK subset) -----------

PAGE_WIDTH, PAGE_HEIGHT = 210.0, 297.0  # A4, mm
MARGIN = 16.0
INK = (27, 27, 27)
MUTED = (95, 99, 104)
ACCENT = (11, 87, 208)
RULE = (210, 210, 210)


class _Page:
    """Drawing helpers over one FPDF document."""

    def __init__(self, pdf: FPDF) -> None:
        self.pdf = pdf
        self.width = PAGE_WIDTH - 2 * MARGIN

    def text(self, text: str, size: float, *, colour: tuple[int, int, int] = INK) -> None:
        self.pdf.set_font_size(size)
        self.pdf.set_text_color(*colour)
        self.pdf.multi_cell(0, size * 0.5, text, align=Align.L, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def rule(self) -> None:
        pdf = self.pdf
        pdf.set_draw_color(*RULE)
        pdf.set_line_width(0.3)
        y = pdf.get_y() + 1.5
        pdf.line(MARGIN, y, PAGE_WIDTH - MARGIN, y)
        pdf.set_y(y + 3)

    def table(
        self,
        widths: list[float],
        header: list[str],
        rows: list[list[str]],
        *,
        bold_last: bool,
        numbers: int = 2,
    ) -> None:
        """The last ``numbers`` columns (counts and amounts) are right-aligned."""
        pdf = self.pdf
        total = sum(widths)
        widths = [w * self.width / total for w in widths]
        pdf.set_font_size(9)
        pdf.set_text_color(*MUTED)
        first_number = len(widths) - numbers
        for i, (w, text) in enumerate(zip(widths, header, strict=True)):
            pdf.cell(w, 6, text, align=Align.R if i >= first_number else Align.L)
        pdf.ln(6)
        pdf.set_text_color(*INK)
        for n, row in enumerate(rows):
            pdf.set_font_size(11 if bold_last and n == len(rows) - 1 else 10)
            for i, (w, text) in enumerate(zip(widths, row, strict=True)):
                pdf.cell(w, 6.5, text, align=Align.R if i >= first_number else Align.L)
            pdf.ln(6.5)
        pdf.ln(2)


def as_pdf(st: Statement, language: str) -> bytes:
    """The statement as an A4 PDF in ``language`` (zh-hans, zh-hant, en), times in the
    operator's zone, with the receipts' CJK font embedded as a subset (Chinese text can be
    read, searched and copied)."""
    language = normalise_language(language)
    face = receipt_font(language)
    with translation.override(language):
        operator = settings.OPERATOR_NAME
        title = _("Float statement")
        zone = customer_zone(None)
        cur = st.currency

        def money(minor: int) -> str:
            return format_money(minor, cur)

        pdf = FPDF(orientation="portrait", unit="mm", format="A4")
        pdf.set_margins(MARGIN, MARGIN, MARGIN)
        pdf.set_auto_page_break(auto=True, margin=MARGIN)
        pdf.c_margin = 1
        pdf.set_title(f"{title} {st.reseller.code} {st.label}")
        pdf.set_author(operator)
        pdf.set_creator("simtopup")
        pdf.set_lang({"zh-hans": "zh-Hans", "zh-hant": "zh-Hant"}.get(language, "en"))
        pdf.set_creation_date(st.made_at)
        pdf.add_font("statement", "", face.path, collection_font_number=face.index)
        pdf.add_page()
        pdf.set_font("statement", size=16)
        page = _Page(pdf)

        page.text(operator, 16)
        page.text(f"{title} {st.label}", 13, colour=ACCENT)
        pdf.ln(1)
        page.text(f"{_('Reseller')}: {st.reseller.name}", 10)
        page.text(f"{_('Agent code')}: {st.reseller.code}", 10)
        page.text(f"{_('Period')}: {period_text(st)}", 10)
        if not st.complete:
            page.text(
                _("This month is not over yet: the statement shows it up to now."),
                9,
                colour=MUTED,
            )
        page.rule()

        lines = summary(st)
        page.table(
            [5, 1.5, 2.5],
            ["", _("Count"), _("Amount")],
            [
                [line.label, "" if line.count is None else str(line.count), money(line.amount)]
                for line in lines
            ],
            bold_last=True,
        )
        page.rule()

        page.text(_("Deposits"), 12, colour=ACCENT)
        if st.deposits:
            page.table(
                [2, 4, 2.5],
                [_("Received on"), _("Bank reference"), _("Amount")],
                [
                    [
                        f"{d.received_on:%Y-%m-%d}" if d.received_on else "",
                        d.reference,
                        money(d.amount),
                    ]
                    for d in st.deposits
                ],
                bold_last=False,
                numbers=1,
            )
        else:
            page.text(_("No deposits this month."), 10, colour=MUTED)
            pdf.ln(2)

        page.text(_("Sales by plan"), 12, colour=ACCENT)
        if st.by_plan:
            page.table(
                [5, 1.5, 2.5],
                [_("Plan"), _("Count"), _("Amount")],
                [[p.plan.name, str(p.count), money(p.total)] for p in st.by_plan],
                bold_last=False,
            )
        else:
            page.text(_("No sales this month."), 10, colour=MUTED)
            pdf.ln(2)

        others = [(_("Other credit"), c, 1) for c in st.other_credits] + [
            (_("Other debit"), c, -1) for c in st.other_debits
        ]
        if others:
            page.text(_("Other movements"), 12, colour=ACCENT)
            page.table(
                [2.5, 2, 4, 2.5],
                [_("Line"), _("Date"), _("Reference"), _("Amount")],
                [
                    [
                        label,
                        f"{c.at.astimezone(zone):%Y-%m-%d}",
                        c.reference,
                        money(sign * c.amount),
                    ]
                    for label, c, sign in others
                ],
                bold_last=False,
                numbers=1,
            )

        page.rule()
        page.text(
            _(
                "Opening float + deposits + other credits − sales + refunds − other debits"
                " = closing float."
            ),
            8.5,
            colour=MUTED,
        )
        page.text(
            _("Issued by %(operator)s on %(time)s.")
            % {
                "operator": operator,
                "time": f"{format_time(st.made_at, zone)} ({zone_label(zone, st.made_at)})",
            },
            8.5,
            colour=MUTED,
        )
        return bytes(pdf.output())


def statement_context(st: Statement) -> dict[str, Any]:
    """What a page showing the statement needs (inside the reader's language)."""
    zone = customer_zone(None)
    cur = st.currency
    return {
        "statement": st,
        "period": period_text(st),
        "summary": [
            {"label": line.label, "count": line.count, "amount": format_money(line.amount, cur)}
            for line in summary(st)
        ],
        "deposits": [
            {
                "received_on": d.received_on,
                "reference": d.reference,
                "amount": format_money(d.amount, cur),
            }
            for d in st.deposits
        ],
        "by_plan": [
            {"plan": p.plan.name, "count": p.count, "amount": format_money(p.total, cur)}
            for p in st.by_plan
        ],
        "others": [
            {
                "label": _("Other credit"),
                "date": c.at.astimezone(zone).date(),
                "reference": c.reference,
                "amount": format_money(c.amount, cur),
            }
            for c in st.other_credits
        ]
        + [
            {
                "label": _("Other debit"),
                "date": c.at.astimezone(zone).date(),
                "reference": c.reference,
                "amount": format_money(-c.amount, cur),
            }
            for c in st.other_debits
        ],
    }


def recent_deposits(reseller: Reseller | None = None, limit: int = 100) -> list[ResellerDeposit]:
    """The latest recorded deposits (of one reseller, or of all), newest first."""
    rows = ResellerDeposit.objects.select_related("reseller").order_by("-pk")
    if reseller is not None:
        rows = rows.filter(reseller=reseller)
    return list(rows[:limit])
