"""Receipts: the PDF a customer keeps, and the facts the public verification page shows.

A receipt exists once an order is fulfilled (``Order.receipt_no`` is set by
:func:`simtopup.orders.actions.complete`). The PDF is rendered on demand, in the
customer's language and time zone, with an embedded subset of a CJK font so that Chinese
text displays and can be searched and copied on any reader; its QR code links to the public
verification page, where anyone can check that the receipt is genuine (anti-fraud).
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import subprocess
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import segno
from django.conf import settings
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from fpdf import FPDF
from fpdf.enums import Align, TextMode, XPos, YPos
from stdnum import luhn

from simtopup.catalog.display import plan_detail
from simtopup.core.errors import DomainError
from simtopup.core.money import format_money
from simtopup.orders.models import Order, OrderStatus

SUPPORTED_LANGUAGES = ("zh-hans", "zh-hant", "en")
# fontTools logs every table it prunes while fpdf2 subsets the font, at INFO.
logging.getLogger("fontTools").setLevel(logging.WARNING)

# Where distributions put Noto Sans CJK (Debian/Ubuntu fonts-noto-cjk, Arch, Fedora, Alpine).
KNOWN_FONT_PATHS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJKsc-Regular.otf",
)
# Characters the font must have: simplified and traditional forms of "receipt" (凭/憑 证/證).
_PROBE = "凭证憑證¥"
_FONT_SUFFIXES = (".ttf", ".otf", ".ttc", ".otc")


# --- formatting ---------------------------------------------------------------------------


def customer_zone(name: str | None) -> ZoneInfo:
    """The named IANA zone, or the operator's display zone if it is missing or unknown."""
    for candidate in (name, settings.DISPLAY_TIME_ZONE, "UTC"):
        if not candidate:
            continue
        try:
            return ZoneInfo(candidate)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    raise AssertionError("UTC always exists")  # pragma: no cover


# Zones on China's standard time: what people there call 北京时间.
BEIJING_TIME_ZONES = frozenset(
    {"Asia/Shanghai", "Asia/Chongqing", "Asia/Chungking", "Asia/Harbin", "PRC"}
)


def format_time(moment: datetime, zone: ZoneInfo) -> str:
    """``2026-11-26 16:00``: the local time in the customer's zone, for pages and lists. The
    one function every page, table and receipt uses; no raw zone name (``Asia/Shanghai``)
    after it — where the zone must be said, :func:`format_time_with_zone`."""
    return f"{moment.astimezone(zone):%Y-%m-%d %H:%M}"


def zone_label(zone: ZoneInfo, moment: datetime) -> str:
    """The zone as people say it, at ``moment`` (daylight saving counts): ``Beijing time``
    (北京时间, 北京時間) for China's zones, else the offset, ``UTC+8``, ``UTC-7``,
    ``UTC+5:30``, ``UTC``."""
    if zone.key in BEIJING_TIME_ZONES:
        return _("Beijing time")
    offset = moment.astimezone(zone).utcoffset()
    minutes = int(offset.total_seconds()) // 60 if offset is not None else 0
    if minutes == 0:
        return "UTC"
    sign = "+" if minutes > 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours}" + (f":{rest:02d}" if rest else "")


def format_time_with_zone(moment: datetime, zone: ZoneInfo) -> str:
    """``2026-11-26 16:00 (UTC+8)``: a receipt names the zone its time is in (glossary), in
    words a customer reads (:func:`zone_label`), never the IANA name."""
    return f"{format_time(moment, zone)} ({zone_label(zone, moment)})"


def normalise_language(language: str | None) -> str:
    lang = (language or "").strip().lower().replace("_", "-")
    if lang in SUPPORTED_LANGUAGES:
        return lang
    if lang in {"zh-tw", "zh-hk", "zh-mo"} or lang.startswith("zh-hant"):
        return "zh-hant"
    if lang.startswith("zh"):
        return "zh-hans"
    if lang.startswith("en"):
        return "en"
    return settings.LANGUAGE_CODE


# --- what a receipt says ------------------------------------------------------------------


def verification_url(receipt_no: str) -> str:
    path = reverse("verify-receipt", kwargs={"receipt_no": receipt_no})
    return settings.SITE_URL.rstrip("/") + path


