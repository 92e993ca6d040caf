"""Help: the questions customers ask, and a contact form to customer service.

The form stores a support ticket (``support.actions.create_ticket``, rate limited per IP)
and tells the operator by email after the commit; the visitor is sent back to the page with
a confirmation (post/redirect/get).
"""

from __future__ import annotations

from django import forms
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods

from simtopup.accounts.login import parse_email, parse_phone
from simtopup.core.errors import DomainError
from simtopup.core.http import client_ip
from simtopup.support.actions import create_ticket
from simtopup.support.models import ReplyChannel
from simtopup.web.account import page_language, with_headers
from simtopup.web.session import current_customer


class ContactForm(forms.Form):
    name = forms.CharField(label=_("Your name"), max_length=100, required=False)
    reply_to = forms.CharField(
        label=_("Mobile number or email for our reply"),
        max_length=254,
        widget=forms.TextInput(attrs={"autocomplete": "email", "autocapitalize": "off"}),
    )
    device = forms.CharField(
        label=_("Device ID or serial number"),
        max_length=64,
        required=False,
        help_text=_("If your question is about a card: the ICCID, IMEI or serial on its label."),
        widget=forms.TextInput(attrs={"autocapitalize": "characters", "spellcheck": "false"}),
    )
    message = forms.CharField(
        label=_("Your message"),
        min_length=10,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 5}),
    )

    def clean_reply_to(self) -> tuple[str, str]:
        text = self.cleaned_data["reply_to"].strip()
        try:
            if "@" in text:
                return ReplyChannel.EMAIL, parse_email(text)
            return ReplyChannel.PHONE, parse_phone(text)
        except DomainError:
            raise forms.ValidationError(
                _("Enter a mobile number (e.g. 138 0013 8000) or an email address."),
                code="invalid_reply_to",
            ) from None


# The confirmation after sending: kept in the session for the next page, and its element's id.
SENT_KEY = "web.help.sent"
SENT_ANCHOR = "contact-sent"


def _customer_contact(request: HttpRequest) -> str:
    customer = current_customer(request)
    return (customer.phone or customer.email or "") if customer else ""


@require_http_methods(["GET", "POST"])
def help_page(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = ContactForm(request.POST)
        status, headers = 422, {}
        if form.is_valid():
            channel, reply_to = form.cleaned_data["reply_to"]
            try:
                ticket = create_ticket(
                    reply_channel=channel,
                    reply_to=reply_to,
                    message=form.cleaned_data["message"],
                    name=form.cleaned_data["name"],
                    device=form.cleaned_data["device"],
                    language=page_language(request),
                    ip=client_ip(request),
                    customer=current_customer(request),
                )
            except DomainError as exc:
                form.add_error(None, str(exc.message))
                status = exc.status
                headers = exc.headers
            else:
                # Shown once, in the contact section, where the visitor is: the form posts
                # to #contact and a redirect keeps that fragment unless it names its own, so
                # a message at the top of the page would land off-screen on a phone.
                request.session[SENT_KEY] = gettext(
                    "Thank you: your message was received (ticket #%(number)s). "
                    "Customer service will reply to %(reply_to)s."
                ) % {"number": ticket.pk, "reply_to": reply_to}
                return HttpResponseRedirect(reverse("web:help") + "#" + SENT_ANCHOR)
    else:
        form = ContactForm(initial={"reply_to": _customer_contact(request)})
        status, headers = 200, {}
    try:
        topup_url = reverse("web:topup")
    except NoReverseMatch:
        topup_url = ""
    response = render(
        request,
        "web/help.html",
        {
            "form": form,
            "topup_url": topup_url,
            "sent": request.session.pop(SENT_KEY, "") if request.method == "GET" else "",
            "sent_anchor": SENT_ANCHOR,
        },
        status=status,
    )
    return with_headers(response, headers)
