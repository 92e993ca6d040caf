"""Customers logged in on the website: one session per login, keyed by customer id.

Logging in rotates the session key (no session fixation) and logging out flushes it. The app
API uses bearer tokens instead (accounts.tokens); both end at the same Customer.

One browser can hold two logins in its one session: a customer's (this module) and a
reseller staff member's or operator's (django.contrib.auth). Logging out of one must not log
out of the other, so each side's log-out starts a new session (nothing of the old one can be
replayed) that keeps only the other side's login.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.contrib import auth
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django_otp import DEVICE_ID_SESSION_KEY

from simtopup.accounts.models import Customer

SESSION_KEY = "simtopup_customer_id"


def log_in(request: HttpRequest, customer: Customer) -> None:
    request.session.cycle_key()  # a new session key: a planted one is worth nothing
    request.session[SESSION_KEY] = customer.pk


# What django.contrib.auth keeps in the session for a logged-in user, and django_otp the
# second factor of a console login (backoffice/two_factor.py).
AUTH_SESSION_KEYS = (
    auth.SESSION_KEY,
    auth.BACKEND_SESSION_KEY,
    auth.HASH_SESSION_KEY,
    DEVICE_ID_SESSION_KEY,
)


def log_out(request: HttpRequest) -> None:
    """End the customer's login; a staff login in the same browser stays."""
    kept = {k: request.session[k] for k in AUTH_SESSION_KEYS if k in request.session}
    request.session.flush()
    request.session.update(kept)


def current_customer(request: HttpRequest) -> Customer | None:
    """The logged-in customer (cached on the request), or None."""
    if not hasattr(request, "_simtopup_customer"):
        customer_id = request.session.get(SESSION_KEY)
        customer = Customer.objects.filter(pk=customer_id).first() if customer_id else None
        request._simtopup_customer = customer  # type: ignore[attr-defined]
    return request._simtopup_customer  # type: ignore[attr-defined]


def customer_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Send visitors who are not logged in to the login page, and back here afterwards."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if current_customer(request) is None:
            query = urlencode({"next": request.get_full_path()})
            return HttpResponseRedirect(f"{reverse('web:login')}?{query}")
        return view(request, *args, **kwargs)

    return wrapped


def keeping_the_customer(logout_view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wrap a django.contrib.auth log-out view (the reseller portal's, the operator
    console's) so that a customer login in the same browser survives it."""

    @wraps(logout_view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        customer_id = request.session.get(SESSION_KEY)
        response = logout_view(request, *args, **kwargs)
        if customer_id is not None and not request.user.is_authenticated:
            request.session[SESSION_KEY] = customer_id
        return response

    return wrapped
