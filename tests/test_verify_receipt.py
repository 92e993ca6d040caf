"""The public receipt verification page: ``/verify/receipt/<no>`` and ``/verify/receipt?no=``."""

from __future__ import annotations

import re
from typing import Any
from unittest import mock

import pytest
from django.test import Client
from django.utils import timezone, translation
from stdnum import luhn

from simtopup.core.errors import DomainError
from simtopup.orders.models import Order, OrderStatus
from simtopup.orders.receipts import parse_receipt_number
from tests.receipt_support import fulfilled_order, make_customer, paid_order
from tests.support import Actors


def outcome(response: object) -> str:
    match = re.search(r'data-outcome="([a-z_]+)"', response.content.decode())  # type: ignore[attr-defined]
    assert match, "no result on the page"
    return match.group(1)


def other_number(receipt_no: str, *, valid: bool) -> str:
    """A receipt number next to ``receipt_no`` (another order id): with a correct check digit
    if ``valid``, else with a wrong one."""
    date, number, _check = receipt_no[1:].split("-")
    body = f"{date}{int(number) + 500:08d}"
    check = int(luhn.calc_check_digit(body))
    if not valid:
        check = (check + 3) % 10
    return f"R{body[:8]}-{body[8:]}-{check}"


@pytest.fixture
def order(actors: Actors) -> Order:
    customer, _client = make_customer("+8613800138001", time_zone="Asia/Shanghai")
    return fulfilled_order(customer, actors.device, actors.plans["month-20g"])


def test_it_confirms_a_genuine_receipt(order: Order, actors: Actors) -> None:
    response = Client().get(f"/verify/receipt/{order.receipt_no}?lang=en")

    assert response.status_code == 200
    assert outcome(response) == "genuine"
    page = response.content.decode()
    assert "Genuine receipt" in page
    assert order.receipt_no in page
    assert "2026-11-26 16:00 (Beijing time)" in page
    assert "Asia/Shanghai" not in page
    assert actors.device.masked in page
    assert actors.device.iccid not in page  # never the full identifier
    assert "month-20g<br>" in page
    assert "¥59.00" in page
    assert "Credited" in page
    assert response["Content-Language"] == "en"
    assert "noindex" in response["X-Robots-Tag"]


def test_it_speaks_the_visitors_language(order: Order) -> None:
    by_query = Client().get(f"/verify/receipt/{order.receipt_no}?lang=zh-hans")
    by_header = Client().get(
        f"/verify/receipt/{order.receipt_no}", headers={"Accept-Language": "zh-CN,zh;q=0.9"}
    )
    traditional = Client().get(
        f"/verify/receipt/{order.receipt_no}", headers={"Accept-Language": "zh-TW"}
    )

    for response in (by_query, by_header):
        assert response.status_code == 200
        assert outcome(response) == "genuine"
        page = response.content.decode()
        assert '<html lang="zh-Hans">' in page
        assert "month-20g 简" in page
        with translation.override("zh-hans"):
            assert translation.gettext("Genuine receipt") in page
            assert translation.gettext("Receipt number") in page
    assert "month-20g 繁" in traditional.content.decode()
    assert '<html lang="zh-Hant">' in traditional.content.decode()


def test_it_accepts_the_number_typed_into_the_form(order: Order) -> None:
    assert order.receipt_no
    typed = [
        order.receipt_no,
        order.receipt_no.lower(),
        " " + order.receipt_no.replace("-", " ") + " ",
        order.receipt_no.replace("-", ""),
        # Full-width characters, as a Chinese input method may produce them.
        "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in order.receipt_no),
    ]
    for number in typed:
        response = Client().get("/verify/receipt", {"no": number, "lang": "en"})
        assert response.status_code == 200, number
        assert outcome(response) == "genuine", number
        assert order.receipt_no in response.content.decode()


def test_it_shows_the_empty_form(db: None) -> None:
    response = Client().get("/verify/receipt?lang=en")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'name="no"' in page
    assert "data-outcome" not in page


