"""The console's staff pages (issue 14, point 1): *Add a staff member* (an administrator:
the same backoffice/enrolment.add_staff as `simtopup staff add`, showing the one-time
enrolment link once), *Your sign-in methods* (a staff member's authenticator app, recovery
codes and passkeys: add or remove a passkey) and the passkey step of the login, with the
passkey ceremonies' JSON endpoints (backoffice/passkeys.py)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.middleware import csrf
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_POST
from django.views.i18n import JavaScriptCatalog
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from simtopup.audit.log import from_request
from simtopup.backoffice import enrolment, passkeys, roles, two_factor
from simtopup.core.errors import DomainError

ADD_STAFF = "auth.add_user"
ROLE_LABELS = {
    roles.SUPPORT: gettext_lazy("Customer service"),
    roles.FINANCE: gettext_lazy("Finance"),
    roles.ADMIN: gettext_lazy("Administrator"),
}


class AddStaffForm(forms.Form):
    email = forms.EmailField(label=gettext_lazy("Email"), max_length=150)
    role = forms.ChoiceField(
        label=gettext_lazy("Role"), choices=[(r, ROLE_LABELS[r]) for r in roles.ROLES]
    )


def urls(site: Any) -> list[URLPattern]:
    return [
        path("staff/add/", site.admin_view(lambda r: add_staff(r, site)), name="staff-add"),
        path(
            "sign-in-methods/",
            site.admin_view(lambda r: sign_in_methods(r, site)),
            name="sign-in-methods",
        ),
        path(
            "sign-in-methods/passkeys/<int:pk>/remove/",
            site.admin_view(require_POST(lambda r, pk: remove_passkey(r, pk))),
            name="passkey-remove",
        ),
        path(
            "sign-in-methods/recovery-codes/",
            site.admin_view(require_POST(new_recovery_codes)),
            name="recovery-codes-new",
        ),
        path(
            "sign-in-methods/passkeys/begin/",
            passkeys.RegisterBegin.as_view(),
            name="passkey-register-begin",
        ),
        path(
            "sign-in-methods/passkeys/complete/",
            passkeys.RegisterComplete.as_view(),
            name="passkey-register-complete",
        ),
        path("login/passkey/", lambda r: login_passkey(r, site), name="login-passkey"),
        path("login/passkey/begin/", passkeys.LoginBegin.as_view(), name="passkey-login-begin"),
        path(
            "login/passkey/complete/",
            passkeys.LoginComplete.as_view(),
            name="passkey-login-complete",
        ),
        # The passkey script's texts (gettext in the browser): the library's catalogue and
        # ours (locale/*/LC_MESSAGES/djangojs.po).
        path(
            "passkeys/jsi18n/",
            JavaScriptCatalog.as_view(packages=["django_otp_webauthn"]),
            name="passkey-jsi18n",
        ),
    ]


def _config(request: HttpRequest) -> dict[str, Any]:
    """The settings the library's script reads from its ``json_script`` tag."""
    return {
        "autocompleteLoginFieldSelector": None,
        "nextFieldSelector": "input[name='next']",
        "csrfToken": csrf.get_token(request),
        "beginAuthenticationUrl": reverse("admin:passkey-login-begin"),
        "completeAuthenticationUrl": reverse("admin:passkey-login-complete"),
        "beginRegistrationUrl": reverse("admin:passkey-register-begin"),
        "completeRegistrationUrl": reverse("admin:passkey-register-complete"),
    }


def add_staff(request: HttpRequest, site: Any) -> HttpResponse:
    if not request.user.has_perm(ADD_STAFF):
        raise PermissionDenied
    form = AddStaffForm(request.POST if request.method == "POST" else None)
    link = ""
    added = None
    if request.method == "POST" and form.is_valid():
        try:
            added, _invite, link = enrolment.add_staff(
                form.cleaned_data["email"], form.cleaned_data["role"], **from_request(request)
            )
        except DomainError as exc:
            form.add_error("email", str(exc.message))
    context = {
        **site.each_context(request),
        "title": _("Add a staff member"),
        "form": form,
        "link": link,
        "added": added,
        "role_label": ROLE_LABELS.get(form.cleaned_data.get("role", "")) if link else "",
        "hours": settings.STAFF_ENROL_HOURS,
    }
    request.current_app = site.name
    return TemplateResponse(request, "backoffice/staff_add.html", context)


def sign_in_methods(request: HttpRequest, site: Any) -> HttpResponse:
    user = request.user
    context = {
        **site.each_context(request),
        "title": _("Your sign-in methods"),
        "authenticators": TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk"),
        "recovery_left": StaticToken.objects.filter(
            device__user=user, device__confirmed=True
        ).count(),
        "passkeys": passkeys.passkeys_of(user),
        "passkeys_available": passkeys.available(),
        "passkey_config": _config(request),
    }
    request.current_app = site.name
    return TemplateResponse(request, "backoffice/sign_in_methods.html", context)


def new_recovery_codes(request: HttpRequest) -> HttpResponse:
    """New recovery codes for the staff member themself, shown once on the page that shows
    them after an enrolment."""
    codes = two_factor.replace_recovery_codes(request, request.user)
    request.session[two_factor.RECOVERY_SESSION_KEY] = codes
    request.session[two_factor.RECOVERY_RENEWED_KEY] = True
    return HttpResponseRedirect(reverse("admin:recovery-codes"))


def remove_passkey(request: HttpRequest, pk: int) -> HttpResponse:
    if not passkeys.remove(request, request.user, pk):
        raise Http404
    return HttpResponseRedirect(reverse("admin:sign-in-methods"))


@never_cache
@csrf_protect
def login_passkey(request: HttpRequest, site: Any) -> HttpResponse:
    user = passkeys.pending_user(request)
    if user is None:
        return redirect("admin:login")
    context = {
        **site.each_context(request),
        "title": _("Sign in with a passkey"),
        # admin/login.html prints ``{% csp_nonce_attr form.media %}``: without a form, the
        # bare nonce attribute would show as text on the page.
        "form": forms.Form(),
        "staff_name": user.get_username(),
        "next": request.GET.get("next", ""),
        "passkey_config": _config(request),
    }
    request.current_app = site.name
    return TemplateResponse(request, "backoffice/login_passkey.html", context)
