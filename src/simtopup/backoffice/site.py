"""The console's admin site (``admin.site``, made by admin_config.ConsoleAdminConfig): a staff
member gets in only with a password and a second factor (backoffice/two_factor.py)."""

from __future__ import annotations

from functools import wraps
from typing import Any
from urllib.parse import urlencode

import segno
from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect

from simtopup.backoffice import enrolment, two_factor
from simtopup.core.http import safe_next
from simtopup.orders.receipts import customer_zone, zone_label


class LoginForm(forms.Form):
    username = forms.CharField(
        label=gettext_lazy("User name"),
        max_length=150,
        widget=forms.TextInput(attrs={"autofocus": True, "autocomplete": "username"}),
    )
    password = forms.CharField(
        label=gettext_lazy("Password"),
        max_length=200,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )
    otp_token = forms.CharField(
        label=gettext_lazy("Code from your authenticator app, or a recovery code"),
        required=False,
        max_length=20,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "size": 10}
        ),
    )


class ConfirmForm(forms.Form):
    otp_token = forms.CharField(
        label=gettext_lazy("The code your authenticator app shows now"),
        max_length=20,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}
        ),
    )


class LinkForm(ConfirmForm):
    """An enrolment link's form: a password (required when the staff member has none yet)
    and the authenticator's code."""

    new_password1 = forms.CharField(
        label=gettext_lazy("New password"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    new_password2 = forms.CharField(
        label=gettext_lazy("The new password again"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    field_order = ["new_password1", "new_password2", "otp_token"]

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        self.user = user
        super().__init__(*args, **kwargs)
        if user.has_usable_password():
            self.fields["new_password1"].help_text = _("Leave empty to keep your password.")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        first, second = data.get("new_password1") or "", data.get("new_password2") or ""
        if not first and not self.user.has_usable_password():
            self.add_error("new_password1", _("Choose a password."))
        elif first != second:
            self.add_error("new_password2", _("The two passwords do not match."))
        elif first:
            try:
                password_validation.validate_password(first, self.user)
            except ValidationError as exc:
                self.add_error("new_password1", exc)
        return data


class ConsoleSite(admin.AdminSite):
    site_header = gettext_lazy("simtopup operator console")
    site_title = "simtopup"
    # The home page: the dashboard above the app list, for staff who may see it.
    index_template = "backoffice/index.html"

    def index(self, request: HttpRequest, extra_context: Any = None) -> TemplateResponse:
        from simtopup.backoffice.dashboard import home_context

        return super().index(
            request, extra_context={**home_context(request), **(extra_context or {})}
        )

    def each_context(self, request: HttpRequest) -> dict[str, Any]:
        zone = timezone.get_current_timezone()
        return {
            **super().each_context(request),
            "console_zone": _("times in %(zone)s") % {"zone": zone_label(zone, timezone.now())},
        }

    def admin_view(self, view: Any, cacheable: bool = False) -> Any:
        """Every console page shows times in the operator's zone (``DISPLAY_TIME_ZONE``), as
        the dashboard counts its days: the stock lists and forms too, not UTC unlabelled."""
        inner = super().admin_view(view, cacheable)

        @wraps(inner)
        def in_operator_zone(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            with timezone.override(customer_zone(None)):
                response = inner(request, *args, **kwargs)
                # A TemplateResponse renders after the view returns: render it in the zone.
                if callable(getattr(response, "render", None)) and not response.is_rendered:
                    response.render()
                return response

        return in_operator_zone

    def has_permission(self, request: HttpRequest) -> bool:
        user = request.user
        verified = getattr(user, "is_verified", None)
        return super().has_permission(request) and verified is not None and bool(verified())

    def get_urls(self) -> list[Any]:
        own: list[URLPattern] = [
            path("enrol/", self.enrol, name="enrol"),
            path("enrol/recovery-codes/", self.recovery_codes, name="recovery-codes"),
            path("enrol/<str:token>/", self.enrol_link, name="enrol-link"),
        ]
        # The console's own pages (each module wraps its views in ``self.admin_view`` and
        # checks the permission each one states).
        from simtopup.backoffice import (
            desk,
            desk_actions,
            desk_refunds,
            reconciliation,
            staff_pages,
            statements,
        )

        for module in (desk, desk_actions, desk_refunds, reconciliation, statements, staff_pages):
            own += module.urls(self)
        return own + super().get_urls()

    def _next(self, request: HttpRequest) -> str:
        return safe_next(request, reverse("admin:index", current_app=self.name))

    def login(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        return _login(request, self, extra_context)

    def enrol(self, request: HttpRequest) -> HttpResponse:
        return _enrol(request, self)

    def recovery_codes(self, request: HttpRequest) -> HttpResponse:
        return _recovery_codes(request, self)

    def enrol_link(self, request: HttpRequest, token: str) -> HttpResponse:
        return _enrol_link(request, self, token)


@never_cache
@csrf_protect
def _login(request: HttpRequest, site: ConsoleSite, extra_context: Any = None) -> HttpResponse:
    from simtopup.backoffice import passkeys

    if request.method == "GET" and site.has_permission(request):
        return HttpResponseRedirect(site._next(request))
    form = LoginForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST" and form.is_valid():
        outcome = two_factor.attempt(
            request,
            form.cleaned_data["username"].strip(),
            form.cleaned_data["password"],
            form.cleaned_data["otp_token"],
            method="passkey" if request.POST.get("method") == "passkey" else "code",
        )
        if outcome.device is not None:
            return HttpResponseRedirect(site._next(request))
        if outcome.enrol:
            return redirect("admin:enrol")
        if outcome.passkey:
            target = reverse("admin:login-passkey")
            following = request.POST.get("next") or ""
            return HttpResponseRedirect(
                target + ("?" + urlencode({"next": following}) if following else "")
            )
        form.add_error(None, outcome.error)
        status = outcome.status
    context = {
        **site.each_context(request),
        "title": _("Log in"),
        "form": form,
        "app_path": request.get_full_path(),
        "next": request.POST.get("next") or request.GET.get("next") or "",
        "passkeys_available": passkeys.available(),
        "enrol_at_login": settings.STAFF_ENROL_AT_LOGIN,
        **(extra_context or {}),
    }
    request.current_app = site.name
    return TemplateResponse(request, "backoffice/login.html", context, status=status)


@never_cache
@csrf_protect
def _enrol(request: HttpRequest, site: ConsoleSite) -> HttpResponse:
    user = two_factor.enrolling_user(request)
    if user is None:
        return redirect("admin:login")
    device = two_factor.pending_device(user)
    form = ConfirmForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        codes = two_factor.confirm(request, user, form.cleaned_data["otp_token"])
        if codes is not None:
            request.session[two_factor.RECOVERY_SESSION_KEY] = codes
            return redirect("admin:recovery-codes")
        form.add_error("otp_token", _("That code is not right: try the one shown now."))
    uri = device.config_url
    context = {
        **site.each_context(request),
        "title": _("Set up your authenticator app"),
        "form": form,
        "staff_name": user.get_username(),
        "qr": _qr_svg(uri, _("QR code for your authenticator app")),
        "secret": _secret_of(uri),
    }
    request.current_app = site.name
    return TemplateResponse(request, "backoffice/enrol.html", context)


def _qr_svg(uri: str, title: str) -> SafeString:
    """The QR code of ``uri`` as inline SVG that scales with the page; our own segno output,
    not user input: safe to inline."""
    svg = segno.make(uri, error="m").svg_inline(
        scale=1, border=4, omitsize=True, dark="#000", light="#fff", title=title
    )
    return mark_safe(svg)  # noqa: S308


@never_cache
@csrf_protect
def _enrol_link(request: HttpRequest, site: ConsoleSite, token: str) -> HttpResponse:
    """A one-time enrolment link (`simtopup staff add` / `staff link`): set a password and
    enrol an authenticator app; used once, when the code is right."""
    invite = enrolment.find(token)
    if invite is None:
        return _link_gone(request, site)
    user = invite.user
    device = two_factor.pending_device(user)
    form = LinkForm(request.POST if request.method == "POST" else None, user=user)
    if request.method == "POST" and form.is_valid():
        try:
            codes = two_factor.confirm(
                request,
                user,
                form.cleaned_data["otp_token"],
                invite=invite,
                password=form.cleaned_data["new_password1"] or None,
            )
        except two_factor.LinkUsed:
            return _link_gone(request, site)
        if codes is not None:
            request.session[two_factor.RECOVERY_SESSION_KEY] = codes
            return redirect("admin:recovery-codes")
        form.add_error("otp_token", _("That code is not right: try the one shown now."))
    uri = device.config_url
    context = {
        **site.each_context(request),
        "title": _("Set up your authenticator app"),
        "form": form,
        "staff_name": user.get_username(),
        "qr": _qr_svg(uri, _("QR code for your authenticator app")),
        "secret": _secret_of(uri),
    }
    request.current_app = site.name
    return TemplateResponse(request, "backoffice/enrol.html", context)


def _link_gone(request: HttpRequest, site: ConsoleSite) -> HttpResponse:
    # A form for admin/login.html's ``{% csp_nonce_attr form.media %}`` (without one, the
    # bare nonce attribute shows as text at the top of the page).
    context = {
        **site.each_context(request),
        "title": _("This link cannot be used"),
        "form": forms.Form(),
    }
    request.current_app = site.name
    return TemplateResponse(request, "backoffice/link_gone.html", context, status=410)


def _secret_of(uri: str) -> str:
    """The base32 secret of an otpauth:// URI, in groups of four, to type in by hand."""
    from urllib.parse import parse_qs, urlsplit

    secret = parse_qs(urlsplit(uri).query).get("secret", [""])[0]
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


@never_cache
def _recovery_codes(request: HttpRequest, site: ConsoleSite) -> HttpResponse:
    """The new recovery codes, shown once (taken out of the session as they are shown)."""
    codes = request.session.pop(two_factor.RECOVERY_SESSION_KEY, None)
    renewed = request.session.pop(two_factor.RECOVERY_RENEWED_KEY, False)
    if not codes or not site.has_permission(request):
        return redirect("admin:index")
    context = {
        **site.each_context(request),
        "title": _("Your recovery codes"),
        "codes": codes,
        "renewed": renewed,
    }
    request.current_app = site.name
    return TemplateResponse(request, "backoffice/recovery_codes.html", context)
