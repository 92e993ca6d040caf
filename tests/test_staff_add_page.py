"""The console's *Add a staff member* (issue 14, point 1): an administrator adds a staff member
in a role and is shown their one-time enrolment link — backoffice/enrolment.add_staff, the
function `simtopup staff add` calls — on the audit log; other roles are refused."""

from __future__ import annotations

import re

from django.contrib.auth.models import User
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from simtopup.audit.models import Action, AuditEntry
from simtopup.backoffice import roles
from tests.staff_support import code_of, console_client, make_staff

LINK = re.compile(r'<code id="enrolment-link">(https?://[^<]+/admin/enrol/[^<]+/)</code>')


def test_an_admin_adds_a_staff_member_and_the_link_enrols_them(db: None, settings) -> None:
    settings.SITE_URL = "https://console.example"
    ada = make_staff("ada", roles.ADMIN)
    admin = console_client(ada)
    assert 'id="add-staff-member"' in admin.get("/admin/auth/user/").content.decode()
    assert admin.get("/admin/staff/add/").status_code == 200
    answer = admin.post("/admin/staff/add/", {"email": " Nia@Example.com ", "role": "support"})
    assert answer.status_code == 200
    found = LINK.search(answer.content.decode())
    assert found is not None, answer.content.decode()
    nia = User.objects.get(username="nia@example.com")
    assert nia.is_staff
    assert not nia.has_usable_password()
    assert roles.role_of(nia) == roles.SUPPORT
    entry = AuditEntry.objects.get(action=Action.STAFF_CHANGE, object_id=str(nia.pk))
    assert entry.actor == f"staff:{ada.pk}:ada"
    assert entry.after is not None
    assert entry.after["role"] == "support"
    assert entry.ip

    # The link, once: a password and the authenticator app, then in the console.
    path = found[1].removeprefix("https://console.example")
    browser = Client()
    assert browser.get(path).status_code == 200
    device = TOTPDevice.objects.get(user=nia, confirmed=False)
    done = browser.post(
        path,
        {
            "new_password1": "Nia-pw-9xq2",
            "new_password2": "Nia-pw-9xq2",
            "otp_token": code_of(device),
        },
    )
    assert done["Location"] == "/admin/enrol/recovery-codes/"
    assert browser.get("/admin/").status_code == 200
    assert Client().get(path).status_code == 410


def test_a_taken_name_or_a_bad_email_adds_nobody(db: None) -> None:
    admin = console_client(make_staff("ada", roles.ADMIN))
    make_staff("sam", roles.SUPPORT)
    before = AuditEntry.objects.count()
    taken = admin.post("/admin/staff/add/", {"email": "SAM", "role": "support"})
    assert taken.status_code == 200
    assert 'id="enrolment-link"' not in taken.content.decode()
    User.objects.filter(username="sam").update(username="sam@example.com")
    taken = admin.post("/admin/staff/add/", {"email": "Sam@example.com", "role": "support"})
    assert "has a login already" in taken.content.decode()
    bad_role = admin.post("/admin/staff/add/", {"email": "x@example.com", "role": "root"})
    assert 'id="enrolment-link"' not in bad_role.content.decode()
    assert not User.objects.filter(username="x@example.com").exists()
    assert AuditEntry.objects.count() == before


def test_only_an_admin_adds_staff(db: None) -> None:
    for role in (roles.SUPPORT, roles.FINANCE):
        client = console_client(make_staff(f"who-{role}", role))
        assert client.get("/admin/staff/add/").status_code == 403, role
        answer = client.post("/admin/staff/add/", {"email": "z@example.com", "role": "admin"})
        assert answer.status_code == 403, role
    assert not User.objects.filter(username="z@example.com").exists()
    # Not logged in (or the password only): the login page.
    assert Client().get("/admin/staff/add/")["Location"].startswith("/admin/login/")


def test_the_page_speaks_the_three_languages(db: None) -> None:
    ada = make_staff("ada", roles.ADMIN)
    for language, words, done in (
        ("zh-hans", "添加员工", "一次性设置链接"),
        ("zh-hant", "新增員工", "一次性設定連結"),
        ("en", "Add a staff member", "one-time enrolment link"),
    ):
        admin = console_client(ada, HTTP_ACCEPT_LANGUAGE=language)
        assert words in admin.get("/admin/staff/add/").content.decode(), language
        answer = admin.post(
            "/admin/staff/add/", {"email": f"{language}@example.com", "role": "finance"}
        )
        assert done in answer.content.decode(), language
