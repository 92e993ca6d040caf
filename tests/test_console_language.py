"""The operator console speaks the staff member's language throughout: the home page's and the
sidebar's section names and model names, the lists' column headers and filters and the
forms' labels are in Chinese for zh-hans and zh-hant (proper names such as ICCID stay), and in
English for en.

The captions come from each app's ``verbose_name`` (the libraries' apps through
backoffice/library_apps.py), the model names from each model's ``Meta``, the headers and
labels from the fields' ``verbose_name`` and the admin's ``description``s.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.test import Client, TestCase
from django.urls import reverse

from simtopup.devices.models import GoodwillCredit
from simtopup.payments.models import Payment, Refund
from simtopup.payments.staff_refunds import refund_by_staff
from simtopup.support.actions import create_ticket
from tests.payments_support import sandbox_direct
from tests.staff_support import console_client, make_staff
from tests.support import Actors
from tests.test_desk_refunds import paid_by_card

pytestmark = pytest.mark.usefixtures("sandbox_direct")
__all__ = ["sandbox_direct"]

# Proper names and codes a Chinese page shows as they are.
PROPER_NAMES = {"ID", "ICCID", "EID", "IMEI", "IP"}
# None left: django_otp's plain-string model names are renamed by backoffice/library_apps.py.
LIBRARY_UNTRANSLATED: set[str] = set()

CHANGELISTS = [
    "admin:devices_device_changelist",
    "admin:orders_order_changelist",
    "admin:payments_payment_changelist",
    "admin:payments_refund_changelist",
    "admin:resellers_reseller_changelist",
    "admin:audit_auditentry_changelist",
    "admin:support_supportticket_changelist",
    "admin:ledger_transfer_changelist",
    "admin:catalog_plan_changelist",
    "admin:devices_goodwillcredit_changelist",
]


class Captions(HTMLParser):
    """The texts a staff member reads as names: app captions, model links (home page and
    sidebar), column headers, filter titles and form labels."""

    WATCHED = {"caption": "caption", "label": "label"}

    def __init__(self) -> None:
        super().__init__()
        self.found: dict[str, list[str]] = {
            "caption": [],
            "model": [],
            "column": [],
            "filter": [],
            "label": [],
        }
        self._kind: str | None = None
        self._tag = ""
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "details" and attr.get("data-filter-title"):
            self.found["filter"].append(str(attr["data-filter-title"]))
        if self._kind is not None:
            return
        kind = self.WATCHED.get(tag)
        if tag == "th":
            kind = {"row": "model", "col": "column"}.get(str(attr.get("scope")))
        if kind:
            self._kind, self._tag, self._text = kind, tag, []

    def handle_endtag(self, tag: str) -> None:
        if self._kind is not None and tag == self._tag:
            text = " ".join("".join(self._text).split()).rstrip(":：").strip()
            if self._kind == "column":  # a sorted column's priority comes first: "2 ID"
                text = re.sub(r"^\d+ ", "", text)
            if text:
                self.found[self._kind].append(text)
            self._kind = None

    def handle_data(self, data: str) -> None:
        if self._kind is not None:
            self._text.append(data)


def captions(html: str) -> dict[str, list[str]]:
    parser = Captions()
    parser.feed(html)
    return parser.found


def english(text: str) -> bool:
    """Plain ASCII words (not a proper name or a number): left untranslated."""
    return (
        text.isascii()
        and re.search("[A-Za-z]", text) is not None
        and text not in PROPER_NAMES
        and text not in LIBRARY_UNTRANSLATED
    )


@pytest.fixture
def pages(actors: Actors) -> tuple[Client, list[str]]:
    """An administrator's browser and the pages to read: the home page, lists with rows (so
    they have column headers) and some of those rows' pages."""
    order = paid_by_card(actors, "+8613500000071")
    with TestCase.captureOnCommitCallbacks(execute=True):
        refund = refund_by_staff(order, 100, "provider", "test", "staff:1:alice", "10.0.0.9")
    ticket = create_ticket(reply_channel="email", reply_to="a@example.com", message="help")
    admin = make_staff("ada", "admin")
    GoodwillCredit.objects.create(
        device=actors.device, amount=500, currency="CNY", reason="test", requested_by=admin
    )
    client = console_client(admin)
    urls = ["/admin/", *(reverse(name) for name in CHANGELISTS)]
    urls += [
        reverse("admin:devices_device_change", args=[actors.device.pk]),
        reverse("admin:orders_order_change", args=[order.pk]),
        reverse("admin:payments_payment_change", args=[Payment.objects.get(order=order).pk]),
        reverse("admin:payments_refund_change", args=[Refund.objects.get(pk=refund.pk).pk]),
        reverse("admin:resellers_reseller_change", args=[actors.alice.pk]),
        reverse("admin:support_supportticket_change", args=[ticket.pk]),
    ]
    return client, urls


