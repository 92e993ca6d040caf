"""Staff roles (issue 14, point 1): support, finance and admin are Django groups with the
permission sets backoffice/roles.py defines, and the console holds each member to theirs."""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission

from simtopup.accounts.models import AppToken
from simtopup.audit.models import Action, AuditEntry
from simtopup.backoffice import roles
from simtopup.catalog.models import Plan
from simtopup.resellers.models import Reseller
from tests.payments_support import app, make_customer
from tests.staff_support import console_client, make_staff
from tests.support import Actors


def perms_of(role: str) -> set[str]:
    group = Group.objects.get(name=role)
    return {
        f"{p.content_type.app_label}.{p.codename}"
        for p in group.permissions.select_related("content_type")
    }


def test_migrate_made_the_three_roles_with_their_permissions(db: None) -> None:
    support, finance, admin = (perms_of(r) for r in roles.ROLES)
    assert support == set(roles.SUPPORT_PERMISSIONS)
    assert finance == set(roles.FINANCE_PERMISSIONS)
    assert len(admin) == Permission.objects.count()
    assert {"auth.change_user", "auth.change_group", "catalog.change_plan"} <= admin
    # What the other roles must not do.
    for forbidden in ("catalog.change_plan", "auth.change_user", "auth.view_user"):
        assert forbidden not in support | finance
    assert roles.CREDIT_RESELLER in finance
    assert roles.CREDIT_RESELLER not in support
    assert roles.ISSUE_REFUND in finance
    # A support agent's journey ends in a refund with a reason (issue 14, desk_refunds.py).
    assert roles.ISSUE_REFUND in support
    assert "ledger.view_transfer" in finance
    assert "ledger.view_transfer" not in support
    assert roles.REVOKE_APP_TOKEN in support
    assert "devices.change_device" in support


def test_a_role_edited_by_hand_is_put_back_by_the_next_migrate(db: None) -> None:
    group = Group.objects.get(name=roles.SUPPORT)
    group.permissions.add(Permission.objects.get(codename="change_plan"))
    group.permissions.remove(Permission.objects.get(codename="view_customer"))
    roles.ensure_roles()  # what every migrate runs (backoffice/apps.py)
    assert perms_of(roles.SUPPORT) == set(roles.SUPPORT_PERMISSIONS)


def test_give_role_keeps_one_role_and_role_of_reads_it(db: None) -> None:
    user = make_staff("ana", roles.SUPPORT)
    assert roles.role_of(user) == roles.SUPPORT
    roles.give_role(user, roles.FINANCE)
    assert roles.role_of(user) == roles.FINANCE
    assert list(user.groups.values_list("name", flat=True)) == [roles.FINANCE]
    assert user.has_perm(roles.CREDIT_RESELLER)


def test_support_cannot_see_or_do_finance_or_admin_things(actors: Actors) -> None:
    client = console_client(make_staff("sam", roles.SUPPORT))
    plan = Plan.objects.get(code="day-1g")

    # Its own pages open; the console's index lists no finance or staff pages.
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/devices/device/").status_code == 200
    assert client.get("/admin/accounts/customer/").status_code == 200
    index = client.get("/admin/").content.decode()
    assert "/admin/auth/user/" not in index
    assert "/admin/ledger/transfer/" not in index

    # Staff and roles, the ledger, the audit log: refused.
    for path in (
        "/admin/auth/user/",
        "/admin/auth/group/",
        "/admin/ledger/transfer/",
        "/admin/audit/auditentry/",
        "/admin/payments/paymentevent/",
    ):
        assert client.get(path).status_code == 403, path
    assert client.get("/admin/auth/user/add/").status_code == 403

    # A plan's price: seen, not changed.
    change = f"/admin/catalog/plan/{plan.pk}/change/"
    assert client.get(change).status_code == 200
    answer = client.post(
        change,
        {
            "code": plan.code,
            "kind": plan.kind,
            "name_en": plan.name_en,
            "name_zh_hans": plan.name_zh_hans,
            "name_zh_hant": plan.name_zh_hant,
            "data_bytes": plan.data_bytes,
            "validity_hours": plan.validity_hours,
            "price": 1,
            "currency": plan.currency,
            "sort_order": 0,
            "active": "on",
        },
    )
    assert answer.status_code == 403
    plan.refresh_from_db()
    assert plan.price == 500

    # A reseller: seen, not suspended (the action is not offered to support).
    page = client.get("/admin/resellers/reseller/").content.decode()
    assert "suspend_selected" not in page
    answer = client.post(
        "/admin/resellers/reseller/",
        {"action": "suspend_selected", "_selected_action": [actors.alice.pk], "reason": "x"},
    )
    actors.alice.refresh_from_db()
    assert actors.alice.status == "active"
    assert not AuditEntry.objects.filter(action=Action.RESELLER_SUSPEND).exists()


def test_finance_suspends_a_reseller_but_cannot_change_plans_or_staff(actors: Actors) -> None:
    client = console_client(make_staff("fay", roles.FINANCE))
    assert client.get("/admin/ledger/transfer/").status_code == 200
    assert client.get("/admin/auth/user/").status_code == 403
    plan = Plan.objects.get(code="day-1g")
    assert client.post(f"/admin/catalog/plan/{plan.pk}/change/", {"price": 1}).status_code == 403
    assert "suspend_selected" in client.get("/admin/resellers/reseller/").content.decode()
    client.post(
        "/admin/resellers/reseller/",
        {"action": "suspend_selected", "_selected_action": [actors.bob.pk], "reason": "late"},
    )
    assert Reseller.objects.get(pk=actors.bob.pk).status == "suspended"


def test_admin_manages_staff_and_plans(actors: Actors) -> None:
    client = console_client(make_staff("ada", roles.ADMIN))
    assert client.get("/admin/auth/user/").status_code == 200
    assert client.get("/admin/auth/user/add/").status_code == 200
    assert client.get("/admin/audit/auditentry/").status_code == 200
    plan = Plan.objects.get(code="day-1g")
    page = client.get(f"/admin/catalog/plan/{plan.pk}/change/").content.decode()
    assert 'name="price"' in page  # an editable field, not a read-only one


def test_support_revokes_a_customers_app_token_and_finance_cannot(db: None) -> None:
    token, _customer = make_customer("+8613600000301")
    row = AppToken.objects.get()
    finance = console_client(make_staff("fay", roles.FINANCE))
    assert finance.get("/admin/accounts/apptoken/").status_code == 403
    finance.post("/admin/accounts/apptoken/", {"action": "revoke", "_selected_action": [row.pk]})
    row.refresh_from_db()
    assert row.revoked_at is None

    support = console_client(make_staff("sam", roles.SUPPORT))
    assert 'value="revoke"' in support.get("/admin/accounts/apptoken/").content.decode()
    support.post("/admin/accounts/apptoken/", {"action": "revoke", "_selected_action": [row.pk]})
    row.refresh_from_db()
    assert row.revoked_at is not None
    assert app(token).get("/api/v1/devices").status_code == 401
