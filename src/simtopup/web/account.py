"""Log in / sign up on the website with a one-time code, and log out.

Two steps: the visitor types a mobile number or an email address and gets a code
(``accounts.login.request_code``, rate limited), then types the code
(``accounts.login.exchange_code``; the first login creates the account). The answer is the
same whether an account exists or not. Logging in rotates the session key (no session
fixation); logging out is a POST with the CSRF token.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.middleware.csrf import rotate_token
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.utils import translation
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods, require_POST

from simtopup.accounts.login import Identity, parse_identity, request_code, spend_code
from simtopup.accounts.models import IdentityKind
from simtopup.core.errors import DomainError
from simtopup.core.http import client_ip, safe_next
from simtopup.orders.receipts import normalise_language
from simtopup.web.session import current_customer, log_in, log_out

PENDING = "simtopup_login_pending"  # the identity a code was sent to, between the steps


class IdentityForm(forms.Form):
    identity = forms.CharField(
        label=_("Mobile number or email"),
        max_length=254,
        help_text=_("We send a 6-digit one-time code to it. New here? This creates your account."),
        widget=forms.TextInput(
            attrs={"autocomplete": "username", "autocapitalize": "off", "spellcheck": "false"}
        ),
    )


class CodeForm(forms.Form):
    code = forms.CharField(
        label=_("One-time code"),
        max_length=20,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code",
                "inputmode": "numeric",
                "pattern": "[0-9 ]*",
                "autocapitalize": "off",
            }
        ),
    )


def page_language(request: HttpRequest) -> str:
    return normalise_language(getattr(request, "LANGUAGE_CODE", None) or translation.get_language())


def after_login_url() -> str:
    """My devices once that page exists, else the home page."""
    try:
        return reverse("web:devices")
    except NoReverseMatch:
        return reverse("home")


def with_headers(response: HttpResponse, headers: dict[str, str]) -> HttpResponse:
    """The error's headers (``Retry-After`` of a rate limit) on the page that shows it."""
    for name, value in headers.items():
        response[name] = value
    return response


def _identity_from_text(text: str) -> Identity:
    text = text.strip()
    if "@" in text:
        return parse_identity(None, text)
    return parse_identity(text, None)


def _with_next(url: str, request: HttpRequest) -> str:
    target = safe_next(request, "")
    return f"{url}?{urlencode({'next': target})}" if target else url


@require_http_methods(["GET", "POST"])
def login(request: HttpRequest) -> HttpResponse:
    """Step 1: where to send the code."""
    if current_customer(request) is not None:
        return HttpResponseRedirect(safe_next(request, after_login_url()))
    form = IdentityForm(request.POST or None)
    status, headers = 200, {}
    if request.method == "POST" and form.is_valid():
        try:
            identity = _identity_from_text(form.cleaned_data["identity"])
            request_code(identity, client_ip(request), page_language(request))
        except DomainError as exc:
            form.add_error("identity", str(exc.message))
            status = exc.status
            headers = exc.headers
        else:
            request.session[PENDING] = {"kind": str(identity.kind), "value": identity.value}
            return HttpResponseRedirect(_with_next(reverse("web:login-code"), request))
    elif request.method == "POST":
        status = 422
    response = render(
        request,
        "web/login.html",
        {"step": "identity", "form": form, "next": safe_next(request, "")},
        status=status,
    )
    return with_headers(response, headers)


def _pending(request: HttpRequest) -> Identity | None:
    pending: Any = request.session.get(PENDING)
    if not isinstance(pending, dict) or pending.get("kind") not in IdentityKind.values:
        return None
    return Identity(IdentityKind(pending["kind"]), str(pending.get("value", "")))


@require_http_methods(["GET", "POST"])
def login_code(request: HttpRequest) -> HttpResponse:
    """Step 2: the code that was sent."""
    identity = _pending(request)
    if identity is None:
        return HttpResponseRedirect(_with_next(reverse("web:login"), request))
    form = CodeForm(request.POST or None)
    status, headers = 200, {}
    if request.method == "POST" and form.is_valid():
        code = "".join(form.cleaned_data["code"].split())
        try:
            customer = spend_code(identity, code, language=page_language(request))
        except DomainError as exc:
            form.add_error("code", str(exc.message))
            status = exc.status
            headers = exc.headers
        else:
            target = safe_next(request, after_login_url())
            log_in(request, customer)
            request.session.pop(PENDING, None)
            rotate_token(request)  # a new CSRF secret too, as django.contrib.auth does
            return HttpResponseRedirect(target)
    elif request.method == "POST":
        status = 422
    response = render(
        request,
        "web/login.html",
        {
            "step": "code",
            "form": form,
            "sent_to": identity.value,
            "by_sms": identity.kind == IdentityKind.PHONE,
            "minutes": max(1, settings.LOGIN_CODE_TTL_SECONDS // 60),
            "next": safe_next(request, ""),
        },
        status=status,
    )
    return with_headers(response, headers)


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    log_out(request)
    return HttpResponseRedirect(reverse("home"))
