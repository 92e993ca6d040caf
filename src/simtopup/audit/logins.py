"""Staff logins and failed staff logins (the console's, /admin/login/) on the audit log.

Only staff: a failed login is recorded when the name belongs to a staff account or the
attempt was made at the console's login page (a name that does not exist is recorded too).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse

from simtopup.audit.log import record, staff_actor
from simtopup.audit.models import Action
from simtopup.core.http import client_ip


def _ip(request: HttpRequest | None) -> str | None:
    return client_ip(request) if request is not None else None


def logged_in(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if not getattr(user, "is_staff", False):
        return
    # The second factor, when the console's login says which (backoffice/two_factor.py).
    method = getattr(request, "staff_login_method", "")
    record(
        Action.STAFF_LOGIN,
        user,
        actor=staff_actor(user),
        ip=_ip(request),
        after={"method": method} if method else None,
    )


def _at_console_login(request: HttpRequest | None) -> bool:
    if request is None:
        return False
    try:
        return request.path == reverse("admin:login")
    except NoReverseMatch:
        return False


def login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    model = get_user_model()
    name = str(credentials.get(model.USERNAME_FIELD) or credentials.get("username") or "")[:150]
    staff = (
        model._default_manager.filter(**{model.USERNAME_FIELD: name}, is_staff=True).first()
        if name
        else None
    )
    if staff is None and not _at_console_login(request):
        return
    record(
        Action.STAFF_LOGIN_FAILED,
        staff if staff is not None else ("auth.user", ""),
        actor="anonymous",
        ip=_ip(request),
        after={"username": name},
    )
