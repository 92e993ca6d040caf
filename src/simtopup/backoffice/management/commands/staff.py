"""`simtopup staff add|link|role|list`: the operator's staff (the console's users).

``add --email E --role R`` makes a staff member in a role (backoffice/roles.py) and prints a
one-time enrolment link where they set a password and enrol an authenticator app; ``link``
prints a new one (a lost phone). Every change writes one audit row (actor ``cli:<os user>``)
in the same transaction as the change (audit/log.py).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from simtopup.audit.log import cli_actor, record
from simtopup.audit.models import Action
from simtopup.backoffice import enrolment, roles
from simtopup.core.errors import DomainError


class Command(BaseCommand):
    help = "Manage the operator's staff (console users): add, enrolment link, role, list."

    def add_arguments(self, parser: Any) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser(
            "add", help="add a staff member in a role; prints a one-time enrolment link"
        )
        add.add_argument("--email", required=True)
        add.add_argument("--role", required=True, choices=roles.ROLES)
        link = sub.add_parser(
            "link", help="a new one-time enrolment link (password and authenticator)"
        )
        link.add_argument("--email", required=True)
        role = sub.add_parser("role", help="give a staff member another role")
        role.add_argument("--email", required=True)
        role.add_argument("--role", required=True, choices=roles.ROLES)
        sub.add_parser("list", help="staff members and their roles")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        getattr(self, f"_{action}")(**options)

    def _add(self, *, email: str, role: str, **options: Any) -> None:
        try:
            user, _invite, url = enrolment.add_staff(email, role, actor=cli_actor())
        except DomainError as exc:
            hint = " (`simtopup staff link`)" if exc.code == "staff_exists" else ""
            raise CommandError(f"{exc.message}{hint}") from None
        self._print_link(user.get_username(), url)

    def _link(self, *, email: str, **options: Any) -> None:
        user = _staff(email)
        _invite, url = enrolment.new_link(user, actor=cli_actor())
        self._print_link(user.get_username(), url)

    def _role(self, *, email: str, role: str, **options: Any) -> None:
        user = _staff(email)
        before = roles.role_of(user)
        if before == role and not user.is_superuser:
            self.stdout.write(f"{user.get_username()} is {role} already")
            return
        with transaction.atomic():
            roles.give_role(user, role)
            record(
                Action.ROLE_CHANGE,
                user,
                actor=cli_actor(),
                before={"role": before},
                after={"role": role},
            )
        self.stdout.write(f"{user.get_username()}: {before} -> {role}")

    def _list(self, **options: Any) -> None:
        for user in get_user_model()._default_manager.filter(is_staff=True).order_by("username"):
            state = "active" if user.is_active else "inactive"
            self.stdout.write(f"{user.get_username()}\t{roles.role_of(user) or '-'}\t{state}")

    def _print_link(self, name: str, url: str) -> None:
        self.stdout.write(f"staff member: {name}")
        self.stdout.write(
            f"enrolment link (once, for {settings.STAFF_ENROL_HOURS} hours; give it to them"
            " only): " + url
        )


def _staff(email: str) -> Any:
    user = (
        get_user_model()
        ._default_manager.filter(username__iexact=email.strip(), is_staff=True)
        .first()
    )
    if user is None:
        raise CommandError(f"no staff member {email!r} (`simtopup staff add`)")
    return user
