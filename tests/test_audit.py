"""The audit log (issue 14, point 2): append-only in the database, a reason for anything that
moves value, one row in the same transaction as each recorded effect, written by the console's
saves and actions and by staff logins, listed and exported for staff only."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.test import Client

from simtopup.audit.log import cli_actor, record, staff_actor
from simtopup.audit.models import Action, AuditEntry
from simtopup.core.errors import DomainError
from simtopup.devices.binding import pin_matches
from simtopup.devices.models import Device, DeviceStatus
from simtopup.resellers.actions import credit_float
from simtopup.resellers.models import ResellerStatus
from tests.staff_support import add_authenticator, code_of, console_client
from tests.support import Actors, float_of

IP = "203.0.113.9"


def operator(name: str = "operator") -> tuple[User, Client]:
    user = User.objects.create_superuser(name, f"{name}@example.com", "pw-operator-1")
    return user, console_client(user, REMOTE_ADDR=IP)


def entries(action: Action) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action).order_by("id"))


def one_entry() -> AuditEntry:
    with transaction.atomic():
        return record(
            Action.RESELLER_CREDIT,
            ("resellers.reseller", "1"),
            actor="system",
            after={"float": "1.00"},
            reason="test",
        )


# --- the database --------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_append_only_triggers_are_installed() -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            expected = {"audit_auditentry_no_update", "audit_auditentry_no_delete"}
        else:
            cursor.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
            expected = {"audit_auditentry_append_only"}
        installed = {row[0] for row in cursor.fetchall()}
    assert expected <= installed, sorted(expected - installed)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_auditentry SET reason = 'rewritten' WHERE id = %s",
        "UPDATE audit_auditentry SET actor = 'system', at = at WHERE id = %s",
        "DELETE FROM audit_auditentry WHERE id = %s",
    ],
)
def test_the_database_refuses_changing_or_deleting_an_entry(sql: str) -> None:
    entry = one_entry()
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql, [entry.pk])
    kept = AuditEntry.objects.get(pk=entry.pk)
    assert (kept.reason, kept.actor) == ("test", "system")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).delete()
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


@pytest.mark.django_db
def test_the_database_refuses_a_value_moving_entry_without_a_reason_or_an_unknown_action() -> None:
    for action, reason in [("reseller.credit", ""), ("refund", ""), ("invented", "why")]:
        with pytest.raises(IntegrityError), transaction.atomic():
            AuditEntry.objects.create(actor="system", action=action, object_type="x", reason=reason)
    assert not AuditEntry.objects.exists()


# --- record() ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_value_moving_action_without_a_reason_is_refused_and_changes_nothing(
    actors: Actors,
) -> None:
    before = float_of(actors.alice)

    def credit_without_a_reason() -> None:
        with transaction.atomic():
            credit_float(actors.alice, 5000, "top-up by bank transfer")
            record(Action.RESELLER_CREDIT, actors.alice, actor=cli_actor(), reason="  ")

    with pytest.raises(DomainError) as refused:
        credit_without_a_reason()
    assert refused.value.code == "reason_required"
    assert float_of(actors.alice) == before
    assert not AuditEntry.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_record_outside_a_transaction_is_refused_except_for_a_login(actors: Actors) -> None:
    # (transaction=True: the other tests run inside the test's own transaction. This one also
    # shows that the flush between such tests can still empty the audit table on SQLite.)
    with pytest.raises(RuntimeError, match="inside the transaction"):
        record(Action.RESELLER_SUSPEND, actors.alice, actor="system")
    assert not AuditEntry.objects.exists()
    record(Action.STAFF_LOGIN_FAILED, ("auth.user", ""), actor="anonymous")
    assert AuditEntry.objects.count() == 1


def test_actors() -> None:
    assert cli_actor().startswith("cli:")
    assert len(cli_actor()) > 4
    assert staff_actor(User(pk=7, username="li")) == "staff:7:li"


# --- the console ---------------------------------------------------------------------------


def _device_form(device: Device, **changes: Any) -> dict[str, Any]:
    form = {
        "kind": device.kind,
        "imei": device.imei or "",
        "iccid": device.iccid or "",
        "eid": device.eid or "",
        "serial": device.serial or "",
        "activation_code": device.activation_code or "",
        "status": device.status,
        "new_pin": "",
    }
    return form | changes


@pytest.mark.django_db
def test_a_console_change_writes_one_row_with_the_staff_member_and_ip(actors: Actors) -> None:
    user, console = operator()
    device = actors.device
    url = f"/admin/devices/device/{device.pk}/change/"
    response = console.post(url, _device_form(device, status=DeviceStatus.SUSPENDED))
    assert response.status_code == 302, response.content.decode()[:2000]
    [entry] = entries(Action.DEVICE_SUSPEND)
    assert entry.request_id == response["X-Request-Id"]
    assert entry.actor == f"staff:{user.pk}:operator"
    assert entry.ip == IP
    assert (entry.object_type, entry.object_id) == ("devices.device", str(device.pk))
    assert entry.before == {"status": "in_stock"}
    assert entry.after == {"status": "suspended"}

    # A new PIN is recorded as changed, never as a value; saving nothing new records nothing.
    console.post(url, _device_form(device, status=DeviceStatus.SUSPENDED, new_pin="482913"))
    device.refresh_from_db()
    assert pin_matches(device.pin_hash, "482913")
    [pin] = entries(Action.DEVICE_CHANGE)
    assert pin.before == {"pin_hash": ""}
    assert pin.after == {"pin_hash": "[redacted]"}
    console.post(url, _device_form(device, status=DeviceStatus.SUSPENDED))
    assert AuditEntry.objects.exclude(action=Action.STAFF_LOGIN).count() == 2

    console.post(url, _device_form(device, status=DeviceStatus.ACTIVE))
    [back] = entries(Action.DEVICE_REINSTATE)
    assert (back.before, back.after) == ({"status": "suspended"}, {"status": "active"})


@pytest.mark.django_db
def test_a_role_made_in_the_console_is_recorded(db: None) -> None:
    user, console = operator()
    assert console.post("/admin/auth/group/add/", {"name": "night shift"}).status_code == 302
    [entry] = entries(Action.ROLE_CHANGE)
    group = Group.objects.get(name="night shift")
    assert entry.object_id == str(group.pk)
    assert entry.before is None
    assert entry.after == {"id": group.pk, "name": "night shift", "permissions": []}
    assert entry.actor == staff_actor(user)


@pytest.mark.django_db
def test_a_console_action_and_its_audit_row_are_one_transaction(actors: Actors) -> None:
    user, console = operator()
    action = {
        "action": "suspend_selected",
        "_selected_action": [str(actors.alice.pk)],
        "reason": "chargeback dispute",
    }
    # The audit insert fails (a trigger added for this test): the suspension is rolled back.
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "CREATE TRIGGER test_audit_refused BEFORE INSERT ON audit_auditentry "
                "WHEN NEW.action = 'reseller.suspend' BEGIN SELECT RAISE(ABORT, 'no audit'); END"
            )
        else:
            cursor.execute(
                "CREATE FUNCTION test_audit_refused() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'no audit'; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                "CREATE TRIGGER test_audit_refused BEFORE INSERT ON audit_auditentry "
                "FOR EACH ROW WHEN (NEW.action = 'reseller.suspend') "
                "EXECUTE FUNCTION test_audit_refused()"
            )
    with pytest.raises(DatabaseError, match="no audit"), transaction.atomic():
        console.post("/admin/resellers/reseller/", action)
    actors.alice.refresh_from_db()
    assert actors.alice.status == ResellerStatus.ACTIVE
    assert not entries(Action.RESELLER_SUSPEND)
    with connection.cursor() as cursor:
        cursor.execute(
            "DROP TRIGGER test_audit_refused"
            + (" ON audit_auditentry" if connection.vendor == "postgresql" else "")
        )

    assert console.post("/admin/resellers/reseller/", action).status_code == 302
    actors.alice.refresh_from_db()
    assert actors.alice.status == ResellerStatus.SUSPENDED
    [entry] = entries(Action.RESELLER_SUSPEND)
    assert (entry.actor, entry.ip, entry.reason) == (staff_actor(user), IP, "chargeback dispute")
    assert (entry.before, entry.after) == ({"status": "active"}, {"status": "suspended"})


# --- logins --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_staff_logins_and_failed_logins_are_recorded(db: None) -> None:
    staff = User.objects.create_user("li.wei", password="right-pw-123", is_staff=True)
    device = add_authenticator(staff)
    browser = Client(REMOTE_ADDR=IP)
    wrong = browser.post("/admin/login/", {"username": "li.wei", "password": "wrong"})
    assert wrong.status_code == 200
    [failed] = entries(Action.STAFF_LOGIN_FAILED)
    assert failed.request_id == wrong["X-Request-Id"]
    assert (failed.actor, failed.ip, failed.object_id) == ("anonymous", IP, str(staff.pk))
    assert failed.after == {"username": "li.wei"}
    # A name nobody has, at the console's login page, is recorded too.
    browser.post("/admin/login/", {"username": "ghost", "password": "x"})
    assert [e.after for e in entries(Action.STAFF_LOGIN_FAILED)][1] == {"username": "ghost"}

    right = browser.post(
        "/admin/login/",
        {"username": "li.wei", "password": "right-pw-123", "otp_token": code_of(device)},
    )
    assert right.status_code == 302
    [login] = entries(Action.STAFF_LOGIN)
    assert (login.actor, login.ip) == (staff_actor(staff), IP)


@pytest.mark.django_db
def test_logins_of_others_are_not_staff_logins(db: None) -> None:
    from django.contrib.auth import authenticate

    User.objects.create_user("clerk@example.com", password="clerk-pw-123")
    assert authenticate(username="clerk@example.com", password="wrong") is None
    Client().login(username="clerk@example.com", password="clerk-pw-123")
    assert not AuditEntry.objects.exists()


# --- the list and its CSV ------------------------------------------------------------------


@pytest.mark.django_db
def test_the_list_and_the_csv_export_for_staff_only(actors: Actors) -> None:
    _user, console = operator()
    with transaction.atomic():
        credit_float(actors.alice, 5000, "deposit")
        record(
            Action.RESELLER_CREDIT,
            actors.alice,
            actor="cli:root",
            before={"float": "1000.00"},
            after={"float": "1050.00"},
            reason="=HYPERLINK(bank ref 7781)",
        )
    page = console.get("/admin/audit/auditentry/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "bank ref 7781" in html
    assert "export.csv" in html
    assert "/admin/audit/auditentry/add/" not in html
    filtered = console.get("/admin/audit/auditentry/?action__exact=staff.login")
    assert "bank ref 7781" not in filtered.content.decode()

    export = console.get("/admin/audit/auditentry/export.csv?action__exact=reseller.credit")
    assert export.status_code == 200
    assert export["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(export.content.decode("utf-8-sig"))))
    assert rows[0][:4] == ["When (UTC)", "Who", "IP address", "Action"]
    [row] = rows[1:]
    assert row[1:4] == ["cli:root", "", "reseller.credit"]
    assert row[7:10] == [
        '{"float": "1000.00"}',
        '{"float": "1050.00"}',
        "'=HYPERLINK(bank ref 7781)",
    ]

    entry = AuditEntry.objects.get(action=Action.RESELLER_CREDIT)
    for path in ["/admin/audit/auditentry/add/", f"/admin/audit/auditentry/{entry.pk}/delete/"]:
        assert console.get(path).status_code == 403, path
    detail = console.get(f"/admin/audit/auditentry/{entry.pk}/change/").content.decode()
    assert 'value="Save"' not in detail

    # Not staff: sent to the console's login; staff without the permission: refused.
    outsider = Client()
    outsider.force_login(User.objects.create_user("someone", password="pw-someone-1"))
    for path in ["/admin/audit/auditentry/", "/admin/audit/auditentry/export.csv"]:
        response = outsider.get(path)
        assert response.status_code == 302, path
        assert "/admin/login/" in response["Location"], path
    clerk = console_client(User.objects.create_user("clerk", password="pw-clerk-1", is_staff=True))
    assert clerk.get("/admin/audit/auditentry/").status_code == 403
    assert clerk.get("/admin/audit/auditentry/export.csv").status_code == 403


@pytest.mark.django_db
def test_a_staff_password_set_in_the_console_is_recorded_without_the_password(db: None) -> None:
    user, console = operator()
    clerk = User.objects.create_user("clerk", password="old-pw-123456", is_staff=True)
    response = console.post(
        f"/admin/auth/user/{clerk.pk}/password/",
        {
            "password1": "N3w-pw-secret",
            "password2": "N3w-pw-secret",
            "usable_password": "true",
            "set-password": "1",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    clerk.refresh_from_db()
    assert clerk.check_password("N3w-pw-secret")
    [entry] = entries(Action.STAFF_CHANGE)
    assert (entry.actor, entry.ip, entry.object_id) == (staff_actor(user), IP, str(clerk.pk))
    assert entry.after == {"password": "[redacted] (usable)"}
    assert "N3w-pw" not in str(entry.before) + str(entry.after)


@pytest.mark.django_db
def test_giving_a_staff_member_a_role_is_recorded(db: None) -> None:
    user, console = operator()
    finance = Group.objects.get(name="finance")  # a role migrate made (backoffice/roles.py)
    clerk = User.objects.create_user("clerk", password="pw-clerk-123")
    response = console.post(
        f"/admin/auth/user/{clerk.pk}/change/",
        {
            "username": "clerk",
            "is_active": "on",
            "is_staff": "on",
            "groups": [str(finance.pk)],
            "date_joined_0": "2026-12-01",
            "date_joined_1": "10:00:00",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    [entry] = entries(Action.STAFF_CHANGE)
    assert entry.actor == staff_actor(user)
    assert (entry.before["is_staff"], entry.before["groups"]) == (False, [])
    assert (entry.after["is_staff"], entry.after["groups"]) == (True, [finance.pk])
    assert "password" not in entry.after  # unchanged, and never a value anyway


@pytest.mark.django_db
def test_deleting_a_role_in_the_console_is_recorded_with_what_it_was(db: None) -> None:
    user, console = operator()
    group = Group.objects.create(name="interns")
    response = console.post(f"/admin/auth/group/{group.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Group.objects.filter(name="interns").exists()
    [entry] = entries(Action.ROLE_CHANGE)
    assert (entry.actor, entry.ip, entry.object_id) == (staff_actor(user), IP, str(group.pk))
    assert entry.before == {"id": group.pk, "name": "interns", "permissions": []}
    assert entry.after is None
