"""A staff member's first day, in a real browser (issue 14, point 1), in English and in
Chinese: an administrator logs in with a password and an authenticator code, adds a staff
member in the support role under *Add a staff member* and reads the one-time enrolment link;
the new staff member opens it in a browser of their own, chooses a password, types the key
shown under the QR code into "their authenticator" (django_otp's own TOTP, here), confirms,
reads the recovery codes, logs out, logs in with the password and a code, and sees the
console of support: no finance, no staff administration (screenshots looked at)."""

from __future__ import annotations

import base64
import time
from typing import Any

from django.contrib.auth.models import User
from django_otp.oath import TOTP

from simtopup.backoffice import roles
from tests.e2e.conftest import shot
from tests.staff_support import PASSWORD, add_authenticator, code_of, make_staff

NEW_PASSWORD = "Kw7-first-day-pw"


def totp_code(secret: str, ahead: int = 0) -> str:
    """The code an authenticator app shows for ``secret`` (the key as printed, in groups),
    ``ahead`` time steps from now (a code is good once: the next login uses the next one,
    within the device's tolerance of one step)."""
    key = base64.b32decode(secret.replace(" ", "").upper())
    totp = TOTP(key)
    totp.time = time.time() + 30 * ahead
    return f"{totp.token():06d}"


def test_an_admin_adds_a_support_member_who_enrols_through_the_link(
    site: str, desktop: Any
) -> None:
    complaints: list[str] = []

    def listen(message: Any) -> None:
        if "Content Security Policy" in message.text:
            complaints.append(message.text)

    for language, words in (
        ("en", {"add": "Add a staff member", "codes": "recovery codes"}),
        ("zh-hans", {"add": "添加员工", "codes": "恢复码"}),
    ):
        ada = make_staff(f"ada-{language}", roles.ADMIN)
        device = add_authenticator(ada)
        admin = desktop(language)
        admin.on("console", listen)
        admin.goto(f"{site}/admin/login/")
        admin.fill("#id_username", ada.username)
        admin.fill("#id_password", PASSWORD)
        admin.fill("#id_otp_token", code_of(device))
        admin.click("#login-form input[type=submit]")
        admin.wait_for_url(f"{site}/admin/")

        admin.goto(f"{site}/admin/auth/user/")
        admin.click("#add-staff-member")
        admin.wait_for_url(f"{site}/admin/staff/add/")
        assert words["add"] in admin.content()
        email = f"new-{language}@example.com"
        admin.fill("#id_email", email)
        admin.select_option("#id_role", roles.SUPPORT)
        admin.click("#staff-add-form input[type=submit]")
        link = admin.locator("#enrolment-link").inner_text().strip()
        assert link.startswith(f"{site}/admin/enrol/")
        shot(admin, f"staff-add-{language}")
        assert roles.role_of(User.objects.get(username=email)) == roles.SUPPORT

        # The new staff member, in a browser of their own.
        staff = desktop(language)
        staff.on("console", listen)
        staff.goto(link)
        secret = staff.locator("#otp-secret").inner_text()
        assert len(secret.replace(" ", "")) >= 16
        assert staff.locator(".enrol-qr svg").count() == 1
        shot(staff, f"staff-enrol-{language}")
        staff.fill("#id_new_password1", NEW_PASSWORD)
        staff.fill("#id_new_password2", NEW_PASSWORD)
        staff.fill("#id_otp_token", totp_code(secret))
        staff.click("#login-form input[type=submit]")
        staff.wait_for_url(f"{site}/admin/enrol/recovery-codes/")
        assert words["codes"] in staff.content()
        assert staff.locator("#recovery-codes li").count() == 10
        shot(staff, f"staff-recovery-codes-{language}")

        staff.goto(f"{site}/admin/")
        staff.click("#logout-form button")
        staff.wait_for_load_state()
        staff.goto(f"{site}/admin/")
        assert "/admin/login/" in staff.url
        staff.fill("#id_username", email)
        staff.fill("#id_password", NEW_PASSWORD)
        staff.fill("#id_otp_token", totp_code(secret, ahead=1))
        staff.click("#login-form input[type=submit]")
        staff.wait_for_url(f"{site}/admin/")
        # Support's console: customers, cards, orders, tickets; no ledger (finance), no
        # users and roles, no audit log (admin).
        links = staff.locator("#content-main a").evaluate_all(
            "links => links.map(a => a.getAttribute('href'))"
        )
        assert "/admin/orders/order/" in links
        assert "/admin/devices/device/" in links
        for forbidden in ("/admin/ledger/", "/admin/auth/", "/admin/audit/"):
            assert not [href for href in links if href and href.startswith(forbidden)], forbidden
        shot(staff, f"staff-support-home-{language}")
    assert complaints == []