def test_it_says_a_refunded_receipt_is_no_proof_of_payment(order: Order) -> None:
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.REFUNDED)

    response = Client().get(f"/verify/receipt/{order.receipt_no}?lang=en")

    assert response.status_code == 200
    assert outcome(response) == "refunded"
    page = response.content.decode()
    assert "refunded" in page
    assert "Refunded" in page
    assert "Credited" not in page


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_it_warns_that_an_unknown_receipt_may_be_fake(order: Order, language: str) -> None:
    assert order.receipt_no
    unknown = other_number(order.receipt_no, valid=True)

    response = Client().get(f"/verify/receipt/{unknown}?lang={language}")

    assert response.status_code == 404
    assert outcome(response) == "not_found"
    page = response.content.decode()
    with translation.override(language):
        assert translation.gettext("Receipt not found") in page
    # Nothing about any real order leaks.
    assert order.receipt_no not in page
    assert order.device.masked not in page
    assert "¥" not in page


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_it_catches_a_mistyped_check_digit(order: Order, language: str) -> None:
    assert order.receipt_no
    body, check = order.receipt_no.rsplit("-", 1)
    typo = f"{body}-{(int(check) + 1) % 10}"

    response = Client().get("/verify/receipt", {"no": typo, "lang": language})

    assert response.status_code == 422
    assert outcome(response) == "check_digit"
    page = response.content.decode()
    with translation.override(language):
        assert translation.gettext("Please check the number") in page
    assert order.device.masked not in page
    assert "¥" not in page


@pytest.mark.parametrize("number", ["hello", "R2026", "R20261126-00000001", "x" * 500, "<b>1</b>"])
def test_it_rejects_what_is_not_a_receipt_number(db: None, number: str) -> None:
    response = Client().get("/verify/receipt", {"no": number, "lang": "en"})

    assert response.status_code == 404
    assert outcome(response) == "not_found"
    page = response.content.decode()
    assert "Receipt numbers look like" in page
    assert "<b>1</b>" not in page  # escaped


def test_it_only_answers_get(order: Order) -> None:
    assert Client().post(f"/verify/receipt/{order.receipt_no}").status_code == 405


def test_it_knows_no_receipt_for_an_order_not_yet_fulfilled(actors: Actors) -> None:
    customer, _client = make_customer("+8613800138001")
    pending = paid_order(customer, actors.device, actors.plans["day-1g"])
    from simtopup.orders.actions import receipt_number

    number = receipt_number(pending)  # what its receipt would be called

    response = Client().get(f"/verify/receipt/{number}?lang=en")

    assert response.status_code == 404
    assert outcome(response) == "not_found"


def test_it_parses_receipt_numbers() -> None:
    body = "2026112600000042"
    check = luhn.calc_check_digit(body)
    canonical = f"R20261126-00000042-{check}"
    assert parse_receipt_number(canonical) == canonical
    assert parse_receipt_number(f"r 20261126 0000000042 {check}") == canonical
    assert parse_receipt_number(f"20261126-42-{check}") == canonical
    long_body = "20261126123456789"
    long_check = luhn.calc_check_digit(long_body)
    assert parse_receipt_number(f"R20261126-123456789-{long_check}") == (
        f"R20261126-123456789-{long_check}"
    )
    with pytest.raises(DomainError) as exc:
        parse_receipt_number(f"R20261126-00000042-{(int(check) + 1) % 10}")
    assert exc.value.code == "receipt_check_digit_mismatch"
    for bad in (
        "",
        "R",
        "R20261126-00000042",
        "S20261126-00000042-1",
        "R2026-1126-42-1",
        "R20261126-0-0-0",
        "R20261126-0000000000000042-1",
        "R202611260000042",
    ):
        with pytest.raises(DomainError) as exc:
            parse_receipt_number(bad)
        assert exc.value.code == "invalid_receipt_number", bad


def test_walking_through_receipt_numbers_is_refused(actors: Actors, settings: Any) -> None:
    settings.VERIFY_IP_LIMITS = ["3/60"]
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    # The limits count in fixed windows: keep every request inside one minute.
    with mock.patch("django.utils.timezone.now", return_value=timezone.now().replace(second=5)):
        for n in range(3):
            response = client.get(f"/verify/receipt/R20261126-{n:08d}-0")
            assert response.status_code in (404, 422)
        refused = client.get("/verify/receipt/R20261126-00000042-7")
        assert refused.status_code == 429
        assert 'data-outcome="too_many_requests"' in refused.content.decode()
        assert int(refused["Retry-After"]) > 0
        # Another address is not affected; agent lookups count against the same budget.
        other = Client(REMOTE_ADDR="10.9.8.7")
        assert other.get("/verify/agent", {"code": "AGX"}).status_code == 404
        assert client.get("/verify/agent", {"code": "AGX"}).status_code == 429
