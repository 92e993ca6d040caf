"""The console's home lists the work pages each role may open, and no others."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import transaction
from django.urls import reverse

from simtopup.audit.models import Action, AuditEntry
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


def test_console_times_are_in_the_operators_zone_and_say_so() -> None:
    """The stock lists show times in DISPLAY_TIME_ZONE (Beijing by default), not unlabelled
    UTC, and the header says which zone."""
    moment = datetime(2026, 12, 4, 20, 30, tzinfo=UTC)  # 04:30 the next day in Beijing
    client = console_client(make_staff("adm-zone", "admin"))
    with transaction.atomic():
        AuditEntry.objects.create(
            at=moment, actor="cli:late", action=Action.RECORD_CHANGE, object_type="test"
        )
    url = reverse("admin:audit_auditentry_changelist")
    zh = client.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "2026年12月5日 04:30" in zh  # the list's "when" column, in Beijing time
    assert '<span id="console-zone">(时间为北京时间)</span>' in zh
    en = client.get("/admin/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert '<span id="console-zone">(times in Beijing time)</span>' in en
