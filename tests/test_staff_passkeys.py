"""Passkeys as a staff member's second factor (issue 14, point 1; backoffice/passkeys.py):
added from *Your sign-in methods* by a staff member logged in with both factors, used after
the password at the console's login, removed; each on the audit log. The ceremonies run
against a software authenticator (tests/webauthn_soft.py): the server's checks are real."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client
from django_otp_webauthn.models import WebAuthnCredential

from simtopup.audit.models import Action, AuditEntry
from simtopup.backoffice import roles
from tests.staff_support import PASSWORD, add_authenticator, console_client, make_staff
from tests.webauthn_soft import SoftAuthenticator

ORIGIN = "http://localhost:8000"


@pytest.fixture(autouse=True)
def _site(settings: Any) -> None:
    settings.SITE_URL = ORIGIN


def post_json(client: Client, path: str, body: Any = None) -> Any:
    return client.post(
        path,
        json.dumps(body) if body is not None else "",
        content_type="application/json",
        HTTP_ACCEPT="application/json",
    )


def add_passkey(client: Client, authenticator: SoftAuthenticator) -> Any:
    options = post_json(client, "/admin/sign-in-methods/passkeys/begin/")
    assert options.status_code == 200, options.content
    return post_json(
        client,
        "/admin/sign-in-methods/passkeys/complete/",
        authenticator.register(options.json()),
    )


def password_step(client: Client, name: str, password: str = PASSWORD) -> Any:
    return client.post(
        "/admin/login/",
        {"username": name, "password": password, "otp_token": "", "method": "passkey"},
    )


def in_console(client: Client) -> bool:
    return client.get("/admin/").status_code == 200


def test_a_staff_member_adds_a_passkey_then_logs_in_with_password_and_passkey(
    db: None,
) -> None:
    sam = make_staff("sam", roles.SUPPORT)
    console = console_client(sam)
    page = console.get("/admin/sign-in-methods/").content.decode()
    # The library's script from our own static files, its settings in a JSON script tag.
    assert 'id="passkey-register-button"' in page
    assert 'id="otp_webauthn_config" type="application/json"' in page
    assert "/static/django_otp_webauthn/otp_webauthn_register.js" in page
    authenticator = SoftAuthenticator(ORIGIN, "localhost")
    added = add_passkey(console, authenticator)
    assert added.status_code == 200, added.content
    passkey = WebAuthnCredential.objects.get(user=sam)
    assert added.json() == {"id": passkey.pk}
    entry = AuditEntry.objects.get(action=Action.STAFF_PASSKEY, object_id=str(sam.pk))
    assert entry.actor == f"staff:{sam.pk}:sam"
    assert entry.after == {"passkey": passkey.name, "passkey_id": passkey.pk}
    assert passkey.name in console.get("/admin/sign-in-methods/").content.decode()

    # The login: the password, then the passkey instead of a code.
    browser = Client()
    step = password_step(browser, "sam")
    assert step.status_code == 302
    assert step["Location"] == "/admin/login/passkey/"
    assert not in_console(browser)
    page = browser.get("/admin/login/passkey/").content.decode()
    assert 'id="passkey-verification-button"' in page
    assert "/static/django_otp_webauthn/otp_webauthn_auth.js" in page
    options = post_json(browser, "/admin/login/passkey/begin/").json()
    # Only sam's passkeys are offered: never a passwordless, discoverable login.
    assert [c["id"] for c in options["allowCredentials"]] == [authenticator.b64_id]
    done = post_json(
        browser, "/admin/login/passkey/complete/?next=/admin/", authenticator.sign(options)
    )
    assert done.status_code == 200, done.content
    assert done.json()["redirect_url"] == "/admin/"
    assert in_console(browser)  # a passkey verifies the session like a code
    login = (
        AuditEntry.objects.filter(action=Action.STAFF_LOGIN, object_id=str(sam.pk))
        .order_by("pk")
        .last()
    )
    assert login is not None
    assert login.after == {"method": "passkey"}
    passkey.refresh_from_db()
    assert passkey.sign_count == 1


def test_a_forged_or_replayed_assertion_logs_nobody_in_and_is_a_failed_login(db: None) -> None:
    sam = make_staff("sam", roles.SUPPORT)
    authenticator = SoftAuthenticator(ORIGIN, "localhost")
    assert add_passkey(console_client(sam), authenticator).status_code == 200
    browser = Client()
    password_step(browser, "sam")
    options = post_json(browser, "/admin/login/passkey/begin/").json()
    forged = post_json(
        browser, "/admin/login/passkey/complete/", authenticator.sign(options, forge=True)
    )
    assert forged.status_code == 422
    assert not in_console(browser)
    # The challenge was used up: the right signature over it is refused now too.
    replay = post_json(browser, "/admin/login/passkey/complete/", authenticator.sign(options))
    assert replay.status_code == 400
    assert not in_console(browser)
    # Another site's page (a phishing origin) is refused.
    options = post_json(browser, "/admin/login/passkey/begin/").json()
    phished = post_json(
        browser,
        "/admin/login/passkey/complete/",
        authenticator.sign(options, origin="https://console.example.net"),
    )
    assert phished.status_code == 422
    assert not in_console(browser)
    failed = AuditEntry.objects.filter(action=Action.STAFF_LOGIN_FAILED, object_id=str(sam.pk))
    assert failed.count() == 3


def test_no_passkey_step_without_the_password(db: None) -> None:
    sam = make_staff("sam", roles.SUPPORT)
    authenticator = SoftAuthenticator(ORIGIN, "localhost")
    assert add_passkey(console_client(sam), authenticator).status_code == 200
    stranger = Client()
    # Passwordless is off: no options, no login without the password step.
    assert post_json(stranger, "/admin/login/passkey/begin/").status_code == 403
    assert stranger.get("/admin/login/passkey/")["Location"] == "/admin/login/"
    wrong = password_step(stranger, "sam", password="wrong-password")
    assert wrong.status_code == 200
    assert post_json(stranger, "/admin/login/passkey/begin/").status_code == 403
    # A staff member without a passkey who asks for one gets the usual refusal.
    ana = make_staff("ana", roles.SUPPORT)
    add_authenticator(ana)
    answer = password_step(Client(), "ana")
    assert answer.status_code == 200
    assert "errornote" in answer.content.decode()


def test_only_a_staff_member_logged_in_with_both_factors_adds_a_passkey(db: None) -> None:
    sam = make_staff("sam", roles.SUPPORT)
    add_authenticator(sam)
    half = Client()
    half.force_login(sam)  # the password only
    assert post_json(half, "/admin/sign-in-methods/passkeys/begin/").status_code == 403
    assert post_json(Client(), "/admin/sign-in-methods/passkeys/begin/").status_code == 403
    assert half.get("/admin/sign-in-methods/").status_code == 302
    assert not WebAuthnCredential.objects.exists()


def test_a_staff_member_removes_their_passkey_on_the_record_not_anothers(db: None) -> None:
    sam = make_staff("sam", roles.SUPPORT)
    console = console_client(sam)
    assert add_passkey(console, SoftAuthenticator(ORIGIN, "localhost")).status_code == 200
    passkey = WebAuthnCredential.objects.get(user=sam)
    ana = console_client(make_staff("ana", roles.ADMIN))
    remove = f"/admin/sign-in-methods/passkeys/{passkey.pk}/remove/"
    assert ana.post(remove).status_code == 404  # one's own passkeys only
    assert console.get(remove).status_code == 405
    answer = console.post(remove)
    assert answer.status_code == 302
    assert answer["Location"] == "/admin/sign-in-methods/"
    assert not WebAuthnCredential.objects.filter(pk=passkey.pk).exists()
    removed = (
        AuditEntry.objects.filter(action=Action.STAFF_PASSKEY, object_id=str(sam.pk))
        .order_by("pk")
        .last()
    )
    assert removed is not None
    assert removed.before == {"passkey": passkey.name, "passkey_id": passkey.pk}
    assert removed.after == {"passkey": "removed"}
    assert "no-passkeys" in console.get("/admin/sign-in-methods/").content.decode()


def test_passkeys_are_not_offered_where_browsers_refuse_them(db: None, settings: Any) -> None:
    settings.SITE_URL = "http://127.0.0.1:8000"  # plain http, not localhost
    page = Client().get("/admin/login/").content.decode()
    assert 'id="sign-in-with-passkey"' not in page
    sam = console_client(make_staff("sam", roles.SUPPORT))
    page = sam.get("/admin/sign-in-methods/").content.decode()
    assert "passkey-register-button" not in page
    assert "https" in page


def test_the_pages_speak_the_three_languages(db: None) -> None:
    sam = make_staff("sam", roles.SUPPORT)
    assert add_passkey(console_client(sam), SoftAuthenticator(ORIGIN, "localhost")).status_code
    for language, login_words, page_words, step_words in (
        ("zh-hans", "使用通行密钥登录", "你的登录方式", "你的密码正确"),
        ("zh-hant", "使用通行金鑰登入", "您的登入方式", "您的密碼正確"),
        ("en", "Sign in with a passkey", "Your sign-in methods", "Your password is right"),
    ):
        assert (
            login_words
            in Client(HTTP_ACCEPT_LANGUAGE=language).get("/admin/login/").content.decode()
        ), language
        console = console_client(sam, HTTP_ACCEPT_LANGUAGE=language)
        assert page_words in console.get("/admin/sign-in-methods/").content.decode(), language
        assert page_words in console.get("/admin/").content.decode(), language
        browser = Client(HTTP_ACCEPT_LANGUAGE=language)
        password_step(browser, "sam")
        assert step_words in browser.get("/admin/login/passkey/").content.decode(), language
        catalog = browser.get("/admin/passkeys/jsi18n/")
        assert catalog.status_code == 200
        if language != "en":
            assert "Registration successful!" in catalog.content.decode(), language


def test_an_admin_removes_a_staff_members_lost_passkey_on_the_record(db: None) -> None:
    sam = make_staff("sam", roles.SUPPORT)
    assert add_passkey(console_client(sam), SoftAuthenticator(ORIGIN, "localhost")).status_code
    passkey = WebAuthnCredential.objects.get(user=sam)
    delete = f"/admin/django_otp_webauthn/webauthncredential/{passkey.pk}/delete/"
    assert console_client(sam).post(delete, {"post": "yes"}).status_code == 403
    admin = console_client(make_staff("ada", roles.ADMIN))
    assert admin.get("/admin/django_otp_webauthn/webauthncredential/add/").status_code == 403
    assert admin.post(delete, {"post": "yes"}).status_code == 302
    assert not WebAuthnCredential.objects.filter(pk=passkey.pk).exists()
    removed = AuditEntry.objects.filter(action=Action.STAFF_PASSKEY, after={"passkey": "removed"})
    assert removed.get().object_id == str(sam.pk)


def test_the_login_like_pages_show_no_stray_nonce_text(db: None) -> None:
    """admin/login.html prints ``{% csp_nonce_attr form.media %}``: a page without a form
    showed ``nonce="…"`` as text above the box (seen in the browser's screenshot)."""
    sam = make_staff("sam", roles.SUPPORT)
    assert add_passkey(console_client(sam), SoftAuthenticator(ORIGIN, "localhost")).status_code
    browser = Client()
    password_step(browser, "sam")
    for page in (
        browser.get("/admin/login/passkey/").content.decode(),
        Client().get("/admin/enrol/not-a-link/").content.decode(),
    ):
        head = page[: page.index("</head>")]
        assert not re.search(r'\n\s*nonce="[^"]+"\s*\n', head)


def test_a_staff_member_makes_new_recovery_codes_and_the_old_ones_stop(
    db: None, settings: Any
) -> None:
    from django_otp.plugins.otp_static.models import StaticToken

    # django_otp slows a device down after a wrong code: off here, where a right one follows.
    settings.OTP_STATIC_THROTTLE_FACTOR = 0

    from simtopup.backoffice.two_factor import new_recovery_codes

    sam = make_staff("sam", roles.SUPPORT)
    device = add_authenticator(sam)
    old = new_recovery_codes(sam)
    console = console_client(sam, HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert "剩余恢复码：10" in console.get("/admin/sign-in-methods/").content.decode()
    assert console.get("/admin/sign-in-methods/recovery-codes/").status_code == 405
    answer = console.post("/admin/sign-in-methods/recovery-codes/")
    assert answer["Location"] == "/admin/enrol/recovery-codes/"
    page = console.get("/admin/enrol/recovery-codes/").content.decode()
    assert "你的新恢复码" in page
    codes = re.findall(r"<li><code>(\w+)</code></li>", page)
    assert len(codes) == 10
    assert not set(codes) & set(old)
    assert set(StaticToken.objects.filter(device__user=sam).values_list("token", flat=True)) == set(
        codes
    )
    entry = (
        AuditEntry.objects.filter(action=Action.STAFF_CHANGE, object_id=str(sam.pk))
        .order_by("pk")
        .last()
    )
    assert entry is not None
    assert entry.after == {"recovery_codes": "replaced (10)"}
    assert entry.actor == f"staff:{sam.pk}:sam"
    # An old code no longer logs in; a new one does.
    for code, status in ((old[0], 200), (codes[0], 302)):
        answer = Client().post(
            "/admin/login/", {"username": "sam", "password": PASSWORD, "otp_token": code}
        )
        assert answer.status_code == status, code
    assert device.pk
    # Only with both factors.
    half = Client()
    half.force_login(sam)
    assert half.post("/admin/sign-in-methods/recovery-codes/")["Location"].startswith(
        "/admin/login/"
    )
