"""Reseller portal test helpers: staff members of alice's and bob's resellers."""

from __future__ import annotations

import re
from typing import Any

from django.test import Client

from simtopup.resellers.actions import add_member, password_changed
from simtopup.resellers.models import Reseller, ResellerMember

PASSWORD = "correct horse battery staple 42"


def make_staff(reseller: Reseller, email: str, role: str = "owner") -> ResellerMember:
    """A staff member who has already chosen the password ``PASSWORD``."""
    member, _temporary = add_member(reseller, email, role)
    member.user.set_password(PASSWORD)
    member.user.save(update_fields=["password"])
    password_changed(member)
    member.refresh_from_db()
    return member


def log_in(client: Client, email: str, password: str = PASSWORD, **extra: Any) -> Any:
    return client.post("/agent/login", {"username": email, "password": password}, **extra)


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html) or re.search(
        rf'value="([^"]*)"[^>]*name="{name}"', html
    )
    assert match, f"no hidden field {name}"
    return match.group(1)
