"""Every staff login to the console needs a second factor (issue 14, point 1): the code of an
authenticator app (TOTP, computed here with django_otp's own TOTP) or a recovery code (once).
A first login enrols the authenticator with a QR code; failed logins are rate-limited."""

from __future__ import annotations

import re
import time

from django.contrib.auth.models import User
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from simtopup.audit.models import Action, AuditEntry
from simtopup.backoffice import roles
from simtopup.backoffice.idle import SEEN_KEY
from tests.staff_support import PASSWORD, add_authenticator, code_of, console_client, make_staff


def log_in(client: Client, name: str, token: str = "", password: str = PASSWORD):
    return client.post(
        "/admin/login/", {"username": name, "password": password, "otp_token": token}
    )


def in_console(client: Client) -> bool:
    return client.get("/admin/").status_code == 200


def test_the_password_alone_or_a_wrong_code_is_refused_and_the_right_code_lets_in(
    db: None, settings
) -> None:
    # django_otp also slows a device down after a wrong code (seconds, doubling): off here,
    # where the right code follows at once.
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    user = make_staff("sam", roles.SUPPORT)
    device = add_authenticator(user)
    client = Client()

    answer = log_in(client, "sam")
    assert answer.status_code == 200
    assert "errornote" in answer.content.decode()
    assert not in_console(client)
    assert log_in(client, "sam", "000000").status_code == 200
    assert not in_console(client)
    assert AuditEntry.objects.filter(action=Action.STAFF_LOGIN_FAILED).count() == 2

    answer = log_in(client, "sam", code_of(device))
    assert answer.status_code == 302
    assert answer["Location"] == "/admin/"
    assert in_console(client)
    assert AuditEntry.objects.filter(action=Action.STAFF_LOGIN, object_id=str(user.pk)).exists()


def test_a_password_login_without_the_factor_is_not_a_console_login(db: None) -> None:
    user = make_staff("sam", roles.SUPPORT)
    add_authenticator(user)
    client = Client()
    client.force_login(user)  # password checked, no second factor in the session
    answer = client.get("/admin/")
    assert answer.status_code == 302
    assert answer["Location"].startswith("/admin/login/")


def test_a_first_login_enrols_an_authenticator_with_a_qr_code_and_recovery_codes(
    db: None, settings
) -> None:
    settings.OTP_TOTP_THROTTLE_FACTOR = 0  # a wrong code, then the right one at once
    settings.STAFF_ENROL_AT_LOGIN = True
    user = make_staff("fay", roles.FINANCE)
    client = Client()
    answer = log_in(client, "fay")
    assert answer.status_code == 302
    assert answer["Location"] == "/admin/enrol/"
    assert not in_console(client)  # not in before the authenticator is confirmed

    page = client.get("/admin/enrol/").content.decode()
    assert "<svg" in page
    assert 'id="otp-secret"' in page
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    assert client.get("/admin/enrol/").status_code == 200
    assert TOTPDevice.objects.filter(user=user).count() == 1  # the same QR code again

    assert client.post("/admin/enrol/", {"otp_token": "123"}).status_code == 200
    answer = client.post("/admin/enrol/", {"otp_token": code_of(device)})
    assert answer.status_code == 302
    assert answer["Location"] == "/admin/enrol/recovery-codes/"
    page = client.get("/admin/enrol/recovery-codes/").content.decode()
    codes = re.findall(r"<li><code>(\w+)</code></li>", page)
    assert len(codes) == 10
    # Shown once.
    assert client.get("/admin/enrol/recovery-codes/")["Location"] == "/admin/"
    assert in_console(client)
    device.refresh_from_db()
    assert device.confirmed
    entry = AuditEntry.objects.get(action=Action.STAFF_CHANGE, object_id=str(user.pk))
    assert entry.after == {"second_factor": "authenticator enrolled", "recovery_codes": 10}

    # A recovery code logs in once.
    other = Client()
    assert log_in(other, "fay", codes[0]).status_code == 302
    assert in_console(other)
    again = Client()
    assert log_in(again, "fay", codes[0]).status_code == 200
    assert not in_console(again)


def test_by_default_a_password_alone_enrols_nobody_a_link_is_needed(db: None) -> None:
    """SIMTOPUP_STAFF_ENROL_AT_LOGIN off (the default): a staff member with a password and no
    authenticator is refused at the login, told to ask for a link, on the audit log as a
    failed login; no enrolment session is opened."""
    user = make_staff("fay", roles.FINANCE)
    for language, words in (
        ("en", "Ask an administrator for an enrolment link"),
        ("zh-hans", "请向管理员索取设置链接"),
        ("zh-hant", "請向管理員索取設定連結"),
    ):
        client = Client(HTTP_ACCEPT_LANGUAGE=language)
        answer = log_in(client, "fay")
        assert answer.status_code == 200
        assert words in answer.content.decode(), language
        assert client.get("/admin/enrol/")["Location"] == "/admin/login/"
        assert not in_console(client)
    assert not TOTPDevice.objects.filter(user=user).exists()
    failed = AuditEntry.objects.filter(action=Action.STAFF_LOGIN_FAILED, object_id=str(user.pk))
    assert failed.count() == 3


