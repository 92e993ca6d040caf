"""Public verification pages in a real browser (phone, zh-Hans; desktop, English)."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import shot


def test_an_unknown_receipt_is_flagged_in_chinese_on_a_phone(site: str, phone: Any) -> None:
    page = phone("zh-hans")
    page.goto(f"{site}/verify/receipt")
    page.fill("input[name=no]", "R20261126-00000042-7")
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    text = page.inner_text("main")
    assert "R20261126-00000042-7" in text or "收据" in text
    assert page.locator("html").get_attribute("lang") == "zh-Hans"
    shot(page, "verify-receipt-unknown-phone-zh-hans")
