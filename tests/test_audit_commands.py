"""The `simtopup reseller …` commands write one audit row each (actor cli:<os user>), in the
same transaction as their change (issue 14, point 2)."""

from __future__ import annotations

import getpass
import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection

from simtopup.audit.models import Action, AuditEntry
from simtopup.resellers.models import ApiKey, PartnerCredential, Reseller, ResellerStatus
from tests.support import Actors, float_of

pytestmark = pytest.mark.django_db

CLI = f"cli:{getpass.getuser()}"


def run(*args: str) -> dict[str, object]:
    out = StringIO()
    call_command("reseller", *args, stdout=out)
    return json.loads(out.getvalue().splitlines()[-1])


def only(action: Action) -> AuditEntry:
    [entry] = AuditEntry.objects.all()
    assert entry.action == action
    assert entry.actor == CLI
    assert entry.ip == ""
    return entry


def test_create(db: None) -> None:
    made = run("create", "--name", "Wang Telecom", "--float", "500.00", "--discount", "0.05")
    entry = only(Action.RESELLER_CREATE)
    reseller = Reseller.objects.get(pk=made["id"])
    assert (entry.object_type, entry.object_id) == ("resellers.reseller", str(reseller.pk))
    assert entry.before is None
    assert entry.after == {
        "name": "Wang Telecom",
        "code": reseller.code,
        "currency": "CNY",
        "discount_bps": 500,
        "float": "500.00",
        "webhook_url": "",
    }
    assert str(made["api_key"]) not in json.dumps(entry.after)


def test_credit(actors: Actors) -> None:
    run("credit", str(actors.bob.pk), "25.50", "--reason", "bank transfer ref 8812")
    entry = only(Action.RESELLER_CREDIT)
    assert entry.object_id == str(actors.bob.pk)
    assert entry.reason == "bank transfer ref 8812"
    assert entry.before == {"float": "50.00"}
    assert entry.after["float"] == "75.50"
    assert entry.after["credited"] == "25.50"


def test_credit_and_its_row_are_one_transaction(actors: Actors) -> None:
    # The audit insert fails (a trigger added for this test): the float is not credited.
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "CREATE TRIGGER test_audit_refused BEFORE INSERT ON audit_auditentry "
                "BEGIN SELECT RAISE(ABORT, 'no audit'); END"
            )
        else:
            cursor.execute(
                "CREATE FUNCTION test_audit_refused() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'no audit'; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                "CREATE TRIGGER test_audit_refused BEFORE INSERT ON audit_auditentry "
                "FOR EACH ROW EXECUTE FUNCTION test_audit_refused()"
            )
    before = float_of(actors.bob)
    with pytest.raises(DatabaseError, match="no audit"):
        run("credit", str(actors.bob.pk), "25.50", "--reason", "bank transfer")
    assert float_of(actors.bob) == before
    assert not AuditEntry.objects.exists()


def test_suspend_and_reinstate(actors: Actors) -> None:
    run("suspend", str(actors.bob.pk))
    entry = only(Action.RESELLER_SUSPEND)
    assert (entry.before, entry.after) == ({"status": "active"}, {"status": "suspended"})
    run("suspend", str(actors.bob.pk))  # already suspended: nothing changed, nothing recorded
    assert AuditEntry.objects.count() == 1
    run("reinstate", str(actors.bob.pk))
    actors.bob.refresh_from_db()
    assert actors.bob.status == ResellerStatus.ACTIVE
    back = AuditEntry.objects.get(action=Action.RESELLER_REINSTATE)
    assert (back.actor, back.before, back.after) == (
        CLI,
        {"status": "suspended"},
        {"status": "active"},
    )


def test_key_create_and_revoke(actors: Actors) -> None:
    made = run("key", "create", str(actors.bob.pk), "--name", "till 2")
    entry = only(Action.API_KEY_CREATE)
    key = ApiKey.objects.get(pk=made["key_id"])
    assert entry.object_id == str(key.pk)
    assert entry.after == {"reseller_id": actors.bob.pk, "name": "till 2", "prefix": key.prefix}
    run("key", "revoke", str(key.pk))
    revoked = AuditEntry.objects.get(action=Action.API_KEY_REVOKE)
    assert (revoked.actor, revoked.object_type, revoked.object_id) == (
        CLI,
        "resellers.apikey",
        str(key.pk),
    )
    with pytest.raises(CommandError):
        run("key", "revoke", str(key.pk))  # not active any more: nothing recorded
    assert AuditEntry.objects.filter(action=Action.API_KEY_REVOKE).count() == 1


def test_staff_add_and_password(actors: Actors) -> None:
    made = run("staff", "add", str(actors.bob.pk), "--email", "Clerk@Example.com")
    entry = only(Action.RESELLER_STAFF_ADD)
    assert entry.after == {
        "reseller_id": actors.bob.pk,
        "email": "clerk@example.com",
        "role": "clerk",
    }
    run("staff", "password", "--email", "clerk@example.com")
    reset = AuditEntry.objects.get(action=Action.RESELLER_STAFF_PASSWORD)
    assert str(made["temporary_password"]) not in json.dumps(reset.after)
    with pytest.raises(CommandError):  # the same person again: refused, nothing recorded
        run("staff", "add", str(actors.bob.pk), "--email", "clerk@example.com")
    assert AuditEntry.objects.count() == 2


def test_partner_credentials(actors: Actors) -> None:
    made = run("oauth", "create", str(actors.bob.pk))
    entry = only(Action.PARTNER_CREDENTIAL_CREATE)
    assert entry.object_id == made["client_id"]
    assert str(made["client_secret"]) not in json.dumps(entry.after)
    run("oauth", "revoke", str(made["client_id"]))
    revoked = AuditEntry.objects.get(action=Action.PARTNER_CREDENTIAL_REVOKE)
    assert (revoked.actor, revoked.object_id) == (CLI, made["client_id"])
    assert PartnerCredential.objects.get(client_id=made["client_id"]).revoked_at is not None