def _payment_method(order: Order) -> str:
    if order.reseller_id is not None:
        reseller = order.reseller
        assert reseller is not None
        return _("Authorised reseller %(name)s (agent code %(code)s)") % {
            "name": reseller.name,
            "code": reseller.code,
        }
    labels = {
        "card": _("Card"),
        "alipay": _("Alipay"),
        "wechat_pay": _("WeChat Pay"),
        "balance": _("Card credit"),
    }
    return labels.get(order.payment_method, order.payment_method or "—")


def status_label(status: str) -> str:
    labels: dict[str, str] = {
        OrderStatus.FULFILLED: _("Credited"),
        OrderStatus.REFUNDED: _("Refunded"),
        OrderStatus.FAILED: _("Failed"),
        OrderStatus.CANCELLED: _("Cancelled"),
    }
    return labels.get(status, _("Processing"))


@dataclass(frozen=True)
class ReceiptFacts:
    """A receipt's content as display strings, in the active language."""

    receipt_no: str
    time: str
    device: str
    plan: str
    plan_detail: str
    amount: str
    payment_method: str
    status: str
    refunded: bool
    url: str
    # One sentence per refund of a fulfilled order ("Refunded ¥5.00 on 2026-03-10 (to your
    # card's credit)"), oldest first.
    refunds: tuple[str, ...] = ()


# The sentences a receipt shows for a fulfilled order's refunds. Refunds are rows of
# payments, above orders, so payments lends the function at start-up (payments/apps.py,
# payments/customer_refunds.refund_lines), as it lends its payer (orders/payers.py).
RefundLines = Callable[[Order, ZoneInfo], list[str]]
_REFUND_LINES: list[RefundLines] = []


def register_refund_lines(lines: RefundLines) -> None:
    _REFUND_LINES[:] = [lines]


def _refund_lines(order: Order, zone: ZoneInfo) -> tuple[str, ...]:
    if not _REFUND_LINES:
        raise RuntimeError("no refund lines registered (is the payments app installed?)")
    return tuple(_REFUND_LINES[0](order, zone))


def receipt_facts(order: Order, zone: ZoneInfo) -> ReceiptFacts:
    """Call inside ``translation.override(language)``. Reseller sales show the plan's retail
    price: what the reseller paid us wholesale is between us and the reseller."""
    if not order.receipt_no or order.fulfilled_at is None:
        raise ValueError(f"order {order.pk} has no receipt")
    plan = order.plan
    detail = plan_detail(plan, order.retail_amount)
    amount = order.retail_amount if order.reseller_id is not None else order.amount
    return ReceiptFacts(
        receipt_no=order.receipt_no,
        time=format_time_with_zone(order.fulfilled_at, zone),
        device=order.device.masked,
        plan=plan.name,
        plan_detail=detail,
        amount=format_money(amount, order.currency),
        payment_method=_payment_method(order),
        status=status_label(order.status),
        refunded=order.status == OrderStatus.REFUNDED,
        url=verification_url(order.receipt_no),
        refunds=_refund_lines(order, zone),
    )


# --- receipt numbers (what people type into the verification page) ------------------------

# What people type: separators where printed (the number of the order may then be written
# without its leading zeros), or none at all (then the number has its 8+ digits).
_RECEIPT_SHAPES = (
    re.compile(r"R?-?(\d{8})-(\d{1,12})-(\d)"),
    re.compile(r"R?-?(\d{8})-?(\d{8,12})-?(\d)"),
)
_SEPARATORS = re.compile(r"[\s\-‐‑‒–—―_./]+")


def parse_receipt_number(text: str) -> str:
    """The canonical receipt number (``R20261126-00000042-7``) for what someone typed.

    Tolerates case, full-width characters (Chinese input methods), spaces and dashes, extra
    or missing leading zeros. Raises ``invalid_receipt_number`` if it is not the shape of
    one and ``receipt_check_digit_mismatch`` if the Luhn check digit is wrong (a typo, most
    likely).
    """
    cleaned = unicodedata.normalize("NFKC", text or "").upper()
    cleaned = _SEPARATORS.sub("-", cleaned).strip("-")
    match = None
    if len(cleaned) <= 40:
        match = next((m for p in _RECEIPT_SHAPES if (m := p.fullmatch(cleaned))), None)
    if match is None:
        raise DomainError(
            "invalid_receipt_number",
            gettext_lazy("This is not a receipt number."),
            404,
        )
    date, number, check = match.groups()
    body = f"{date}{int(number):08d}"
    if not luhn.is_valid(body + check):
        raise DomainError(
            "receipt_check_digit_mismatch",
            gettext_lazy(
                "The last digit of this receipt number does not match the others: it was "
                "probably mistyped. Please read it again from the receipt."
            ),
            422,
        )
    return f"R{body[:8]}-{body[8:]}-{check}"


