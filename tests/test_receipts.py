"""PDF receipts: ``GET /api/v1/orders/{id}/receipt.pdf``.

The PDF is read back with poppler (``pdftotext``, ``pdffonts``, ``pdftoppm``) the way a
customer's reader would: the text in the customer's language must be extractable (so the
font really maps the Chinese glyphs), the font must be embedded, the page must render, and
the QR code drawn on it must be the code of the verification URL.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path
from typing import Any

import pytest
import segno
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.utils import translation
from PIL import Image
from pypdf import PdfReader

from simtopup.catalog.display import format_data
from simtopup.core.money import format_money
from simtopup.orders.models import Order, OrderStatus
from simtopup.orders.receipts import receipt_font, render_receipt_pdf, verification_url
from simtopup.resellers.actions import wholesale_price
from tests.receipt_support import fulfilled_order, make_customer, paid_order
from tests.support import Actors
from tests.system_deps import need_receipt_font, need_tools

LANGUAGES = [
    # language, time zone, local time of FULFILLED_AT (08:00 UTC), plan name suffix
    # (the zone named as people say it, never its IANA name)
    ("zh-hans", "Asia/Shanghai", "2026-11-26 16:00 (北京时间)", " 简"),
    ("zh-hant", "Asia/Taipei", "2026-11-26 16:00 (UTC+8)", " 繁"),
    ("en", "America/Los_Angeles", "2026-11-26 00:00 (UTC-8)", ""),
]


@pytest.fixture
def poppler() -> dict[str, str]:
    need_receipt_font()
    return need_tools("pdftotext", "pdffonts", "pdftoppm")


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "receipt.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, check=True
    )
    return out.stdout.decode()


def pdf_fonts(pdf: bytes, tmp_path: Path) -> list[dict[str, str]]:
    """``pdffonts`` rows: name, type, emb, sub, uni."""
    path = tmp_path / "fonts.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert lines[0].split()[:2] == ["name", "type"], out.stdout
    rows = []
    for line in lines[2:]:
        cols = line.split()
        # name … type (may have spaces) … encoding emb sub uni object-id generation
        rows.append({"name": cols[0], "emb": cols[-5], "sub": cols[-4], "uni": cols[-3]})
    return rows


def render_page(pdf: bytes, tmp_path: Path, dpi: int) -> Image.Image:
    path = tmp_path / "page.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(
        ["pdftoppm", "-r", str(dpi), "-png", "-singlefile", "-f", "1", str(path)],
        capture_output=True,
        check=True,
    )
    return Image.open(io.BytesIO(out.stdout)).convert("L")


def download(client: Client, order: Order, **params: str) -> Any:
    return client.get(f"/api/v1/orders/{order.pk}/receipt.pdf", params)


@pytest.mark.parametrize(("language", "zone", "local_time", "suffix"), LANGUAGES)
def test_it_downloads_the_receipt_in_the_customers_language_and_time_zone(
    actors: Actors,
    poppler: dict[str, str],
    tmp_path: Path,
    language: str,
    zone: str,
    local_time: str,
    suffix: str,
) -> None:
    customer, client = make_customer("+8613800138001", language=language, time_zone=zone)
    order = fulfilled_order(customer, actors.device, actors.plans["month-20g"])

    response = download(client, order)

    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/pdf"
    assert (
        response["Content-Disposition"] == f'attachment; filename="receipt-{order.receipt_no}.pdf"'
    )
    assert "no-store" in response["Cache-Control"]
    pdf = response.content
    assert pdf.startswith(b"%PDF-")
    text = pdf_text(pdf, tmp_path)
    assert order.receipt_no in text
    assert local_time in text
    assert actors.device.masked in text
    assert "¥59.00" in text
    assert f"month-20g{suffix}\n" in text  # the plan's name in this language
    assert "20 GB" in text
    assert verification_url(order.receipt_no) in text
    with translation.override(language):
        for word in ("Top-up receipt", "Receipt number", "Payment method", "Alipay", "Credited"):
            assert translation.gettext(word) in text, (word, text)
    # Chinese glyphs went through the font: present in the text layer, not as boxes or "?".
    if language != "en":
        assert any("\u4e00" <= ch <= "\u9fff" for ch in text)
        assert "\ufffd" not in text
        assert "?" not in text
    fonts = pdf_fonts(pdf, tmp_path)
    assert fonts, "no font in the PDF"
    for font in fonts:
        assert font["emb"] == "yes", fonts
        assert font["sub"] == "yes", fonts
        assert font["uni"] == "yes", fonts


def test_it_embeds_the_regional_face_of_the_cjk_font(
    actors: Actors, poppler: dict[str, str], tmp_path: Path
) -> None:
    customer, _client = make_customer("+8613800138001")
    order = fulfilled_order(customer, actors.device, actors.plans["day-1g"])
    names = {}
    for language in ("zh-hans", "zh-hant"):
        pdf = render_receipt_pdf(order, language, "Asia/Shanghai")
        names[language] = [f["name"] for f in pdf_fonts(pdf, tmp_path)]
    path = Path(receipt_font("zh-hans").path)
    if path.suffix.lower() in {".ttc", ".otc"} and "NotoSansCJK" in path.name:
        assert all(name.endswith("+NotoSansCJKSC") for name in names["zh-hans"]), names
        assert all(name.endswith("+NotoSansCJKTC") for name in names["zh-hant"]), names


def test_it_renders_a_page_a_person_can_read(
    actors: Actors, poppler: dict[str, str], tmp_path: Path
) -> None:
    customer, client = make_customer("+8613800138001")
    order = fulfilled_order(customer, actors.device, actors.plans["day-1g"])
    pdf = download(client, order).content

    page = render_page(pdf, tmp_path, 80)

    # A5 at 80 dpi.
    assert page.size == (pytest.approx(466, abs=2), pytest.approx(661, abs=2))
    dark = sum(page.histogram()[:128])
    share = dark / (page.size[0] * page.size[1])
    # Text and a QR code: clearly not blank, clearly not a black page either.
    assert 0.02 < share < 0.25, share
    # The upper half (header and details) has ink of its own, not only the QR code.
    top = page.crop((0, 0, page.size[0], page.size[1] // 3))
    assert sum(top.histogram()[:128]) > 1500


def test_it_draws_the_qr_code_of_the_verification_page(
    actors: Actors, poppler: dict[str, str], tmp_path: Path
) -> None:
    customer, client = make_customer("+8613800138001")
    order = fulfilled_order(customer, actors.device, actors.plans["day-1g"])
    pdf = download(client, order).content
    url = verification_url(order.receipt_no or "")
    assert url.endswith(f"/verify/receipt/{order.receipt_no}")

    reader = PdfReader(io.BytesIO(pdf))
    page = reader.pages[0]
    links = []
    for annotation in page.get("/Annots", []):
        annotation = annotation.get_object()
        if annotation.get("/Subtype") == "/Link":
            links.append((annotation["/A"]["/URI"], [float(v) for v in annotation["/Rect"]]))
    assert links
    assert {uri for uri, _rect in links} == {url}
    # The QR code is the square link.
    squares = [rect for _uri, rect in links if abs((rect[2] - rect[0]) - (rect[3] - rect[1])) < 1]
    assert len(squares) == 1
    x0, _y0, x1, y1 = squares[0]

    dpi = 300
    image = render_page(pdf, tmp_path, dpi)
    scale = dpi / 72
    height_pt = float(page.mediabox.height)
    left, top = x0 * scale, (height_pt - y1) * scale
    size = (x1 - x0) * scale
    matrix = segno.make(url, error="m").matrix
    n = len(matrix)
    module = size / n
    drawn = [
        [
            image.getpixel((int(left + (col + 0.5) * module), int(top + (row + 0.5) * module)))
            < 128
            for col in range(n)
        ]
        for row in range(n)
    ]
    expected = [[bool(bit & 1) for bit in line] for line in matrix]
    assert drawn == expected
    # A quiet zone around it (white), so phone cameras find it.
    for offset in (-2 * module, size + 2 * module):
        assert image.getpixel((int(left + offset), int(top + size / 2))) > 200
        assert image.getpixel((int(left + size / 2), int(top + offset))) > 200


def test_it_hides_other_customers_receipts(actors: Actors) -> None:
    alice, _alice_client = make_customer("+8613800138001")
    _bob, bob_client = make_customer("+8613800138002")
    order = fulfilled_order(alice, actors.device, actors.plans["day-1g"])

    for path in (
        f"/api/v1/orders/{order.pk}/receipt.pdf",
        f"/api/v1/orders/{order.pk + 1000}/receipt.pdf",
    ):
        response = bob_client.get(path)
        assert response.status_code == 404
        assert response["Content-Type"] == "application/problem+json"
        assert response.json()["code"] == "not_found"
        assert order.receipt_no not in response.content.decode()

    response = Client().get(f"/api/v1/orders/{order.pk}/receipt.pdf")
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"


def test_it_refuses_a_receipt_before_the_order_is_fulfilled(actors: Actors) -> None:
    customer, client = make_customer("+8613800138001")
    order = paid_order(customer, actors.device, actors.plans["day-1g"])

    response = download(client, order)

    assert response.status_code == 409
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "receipt_not_available"
    assert body["status"] == 409
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID
    assert order.receipt_no is None


def test_it_takes_the_language_from_the_query(
    actors: Actors, poppler: dict[str, str], tmp_path: Path
) -> None:
    customer, client = make_customer("+8613800138001", language="en")
    order = fulfilled_order(customer, actors.device, actors.plans["day-1g"])

    text = pdf_text(download(client, order, lang="zh-hant").content, tmp_path)
    assert "day-1g 繁" in text

    response = download(client, order, lang="fr")
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert response.json()["errors"][0]["field"] == "lang"


def test_it_names_the_payment_method(
    actors: Actors, poppler: dict[str, str], tmp_path: Path
) -> None:
    customer, client = make_customer("+8613800138001", language="en")
    for n, (method, label) in enumerate(
        [("card", "Card"), ("wechat_pay", "WeChat Pay"), ("balance", "Card credit")]
    ):
        order = fulfilled_order(
            customer, actors.devices[n], actors.plans["day-1g"], payment_method=method
        )
        text = pdf_text(download(client, order).content, tmp_path)
        assert f"Payment method\n\n{label}\n" in text, text


def test_it_shows_pay_per_use_credit(
    actors: Actors, poppler: dict[str, str], tmp_path: Path
) -> None:
    customer, client = make_customer("+8613800138001", language="en")
    order = fulfilled_order(customer, actors.device, actors.plans["credit-50"])

    text = pdf_text(download(client, order).content, tmp_path)

    assert "Pay per use credit: ¥50.00" in text
    assert "¥50.00" in text


def test_it_names_the_reseller_on_a_reseller_sale_and_shows_the_retail_price(
    actors: Actors, poppler: dict[str, str], tmp_path: Path
) -> None:
    from django.db import transaction

    from simtopup.resellers.actions import place_reseller_topup

    plan = actors.plans["month-20g"]
    wholesale = wholesale_price(actors.alice, plan)
    assert wholesale < plan.price
    with transaction.atomic():
        order = place_reseller_topup(actors.alice, actors.device, plan, wholesale, "sale-1")
    order.refresh_from_db()
    assert order.receipt_no

    text = pdf_text(render_receipt_pdf(order, "en", "Asia/Shanghai"), tmp_path)

    assert actors.alice.name in text
    assert actors.alice.code in text
    assert "Authorised reseller" in text
    assert format_money(plan.price, "CNY") in text
    assert format_money(wholesale, "CNY") not in text  # the reseller's cost stays private


def test_it_documents_the_pdf_response(db: None) -> None:
    spec = Client().get("/api/openapi.json").json()
    operation = spec["paths"]["/api/v1/orders/{order_id}/receipt.pdf"]["get"]
    assert "application/pdf" in operation["responses"]["200"]["content"]
    assert {"404", "409"} <= set(operation["responses"])
    assert operation["security"]


def test_it_refuses_a_font_that_is_not_there(db: None, settings: Any) -> None:
    settings.RECEIPT_FONT = "/nonexistent/font.ttf"
    with pytest.raises(ImproperlyConfigured, match="SIMTOPUP_RECEIPT_FONT"):
        receipt_font("en")


def test_it_refuses_a_font_face_that_cannot_write_chinese(db: None, settings: Any) -> None:
    need_receipt_font()
    path = receipt_font("zh-hans").path
    settings.RECEIPT_FONT = f"{path}#99"
    with pytest.raises(ImproperlyConfigured, match="faces 0 to"):
        receipt_font("en")
    settings.RECEIPT_FONT = f"{path}#x"
    with pytest.raises(ImproperlyConfigured, match="faces 0 to"):
        receipt_font("en")
    latin = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    if latin.is_file():
        settings.RECEIPT_FONT = str(latin)
        with pytest.raises(ImproperlyConfigured, match="no Chinese glyphs"):
            receipt_font("en")


def test_it_takes_a_face_number_from_the_font_setting(db: None, settings: Any) -> None:
    need_receipt_font()
    discovered = receipt_font("zh-hans")
    settings.RECEIPT_FONT = f"{discovered.path}#0"
    assert receipt_font("zh-hant").index == 0
    assert receipt_font("zh-hant").path == discovered.path


def test_it_formats_money_and_data() -> None:
    assert format_money(3000, "CNY") == "¥30.00"
    assert format_money(5, "CNY") == "¥0.05"
    assert format_money(1500, "JPY") == "¥1,500"
    assert format_money(1000, "CHF") == "CHF 10.00"
    assert format_data(3 * 1024**3 // 2) == "1.5 GB"
    assert format_data(20 * 1024**3) == "20 GB"
    assert format_data(500 * 1024**2) == "500 MB"


def test_a_server_without_a_usable_font_answers_a_problem_not_a_crash(
    actors: Actors, settings: Any
) -> None:
    customer, client = make_customer("+8613800138111")
    order = fulfilled_order(customer, actors.device, actors.plans["day-1g"])
    settings.RECEIPT_FONT = "/nonexistent/font.ttf"
    response = client.get(f"/api/v1/orders/{order.pk}/receipt.pdf")
    assert response.status_code == 503
    assert response["Content-Type"].startswith("application/problem+json")
    assert response.json()["code"] == "receipt_unavailable"


def test_a_receipt_is_rendered_once_and_again_only_when_what_it_shows_changes(
    actors: Actors, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rendering costs a few hundred ms of CPU; the same receipt asked again comes from the
    cache, byte for byte, and a change of what it shows (here a refund) renders anew."""
    from django.core.cache import cache

    from simtopup.orders import receipts

    need_receipt_font()
    cache.clear()  # the same receipt number may have been rendered by an earlier test
    customer, _client = make_customer("+8613800138009")
    order = fulfilled_order(customer, actors.device, actors.plans["day-1g"])
    renders: list[str] = []
    real = receipts._render

    def counting(*args: Any) -> bytes:
        renders.append(args[1])
        return real(*args)

    monkeypatch.setattr(receipts, "_render", counting)
    first = render_receipt_pdf(order, "zh-hans", "Asia/Shanghai")
    again = render_receipt_pdf(Order.objects.get(pk=order.pk), "zh-hans", "Asia/Shanghai")
    assert again == first
    assert renders == ["zh-hans"]

    other_zone = render_receipt_pdf(order, "zh-hans", "Asia/Taipei")  # another local time
    assert other_zone != first
    assert renders == ["zh-hans", "zh-hans"]

    Order.objects.filter(pk=order.pk).update(status=OrderStatus.REFUNDED)
    refunded = render_receipt_pdf(Order.objects.get(pk=order.pk), "zh-hans", "Asia/Shanghai")
    assert refunded != first
    assert len(renders) == 3
