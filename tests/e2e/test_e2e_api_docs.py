"""/api/docs in a real browser: Swagger UI loads from our own static files under our
Content Security Policy and lists the reseller top-up operation, with no console error."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import shot


def test_api_docs_render_under_the_csp(site: str, desktop: Any) -> None:
    page = desktop("en")
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(site) else outside.append(r.url))
    response = page.goto(f"{site}/api/docs")
    assert response is not None
    assert response.status == 200
    assert "script-src 'self' 'nonce-" in response.headers["content-security-policy"]
    # Swagger UI fetched the document and drew the operations from it.
    operation = page.locator("#operations-reseller-simtopup_api_reseller_create_topup")
    operation.wait_for()
    assert "/reseller/v1/topups" in operation.inner_text()
    assert "Top up a device from the float" in operation.inner_text()
    operation.locator(".opblock-summary").first.click()
    page.locator("#operations-reseller-simtopup_api_reseller_create_topup .parameters").wait_for()
    assert "Idempotency-Key" in operation.inner_text()
    shot(page, "api-docs-desktop-en")
    assert errors == [], errors
    assert outside == [], outside
