"""Staff roles: ``support``, ``finance`` and ``admin``, each a Django group with an explicit
set of permissions, defined here once.

``ensure_roles`` (run after every ``migrate``, backoffice/apps.py) creates the three groups
and sets each one's permissions to exactly what :data:`ROLE_PERMISSIONS` says (``admin``:
every permission there is, so a new model's come with it). A role edited by hand in the
console is put back to this definition by the next ``migrate``: change a role here.

Every console page needs its model's Django permission (``view_<model>`` to see the list,
``change_<model>`` to edit, ``add_`` / ``delete_`` to add and delete); every console action
states its permission with ``allowed_permissions`` (backoffice/admin.py), one of the custom
permissions below, which are created here beside Django's own. The CLI (``simtopup staff
add --role R``) puts a staff member in the role's group.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.apps import apps as global_apps
from django.db import DEFAULT_DB_ALIAS

from simtopup.devices import goodwill

SUPPORT = "support"
FINANCE = "finance"
ADMIN = "admin"
ROLES = (SUPPORT, FINANCE, ADMIN)

# Custom permissions (no model's add/change/delete/view says them): "app.codename" → (the
# model they are attached to, their name as Django lists it).
REVOKE_APP_TOKEN = "accounts.revoke_apptoken"
REVIEW_PAYMENT_EVENT = "payments.review_paymentevent"
ISSUE_REFUND = "payments.issue_refund"
VIEW_RECONCILIATION = "payments.view_reconciliation"
CREDIT_RESELLER = "resellers.credit_reseller"
SUSPEND_RESELLER = "resellers.suspend_reseller"
SUSPEND_DEVICE = "devices.suspend_device"
REPLY_TICKET = "support.reply_supportticket"
RETRY_FULFILMENT = "orders.retry_fulfilment"
RESEND_RECEIPT = "orders.resend_receipt"
# The desk (backoffice/desk_actions.py): support gives goodwill credit and unbinds cards;
# goodwill above SIMTOPUP_GOODWILL_APPROVAL_ABOVE needs a second person who may approve it —
# finance (and admin), never support — so that no one alone gives a large credit.
# The domain checks these two itself (devices/goodwill.py owns their names).
GRANT_GOODWILL = goodwill.GRANT_PERMISSION
APPROVE_GOODWILL = goodwill.APPROVE_PERMISSION
UNBIND_DEVICE = "devices.unbind_device"
VIEW_FINANCE_REPORTS = "ledger.view_finance_reports"

CUSTOM_PERMISSIONS: dict[str, tuple[str, str]] = {
    REVOKE_APP_TOKEN: ("apptoken", "Can revoke a customer's app token"),
    REVIEW_PAYMENT_EVENT: ("paymentevent", "Can mark a flagged payment notification reviewed"),
    ISSUE_REFUND: ("refund", "Can refund an order"),
    VIEW_RECONCILIATION: ("refund", "Can see the payment reconciliation"),
    CREDIT_RESELLER: ("reseller", "Can credit a reseller's float"),
    SUSPEND_RESELLER: ("reseller", "Can suspend or reinstate a reseller"),
    SUSPEND_DEVICE: ("device", "Can suspend or reinstate a card"),
    REPLY_TICKET: ("supportticket", "Can reply to a support ticket"),
    RETRY_FULFILMENT: ("order", "Can retry a stuck fulfilment"),
    RESEND_RECEIPT: ("order", "Can re-send a receipt"),
    GRANT_GOODWILL: ("goodwillcredit", "Can give a card goodwill credit"),
    APPROVE_GOODWILL: ("goodwillcredit", "Can approve or reject goodwill credit"),
    UNBIND_DEVICE: ("device", "Can remove a card from its customer's account"),
    VIEW_FINANCE_REPORTS: ("account", "Can see reseller statements and the ledger by day"),
}


def _view(*models: str) -> set[str]:
    """``"app.model"`` → ``"app.view_model"``."""
    return {f"{m.split('.')[0]}.view_{m.split('.')[1]}" for m in models}


# What a support agent reads while a customer is on the phone, and the support actions.
SUPPORT_PERMISSIONS = _view(
    "accounts.customer",
    "accounts.apptoken",
    "devices.device",
    "devices.goodwillcredit",
    "orders.order",
    "orders.quote",
    "payments.payment",
    "payments.refund",
    "usage.bundle",
    "usage.usagerecord",
    "usage.autotopuprule",
    "usage.alert",  # the notifications a card's story lists (backoffice/desk.py)
    "support.supportticket",
    "catalog.plan",
    "catalog.paygtariff",
    "resellers.reseller",
) | {
    "devices.change_device",  # a card's status (suspend, reinstate) and its binding PIN
    SUSPEND_DEVICE,
    REVOKE_APP_TOKEN,
    REPLY_TICKET,
    RETRY_FULFILMENT,
    RESEND_RECEIPT,
    GRANT_GOODWILL,
    UNBIND_DEVICE,
    ISSUE_REFUND,  # the desk's journey ends in a refund with a reason (desk_refunds.py)
}

# Payments, refunds, reconciliation, the ledger and the resellers' floats.
FINANCE_PERMISSIONS = _view(
    "accounts.customer",
    "devices.device",
    "devices.goodwillcredit",
    "orders.order",
    "payments.payment",
    "payments.paymentevent",
    "payments.refund",
    "ledger.account",
    "ledger.transfer",
    "ledger.ledgeraudit",
    "resellers.reseller",
    "resellers.resellerprice",
    "resellers.apikey",
    "resellers.webhookdelivery",
    "catalog.plan",
    "catalog.paygtariff",
) | {
    REVIEW_PAYMENT_EVENT,
    ISSUE_REFUND,
    VIEW_RECONCILIATION,
    CREDIT_RESELLER,
    SUSPEND_RESELLER,
    GRANT_GOODWILL,
    APPROVE_GOODWILL,
    VIEW_FINANCE_REPORTS,
}

# None: every permission there is (staff and roles, plans and prices, the audit log …).
ROLE_PERMISSIONS: dict[str, frozenset[str] | None] = {
    SUPPORT: frozenset(SUPPORT_PERMISSIONS),
    FINANCE: frozenset(FINANCE_PERMISSIONS),
    ADMIN: None,
}


def ensure_roles(
    sender: Any = None,
    *,
    using: str = DEFAULT_DB_ALIAS,
    apps: Any = global_apps,
    verbosity: int = 1,
    **kwargs: Any,
) -> None:
    """Create the custom permissions and the three groups with exactly their permissions
    (a ``post_migrate`` receiver; idempotent)."""
    from django.contrib.auth.management import create_permissions

    # Every app's own permissions first: post_migrate reaches this app before the ones
    # installed after it.
    for app_config in global_apps.get_app_configs():
        create_permissions(app_config, verbosity=0, using=using, apps=apps)
    try:
        permission_model = apps.get_model("auth", "Permission")
        group_model = apps.get_model("auth", "Group")
        content_type_model = apps.get_model("contenttypes", "ContentType")
    except LookupError:
        return
    for perm, (model, name) in CUSTOM_PERMISSIONS.items():
        app_label, codename = perm.split(".", 1)
        content_type, _ = content_type_model.objects.db_manager(using).get_or_create(
            app_label=app_label, model=model
        )
        permission_model.objects.db_manager(using).get_or_create(
            content_type=content_type, codename=codename, defaults={"name": name}
        )
    for role in ROLES:
        group, _ = group_model.objects.db_manager(using).get_or_create(name=role)
        wanted = ROLE_PERMISSIONS[role]
        if wanted is None:
            found = list(permission_model.objects.db_manager(using).all())
        else:
            found = _resolve(permission_model, wanted, using)
        group.permissions.set(found)


def _resolve(permission_model: Any, perms: Iterable[str], using: str) -> list[Any]:
    """``"app.codename"`` names → their Permission rows; a name with no row is a mistake in
    this module, refused."""
    wanted = set(perms)
    rows = [
        p
        for p in permission_model.objects.db_manager(using).select_related("content_type")
        if f"{p.content_type.app_label}.{p.codename}" in wanted
    ]
    missing = wanted - {f"{p.content_type.app_label}.{p.codename}" for p in rows}
    if missing:
        raise LookupError(f"roles name permissions that do not exist: {sorted(missing)}")
    return rows


def role_of(user: Any) -> str | None:
    """The staff member's role (the highest of admin, finance, support whose group they are
    in; a superuser is admin)."""
    if getattr(user, "is_superuser", False):
        return ADMIN
    names = set(user.groups.values_list("name", flat=True))
    return next((role for role in reversed(ROLES) if role in names), None)


def give_role(user: Any, role: str) -> None:
    """Make ``user`` a staff member in ``role`` (and in no other role)."""
    from django.contrib.auth.models import Group

    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    others = Group.objects.filter(name__in=[r for r in ROLES if r != role])
    user.groups.remove(*others)
    user.groups.add(Group.objects.get(name=role))