def test_enrolment_is_once_a_password_cannot_replace_an_authenticator(db: None) -> None:
    user = make_staff("sam", roles.SUPPORT)
    add_authenticator(user)
    client = Client()
    log_in(client, "sam")
    answer = client.get("/admin/enrol/")
    assert answer.status_code == 302
    assert answer["Location"] == "/admin/login/"
    assert TOTPDevice.objects.filter(user=user).count() == 1


def test_not_staff_is_refused_even_with_a_code(db: None) -> None:
    user = User.objects.create_user("cust", password=PASSWORD)
    device = add_authenticator(user)
    client = Client()
    assert log_in(client, "cust", code_of(device)).status_code == 200
    assert not in_console(client)


def test_failed_logins_are_limited_per_user_and_address(db: None, settings) -> None:
    settings.STAFF_LOGIN_USER_IP_LIMITS = ["3/900"]
    user = make_staff("sam", roles.SUPPORT)
    device = add_authenticator(user)
    client = Client()
    for _ in range(3):
        assert log_in(client, "sam", password="wrong-password").status_code == 200
    answer = log_in(client, "sam", code_of(device))
    assert answer.status_code == 429
    assert not in_console(client)
    # Another user name from the same address is not held up by sam's limit.
    ana = make_staff("ana", roles.SUPPORT)
    assert log_in(Client(), "ana", code_of(add_authenticator(ana))).status_code == 302


def test_failed_logins_are_limited_per_address_across_user_names(db: None, settings) -> None:
    settings.STAFF_LOGIN_IP_LIMITS = ["4/900"]
    user = make_staff("sam", roles.SUPPORT)
    device = add_authenticator(user)
    for n in range(4):
        log_in(Client(), f"nobody{n}", password="wrong-password")
    assert log_in(Client(), "sam", code_of(device)).status_code == 429


def test_a_staff_session_ends_after_inactivity_keeping_a_customer_login(db: None, settings) -> None:
    settings.STAFF_IDLE_MINUTES = 30
    client = console_client(make_staff("sam", roles.SUPPORT))
    assert in_console(client)

    def idle(minutes: int) -> None:
        session = client.session
        session[SEEN_KEY] = time.time() - minutes * 60
        session["simtopup_customer_id"] = 7  # a customer logged in in the same browser
        session.save()

    idle(29)
    assert in_console(client)  # and the clock starts again
    assert time.time() - client.session[SEEN_KEY] < 60
    idle(31)
    answer = client.get("/admin/")
    assert answer.status_code == 302
    assert answer["Location"].startswith("/admin/login/")
    assert not in_console(client)
    assert client.session.get("simtopup_customer_id") == 7


def test_the_login_and_enrolment_pages_speak_the_three_languages(db: None, settings) -> None:
    settings.STAFF_ENROL_AT_LOGIN = True
    make_staff("sam", roles.SUPPORT)
    for language, words in (
        ("zh-hans", "身份验证器应用中的验证码"),
        ("zh-hant", "驗證器 App 中的驗證碼"),
        ("en", "Code from your authenticator app"),
    ):
        browser = Client(HTTP_ACCEPT_LANGUAGE=language)
        assert words in browser.get("/admin/login/").content.decode(), language
    browser = Client(HTTP_ACCEPT_LANGUAGE="zh-hant")
    log_in(browser, "sam")
    assert "掃描此 QR 碼" in browser.get("/admin/enrol/").content.decode()


def test_an_admin_removes_a_lost_authenticator_on_the_record_support_cannot(db: None) -> None:
    sam = make_staff("sam", roles.SUPPORT)
    device = add_authenticator(sam)
    delete = f"/admin/otp_totp/totpdevice/{device.pk}/delete/"
    assert console_client(sam).post(delete, {"post": "yes"}).status_code == 403
    admin = console_client(make_staff("ada", roles.ADMIN))
    assert (
        device.key
        not in admin.get(f"/admin/otp_totp/totpdevice/{device.pk}/change/").content.decode()
    )
    assert admin.get("/admin/otp_totp/totpdevice/add/").status_code == 403
    assert admin.post(delete, {"post": "yes"}).status_code == 302
    assert not TOTPDevice.objects.filter(pk=device.pk).exists()
    entry = AuditEntry.objects.get(action=Action.STAFF_CHANGE, object_id=str(sam.pk))
    assert entry.after == {"second_factor": "removed"}
    assert entry.actor.endswith(":ada")
    assert not AuditEntry.objects.filter(before__icontains=device.key).exists()
