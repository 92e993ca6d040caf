"""The console's home lists the work pages each role may open, and no others."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.staff_support import console_client, make_staff

pytestmark = pytest.mark.django_db

FINANCE_PAGES = (
    "admin:desk-goodwill-list",
    "admin:finance-reconciliation",
    "admin:finance-deposits",
    "admin:finance-statements",
    "admin:finance-ledger-days",
)


@pytest.mark.parametrize("language", ["zh-hans", "zh-hant", "en"])
def test_finance_home_links_every_finance_page(language: str) -> None:
    client = console_client(make_staff("fin-home", "finance"))
    html = client.get("/admin/", HTTP_ACCEPT_LANGUAGE=language).content.decode()
    for name in FINANCE_PAGES:
        url = reverse(name)
        assert f'href="{url}"' in html, name
        assert client.get(url, HTTP_ACCEPT_LANGUAGE=language).status_code == 200, name
    assert f'href="{reverse("admin:sign-in-methods")}"' in html


def test_support_home_links_no_finance_page() -> None:
    client = console_client(make_staff("sup-home", "support"))
    html = client.get("/admin/").content.decode()
    for name in FINANCE_PAGES:
        assert f'href="{reverse(name)}"' not in html, name
    assert f'href="{reverse("admin:sign-in-methods")}"' in html
    assert 'name="q"' in html  # the desk's search box