def read(client: Client, url: str, language: str) -> dict[str, list[str]]:
    response = client.get(url, HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == 200, url
    return captions(response.content.decode())


@pytest.mark.parametrize("language", ["zh-hans", "zh-hant"])
def test_the_console_names_everything_in_chinese(
    pages: tuple[Client, list[str]], language: str
) -> None:
    client, urls = pages
    seen: dict[str, int] = {}
    untranslated: dict[str, set[str]] = {}
    for url in urls:
        for kind, texts in read(client, url, language).items():
            seen[kind] = seen.get(kind, 0) + len(texts)
            for text in texts:
                if english(text):
                    untranslated.setdefault(f"{url} {kind}", set()).add(text)
    assert untranslated == {}
    # Every kind of name was read (the pages did show what this test looks at).
    assert all(seen[kind] for kind in ("caption", "model", "column", "filter", "label")), seen


def test_the_home_page_names_the_sections_in_each_language(pages: tuple[Client, list[str]]) -> None:
    client, _urls = pages
    hans = read(client, "/admin/", "zh-hans")
    hant = read(client, "/admin/", "zh-hant")
    en = read(client, "/admin/", "en")
    for words, found in (
        (["上网卡", "套餐与价格", "客服", "代理商", "身份验证器应用", "通行密钥"], hans),
        (["上網卡", "方案與價格", "客服", "代理商", "驗證器 App", "通行金鑰"], hant),
        (["Data cards", "Plans and prices", "Customer service", "Resellers", "Passkeys"], en),
    ):
        for word in words:
            assert word in found["caption"], (word, found["caption"])
    assert "Webhook deliveries" in en["model"]
    assert "Webhook 通知投递" in hans["model"]


def test_in_english_the_console_is_english(pages: tuple[Client, list[str]]) -> None:
    client, urls = pages
    chinese: dict[str, set[str]] = {}
    for url in urls:
        for kind, texts in read(client, url, "en").items():
            for text in texts:
                if re.search(r"[\u4e00-\u9fff]", text):
                    chinese.setdefault(f"{url} {kind}", set()).add(text)
    assert chinese == {}


@pytest.mark.parametrize(
    ("language", "words"),
    [
        ("zh-hans", ["已到账", "成功", "退款处理中", "使用中"]),
        ("zh-hant", ["已到帳", "成功", "退款處理中", "使用中"]),
        ("en", ["fulfilled", "succeeded", "pending", "active"]),
    ],
)
def test_status_values_in_the_lists_speak_the_staff_members_language(
    pages: tuple[Client, list[str]], language: str, words: list[str]
) -> None:
    """The values of the lists' status columns (choice labels), not only their headers."""
    client, _urls = pages
    html = "".join(
        client.get(reverse(name), HTTP_ACCEPT_LANGUAGE=language).content.decode()
        for name in (
            "admin:orders_order_changelist",
            "admin:payments_payment_changelist",
            "admin:payments_refund_changelist",
            "admin:devices_device_changelist",
        )
    )
    for word in words:
        assert f">{word}<" in html, (language, word)
