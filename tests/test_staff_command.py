"""`simtopup staff add --email E --role R` (issue 14, point 1): a staff member in a role and a
one-time enrolment link — signed, expiring, good once — where they set a password and enrol
an authenticator app; audited with the command's actor (cli:<os user>)."""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from simtopup.audit.log import cli_actor
from simtopup.audit.models import Action, AuditEntry
from simtopup.backoffice import enrolment, roles
from simtopup.backoffice.models import StaffInvite
from tests.staff_support import add_authenticator, code_of, make_staff

LINK = re.compile(r"enrolment link .*: (http\S+/admin/enrol/(\S+)/)$", re.M)
NEW_PASSWORD = "Kestrel-Harbour-2931"


def staff(*args: str) -> str:
    out = StringIO()
    call_command("staff", *args, stdout=out)
    return out.getvalue()


def path_of(output: str) -> str:
    match = LINK.search(output)
    assert match, output
    return urlsplit(match[1]).path


def enrol(client: Client, path: str, password: str = NEW_PASSWORD):
    page = client.get(path)
    assert page.status_code == 200, page.content
    user = User.objects.get(username=page.context["staff_name"])
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    return client.post(
        path,
        {"new_password1": password, "new_password2": password, "otp_token": code_of(device)},
    )


def test_staff_add_prints_a_link_that_sets_a_password_and_enrols_once(db: None) -> None:
    output = staff("add", "--email", "Li.Wei@Example.com", "--role", "finance")
    user = User.objects.get(username="li.wei@example.com")
    assert user.is_staff
    assert not user.has_usable_password()
    assert roles.role_of(user) == roles.FINANCE
    entry = AuditEntry.objects.get(action=Action.STAFF_CHANGE, object_id=str(user.pk))
    assert entry.actor == cli_actor()
    assert entry.after["role"] == "finance"
    path = path_of(output)

    browser = Client()
    # A password that the validators refuse, and two that differ: nothing is used up.
    assert enrol(browser, path, "123").status_code == 200
    answer = enrol(browser, path)
    assert answer.status_code == 302
    assert answer["Location"] == "/admin/enrol/recovery-codes/"
    assert browser.get("/admin/enrol/recovery-codes/").status_code == 200
    assert browser.get("/admin/").status_code == 200
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert TOTPDevice.objects.get(user=user).confirmed
    assert StaffInvite.objects.get(user=user).used_at is not None

    # Once: the same link again is gone, and logs nobody in.
    again = Client()
    assert again.get(path).status_code == 410
    assert again.post(path, {"otp_token": "000000"}).status_code == 410
    assert again.get("/admin/").status_code == 302


def test_a_link_is_signed_and_expires(db: None, settings) -> None:
    output = staff("add", "--email", "ana@example.com", "--role", "support")
    path = path_of(output)
    assert Client().get(path[:-3] + "xx/").status_code == 410  # signature broken
    StaffInvite.objects.update(expires_at=StaffInvite.objects.get().created_at)
    assert Client().get(path).status_code == 410


def test_a_link_used_by_another_tab_first_is_refused(db: None) -> None:
    """Two tabs with the link: the first right code uses it (compare-and-swap on used_at),
    the other tab's form is refused."""
    path = path_of(staff("add", "--email", "sam@example.com", "--role", "support"))
    first, second = Client(), Client()
    first.get(path)
    second.get(path)
    user = User.objects.get(username="sam@example.com")
    body = {
        "new_password1": NEW_PASSWORD,
        "new_password2": NEW_PASSWORD,
        "otp_token": code_of(TOTPDevice.objects.get(user=user, confirmed=False)),
    }
    assert first.post(path, body).status_code == 302
    assert second.post(path, body).status_code == 410
    assert second.get("/admin/").status_code == 302
    invite = StaffInvite.objects.get(user=user)
    assert enrolment.use(invite) is False  # used: the swap finds no unused row


def test_staff_link_replaces_a_lost_authenticator(db: None) -> None:
    user = make_staff("ops@example.com", roles.ADMIN)
    old = add_authenticator(user)
    output = staff("link", "--email", "ops@example.com")
    browser = Client()
    path = path_of(output)
    page = browser.get(path, HTTP_ACCEPT_LANGUAGE="en")
    assert "Leave empty to keep your password." in page.content.decode()
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    assert browser.post(path, {"otp_token": code_of(device)}).status_code == 302
    assert not TOTPDevice.objects.filter(pk=old.pk).exists()
    assert AuditEntry.objects.filter(action=Action.STAFF_CHANGE, actor=cli_actor()).exists()


def test_staff_add_refuses_a_taken_name_or_a_bad_role(db: None) -> None:
    make_staff("ops@example.com", roles.ADMIN)
    with pytest.raises(CommandError):
        staff("add", "--email", "OPS@example.com", "--role", "support")
    with pytest.raises(CommandError):
        staff("add", "--email", "new@example.com", "--role", "boss")
    with pytest.raises(CommandError):
        staff("add", "--email", "not-an-email", "--role", "support")
    assert not AuditEntry.objects.exists()


def test_staff_role_changes_a_role_and_records_it(db: None) -> None:
    user = make_staff("sam@example.com", roles.SUPPORT)
    assert "support -> finance" in staff("role", "--email", "sam@example.com", "--role", "finance")
    assert roles.role_of(user) == roles.FINANCE
    entry = AuditEntry.objects.get(action=Action.ROLE_CHANGE)
    assert (entry.before, entry.after) == ({"role": "support"}, {"role": "finance"})
    assert "sam@example.com\tfinance\tactive" in staff("list")


def test_links_expire_after_the_setting(db: None, settings) -> None:
    settings.STAFF_ENROL_HOURS = 2
    staff("add", "--email", "ana@example.com", "--role", "support")
    invite = StaffInvite.objects.get()
    assert invite.expires_at - invite.created_at == timedelta(hours=2)
