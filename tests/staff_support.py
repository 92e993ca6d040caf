"""Staff members for tests of the console: made in a role, and a browser logged in as one."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.test import Client

from simtopup.backoffice.roles import give_role

PASSWORD = "pw-staff-Rz4k"


def make_staff(name: str, role: str, password: str = PASSWORD) -> User:
    user = User.objects.create_user(name, f"{name}@example.com", password, is_staff=True)
    give_role(user, role)
    return user


def console_client(user: User) -> Client:
    """A browser logged in to the console as ``user``."""
    client = Client()
    client.force_login(user)
    return client
