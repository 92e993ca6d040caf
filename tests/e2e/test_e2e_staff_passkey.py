"""Passkeys in a real browser (issue 14, point 1): Chromium with a virtual authenticator
(Chrome DevTools Protocol's WebAuthn domain: CTAP2, internal, resident keys, user
verification) — a staff member logged in with both factors adds a passkey under *Your
sign-in methods* with django-otp-webauthn's own script, logs out, and logs in again with the
password and the passkey. The live server is http://localhost:<port>, which browsers treat
as a secure origin for WebAuthn. No Content-Security-Policy complaint (screenshots looked at).
"""

from __future__ import annotations

from typing import Any

from django_otp_webauthn.models import WebAuthnCredential

from simtopup.audit.models import Action, AuditEntry
from simtopup.backoffice import roles
from tests.e2e.conftest import shot
from tests.staff_support import PASSWORD, add_authenticator, code_of, make_staff


def _virtual_authenticator(page: Any) -> Any:
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp


def _log_in(
    page: Any, site: str, name: str, code: str = "", passkey: bool = False, shot_as: str = ""
) -> None:
    page.goto(f"{site}/admin/login/")
    page.fill("#id_username", name)
    page.fill("#id_password", PASSWORD)
    if shot_as:
        shot(page, shot_as)
    if passkey:
        page.click("#sign-in-with-passkey")
    else:
        page.fill("#id_otp_token", code)
        page.click("#login-form input[type=submit]")


def test_a_passkey_added_in_the_browser_logs_the_staff_member_in(site: str, desktop: Any) -> None:
    assert site.startswith("http://localhost:")
    complaints: list[str] = []

    def listen(message: Any) -> None:
        if "Content Security Policy" in message.text:
            complaints.append(message.text)

    for language, added_words, home_words in (
        ("en", "Passkeys", "Your sign-in methods"),
        ("zh-hans", "通行密钥", "你的登录方式"),
    ):
        sam = make_staff(f"sam-{language}", roles.SUPPORT)
        device = add_authenticator(sam)
        page = desktop(language)
        page.on("console", listen)
        page.on("pageerror", lambda error: complaints.append(str(error)))  # the scripts'
        page.on(
            "response",
            lambda r: complaints.append(f"{r.status} {r.url}") if r.status >= 400 else None,
        )
        _virtual_authenticator(page)

        _log_in(page, site, sam.username, code_of(device))
        page.wait_for_url(f"{site}/admin/")
        page.click("#own-sign-in-methods a")
        page.wait_for_url(f"{site}/admin/sign-in-methods/")
        assert added_words in page.content()
        page.click("#passkey-register-button")
        # The library's script posts the new passkey; ours reloads the page to list it.
        page.wait_for_selector("#passkeys")
        passkey = WebAuthnCredential.objects.get(user=sam)
        assert passkey.name in page.content()
        shot(page, f"staff-passkey-methods-{language}")
        assert AuditEntry.objects.filter(
            action=Action.STAFF_PASSKEY, object_id=str(sam.pk)
        ).exists()

        page.click("#logout-form button")
        page.wait_for_load_state()
        _log_in(page, site, sam.username, passkey=True, shot_as=f"staff-login-{language}")
        page.wait_for_url(f"{site}/admin/login/passkey/")
        page.wait_for_selector("#passkey-verification-button")
        shot(page, f"staff-passkey-login-{language}")
        page.click("#passkey-verification-button")
        page.wait_for_url(f"{site}/admin/")
        assert home_words in page.content()
        login = (
            AuditEntry.objects.filter(action=Action.STAFF_LOGIN, object_id=str(sam.pk))
            .order_by("pk")
            .last()
        )
        assert login is not None
        assert login.after == {"method": "passkey"}
        passkey.refresh_from_db()
        assert passkey.sign_count >= 1 or passkey.last_used_at is not None
    assert complaints == []