def find_receipt(text: str) -> Order:
    """The order whose receipt number this is (see :func:`parse_receipt_number`), or
    ``receipt_not_found`` (404)."""
    receipt_no = parse_receipt_number(text)
    order = (
        Order.objects.select_related("plan", "device", "reseller", "customer")
        .filter(receipt_no=receipt_no)
        .first()
    )
    if order is None:
        raise DomainError(
            "receipt_not_found",
            gettext_lazy("We have no receipt with this number."),
            404,
        )
    return order


# --- the font -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FontFace:
    path: str
    index: int


def _fc_match() -> str | None:
    fc_match = shutil.which("fc-match")
    if not fc_match:
        return None
    try:
        out = subprocess.run(
            [fc_match, "-f", "%{file}", "sans-serif:lang=zh-cn"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


@cache
def _faces(path: str) -> tuple[tuple[str, bool], ...]:
    """(family name, covers Chinese) of each face of a font file or collection."""
    from fontTools.ttLib import (  # type: ignore[import-untyped]
        TTCollection,
        TTFont,
        TTLibError,
    )

    try:
        if path.lower().endswith((".ttc", ".otc")):
            fonts = list(TTCollection(path, lazy=True).fonts)
        else:
            fonts = [TTFont(path, lazy=True)]
        faces = []
        for font in fonts:
            cmap = font.getBestCmap() or {}
            family = font["name"].getBestFamilyName() or ""
            faces.append((family, all(ord(c) in cmap for c in _PROBE)))
        return tuple(faces)
    except (OSError, TTLibError, KeyError, AssertionError):
        return ()


def _usable(path: str | None) -> bool:
    return bool(
        path
        and path.lower().endswith(_FONT_SUFFIXES)
        and Path(path).is_file()
        and any(ok for _family, ok in _faces(path))
    )


@cache
def _discover_font(configured: str) -> str:
    if configured:
        path, _sep, index = (
            configured.rpartition("#") if "#" in configured else (configured, "", "")
        )
        faces = _faces(path) if path.lower().endswith(_FONT_SUFFIXES) else ()
        if not Path(path).is_file() or not faces:
            raise ImproperlyConfigured(
                f"SIMTOPUP_RECEIPT_FONT={configured!r} is not a .ttf/.otf/.ttc/.otc font file"
            )
        if index and not (index.isdigit() and int(index) < len(faces)):
            raise ImproperlyConfigured(
                f"SIMTOPUP_RECEIPT_FONT={configured!r}: the file has faces 0 to {len(faces) - 1}"
            )
        chosen = [faces[int(index)]] if index else list(faces)
        if not any(ok for _family, ok in chosen):
            raise ImproperlyConfigured(
                f"SIMTOPUP_RECEIPT_FONT={configured!r} has no Chinese glyphs"
            )
        return configured
    for candidate in KNOWN_FONT_PATHS:
        if _usable(candidate):
            return candidate
    found = _fc_match()
    if found and _usable(found):
        return found
    raise ImproperlyConfigured(
        "No font with Chinese glyphs found for PDF receipts: install Noto Sans CJK "
        "(Debian: apt-get install fonts-noto-cjk, or run scripts/install-system-deps) or set "
        "SIMTOPUP_RECEIPT_FONT to a .ttf/.otf/.ttc font file."
    )


def receipt_font(language: str) -> FontFace:
    """The face to embed for ``language``: ``SIMTOPUP_RECEIPT_FONT`` (``path`` or
    ``path#face-index``) or the discovered Noto Sans CJK. In a collection, the Simplified
    Chinese face (``… SC``) serves zh-hans and en, the Traditional one (``… TC``) zh-hant —
    the same characters are drawn the way each region writes them."""
    spec = _discover_font(settings.RECEIPT_FONT)
    path, _sep, index = spec.rpartition("#") if "#" in spec else (spec, "", "")
    if index:
        return FontFace(path, int(index))
    faces = _faces(path)
    wanted = " TC" if language == "zh-hant" else " SC"
    for i, (family, ok) in enumerate(faces):
        if ok and family.endswith(wanted):
            return FontFace(path, i)
    for i, (_family, ok) in enumerate(faces):
        if ok:
            return FontFace(path, i)
    return FontFace(path, 0)


# --- the PDF ------------------------------------------------------------------------------

PAGE_WIDTH, PAGE_HEIGHT = 148.0, 210.0  # A5, mm
MARGIN = 14.0
LABEL_WIDTH = 36.0
QR_SIZE = 34.0
INK = (27, 27, 27)
MUTED = (95, 99, 104)
ACCENT = (11, 87, 208)


def _draw_qr(pdf: FPDF, url: str, x: float, y: float, size: float) -> None:
    """The QR code as vector squares (one rectangle per run of dark modules), with a link."""
    qr = segno.make(url, error="m")
    matrix = qr.matrix
    module = size / len(matrix)
    pdf.set_fill_color(0, 0, 0)
    for row, line in enumerate(matrix):
        col = 0
        while col < len(line):
            if line[col] & 1:
                start = col
                while col < len(line) and line[col] & 1:
                    col += 1
                pdf.rect(x + start * module, y + row * module, (col - start) * module, module, "F")
            else:
                col += 1
    pdf.link(x, y, size, size, url)


def _text(pdf: FPDF, w: float, h: float, text: str, *, link: str = "") -> None:
    """A paragraph at the current position; the cursor moves to the next line's start."""
    pdf.multi_cell(w, h, text, link=link, align=Align.L, new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _masked_line(pdf: FPDF, h: float, text: str) -> None:
    """One line of a masked identifier (``8986••••1234``). CJK fonts draw the bullet in a
    full-width box, which spreads a long mask across the page. So runs of bullets are drawn
    as dots half an em apart, and the bullets themselves are written over them as
    invisible, horizontally condensed text: copying, searching and extracting the text
    still give exactly ``8986••••1234``."""
    bullet = "•"
    size = pdf.font_size  # in mm
    full = pdf.get_string_width(bullet)
    narrow = min(full, size * 0.5)
    x, y = pdf.get_x(), pdf.get_y()
    baseline = y + 0.5 * h + 0.3 * size  # where cell() puts it
    for run in re.findall(f"{bullet}+|[^{bullet}]+", text):
        width = narrow * len(run) if run[0] == bullet else pdf.get_string_width(run)
        pdf.set_xy(x, y)
        if run[0] == bullet and narrow < full:
            pdf.set_stretching(100 * narrow / full)
            pdf.text_mode = TextMode.INVISIBLE
            pdf.cell(width, h, run)
            pdf.text_mode = TextMode.FILL
            pdf.set_stretching(100)
            pdf.set_fill_color(*INK)
            for i in range(len(run)):
                pdf.circle(x + narrow * (i + 0.5), baseline - 0.38 * size, 0.105 * size, "F")
        else:
            pdf.cell(width, h, run)
        x += width
    pdf.set_xy(pdf.l_margin, y + h)


def _row(pdf: FPDF, label: str, value: str, *, size: float = 10.5, masked: bool = False) -> None:
    y = pdf.get_y()
    pdf.set_text_color(*MUTED)
    pdf.set_font_size(9)
    pdf.set_xy(MARGIN, y + 0.6)
    _text(pdf, LABEL_WIDTH - 2, 4.6, label)
    label_bottom = pdf.get_y()
    pdf.set_text_color(*INK)
    pdf.set_font_size(size)
    pdf.set_xy(MARGIN + LABEL_WIDTH, y)
    if masked:
        _masked_line(pdf, size * 0.5, value)
    else:
        _text(pdf, PAGE_WIDTH - 2 * MARGIN - LABEL_WIDTH, size * 0.5, value)
    pdf.set_y(max(pdf.get_y(), label_bottom) + 2.2)


def _rule(pdf: FPDF) -> None:
    pdf.set_draw_color(210, 210, 210)
    pdf.set_line_width(0.3)
    y = pdf.get_y()
    pdf.line(MARGIN, y, PAGE_WIDTH - MARGIN, y)
    pdf.set_y(y + 4)


# Bump when the layout changes, so that cached receipts of the old layout are not served.
LAYOUT_VERSION = 1
CACHE_SECONDS = 24 * 3600


def render_receipt_pdf(order: Order, language: str, time_zone: str) -> bytes:
    """The receipt of a fulfilled order as a one-page A5 PDF, in ``language`` (zh-hans,
    zh-hant, en) with times in ``time_zone``. The font is embedded as a subset.

    Rendering costs a few hundred milliseconds of CPU (fontTools parses and subsets the CJK
    font), and the same inputs always give the same file, so the file is cached under a
    digest of everything printed on it: a fact that changes (a refund, a plan's new name, the
    operator's name, the font) makes a new key, never a stale receipt."""
    language = normalise_language(language)
    zone = customer_zone(time_zone)
    face = receipt_font(language)
    with translation.override(language):
        facts = receipt_facts(order, zone)
        operator = settings.OPERATOR_NAME
        title = _("Top-up receipt")
        assert order.fulfilled_at is not None
        digest = hashlib.sha256(
            repr(
                (
                    LAYOUT_VERSION,
                    language,
                    facts,
                    operator,
                    title,
                    face,
                    order.fulfilled_at.isoformat(),
                )
            ).encode()
        ).hexdigest()
        key = f"simtopup:receipt-pdf:{digest}"
        cached = caches["default"].get(key)
        if isinstance(cached, bytes):
            return cached
        pdf_bytes = _render(order, language, facts, operator, title, face)
        caches["default"].set(key, pdf_bytes, CACHE_SECONDS)
        return pdf_bytes


def _render(
    order: Order, language: str, facts: ReceiptFacts, operator: str, title: str, face: FontFace
) -> bytes:
    """Draw the receipt (inside ``translation.override(language)``)."""
    pdf = FPDF(orientation="portrait", unit="mm", format=(PAGE_WIDTH, PAGE_HEIGHT))
    pdf.set_margins(MARGIN, MARGIN, MARGIN)
    pdf.set_auto_page_break(auto=True, margin=MARGIN)
    pdf.c_margin = 0  # text starts exactly where the layout says
    pdf.set_title(f"{title} {facts.receipt_no}")
    pdf.set_author(operator)
    pdf.set_creator("simtopup")
    pdf.set_lang({"zh-hans": "zh-Hans", "zh-hant": "zh-Hant"}.get(language, "en"))
    # The document's date is the fulfilment: the same order always renders the same file.
    assert order.fulfilled_at is not None
    pdf.set_creation_date(order.fulfilled_at)
    pdf.add_font("receipt", "", face.path, collection_font_number=face.index)
    pdf.add_page()

    pdf.set_font("receipt", size=17)
    pdf.set_text_color(*INK)
    _text(pdf, 0, 8, operator)
    pdf.set_font_size(12)
    pdf.set_text_color(*ACCENT)
    _text(pdf, 0, 7, title)
    pdf.ln(2)
    _rule(pdf)

    _row(pdf, _("Receipt number"), facts.receipt_no)
    _row(pdf, _("Time"), facts.time)
    _row(pdf, _("Device"), facts.device, masked=True)
    _row(pdf, _("Plan"), f"{facts.plan}\n{facts.plan_detail}")
    _row(pdf, _("Amount"), facts.amount, size=14)
    _row(pdf, _("Payment method"), facts.payment_method)
    _row(pdf, _("Status"), facts.status)
    if facts.refunds:
        _row(pdf, _("Refunds"), "\n".join(facts.refunds))
    _rule(pdf)

    top = pdf.get_y()
    _draw_qr(pdf, facts.url, MARGIN, top, QR_SIZE)
    text_x = MARGIN + QR_SIZE + 5
    text_w = PAGE_WIDTH - MARGIN - text_x
    pdf.set_xy(text_x, top)
    pdf.set_font_size(9.5)
    pdf.set_text_color(*INK)
    _text(
        pdf,
        text_w,
        4.8,
        _("Scan the code to check that this receipt is genuine on our official website:"),
    )
    pdf.set_x(text_x)
    pdf.set_font_size(8)
    pdf.set_text_color(*ACCENT)
    _text(pdf, text_w, 4, facts.url, link=facts.url)
    pdf.set_x(text_x)
    pdf.set_text_color(*MUTED)
    _text(
        pdf,
        text_w,
        4,
        _("Only trust the result shown at this address; fake sites may look the same."),
    )
    pdf.set_y(max(pdf.get_y(), top + QR_SIZE) + 5)
    pdf.set_font_size(8)
    _text(
        pdf,
        0,
        4,
        _("Issued by %(operator)s. Keep this receipt as your proof of payment.")
        % {"operator": operator},
    )
    return bytes(pdf.output())
