"""Log in / sign up on the website with a one-time code, and log out."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import translation

from simtopup.accounts.models import AppToken, Customer, LoginCode
from simtopup.web.account import PENDING
from simtopup.web.session import SESSION_KEY
from tests.customer_support import NO_LIMITS, captured_messages, code_in
from tests.web_home_support import (
    HTML_LANG,
    LANGUAGES,
    client_in,
    csrf_token,
    field_errors,
    page,
)

PHONE = "+8613800138000"


@pytest.fixture(autouse=True)
def _generous_limits(settings: Any) -> None:
    for name, value in NO_LIMITS.items():
        setattr(settings, name, value)


def ask_code(client: Client, identity: str, **extra: str) -> tuple[Any, str | None]:
    """Step 1: (the response, the code that was sent, if any)."""
    with captured_messages() as sent:
        response = client.post(reverse("web:login"), {"identity": identity, **extra})
    return response, (code_in(sent[-1]) if sent else None)


def log_in(client: Client, identity: str = PHONE, **extra: str) -> Any:
    response, code = ask_code(client, identity, **extra)
    assert response.status_code == 302, page(response)
    assert code
    return client.post(response["Location"], {"code": code, **extra})


@pytest.mark.parametrize("language", LANGUAGES)
def test_it_shows_the_login_form_in_each_language(db: None, language: str) -> None:
    response = client_in(language).get(reverse("web:login"))
    assert response.status_code == 200
    html = page(response)
    assert f'<html lang="{HTML_LANG[language]}">' in html
    assert '<label for="id_identity">' in html
    with translation.override(language):
        assert translation.gettext("Mobile number or email") in html
        assert translation.gettext("Send me a code") in html


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_new_customer_signs_up_by_sms_in_the_page_language(db: None, language: str) -> None:
    client = client_in(language)
    response, code = ask_code(client, "138 0013 8000")  # national format, read as CN
    assert response.status_code == 302
    assert response["Location"] == reverse("web:login-code")
    code_page = client.get(response["Location"])
    assert code_page.status_code == 200
    assert PHONE in page(code_page)
    with translation.override(language):
        assert translation.gettext("One-time code") in page(code_page)
    session_before = client.session.session_key

    done = client.post(reverse("web:login-code"), {"code": code})

    assert done.status_code == 302
    assert done["Location"] == reverse("web:devices")
    customer = Customer.objects.get(phone=PHONE)
    assert customer.language == language
    assert customer.last_login_at is not None
    assert client.session[SESSION_KEY] == customer.pk
    assert client.session.session_key != session_before  # no session fixation
    assert PENDING not in client.session
    # The website uses its session: no app token is issued for it.
    assert not AppToken.objects.filter(customer=customer).exists()
    home = client.get("/")
    assert f'action="{reverse("web:logout")}"' in page(home)


def test_an_existing_customer_logs_in_by_email(db: None) -> None:
    existing = Customer.objects.create(email="li@example.com", language="en")
    client = client_in("zh-hans")
    response = log_in(client, " Li@Example.com ")
    assert response.status_code == 302
    assert Customer.objects.count() == 1
    assert client.session[SESSION_KEY] == existing.pk
    existing.refresh_from_db()
    assert existing.language == "en"  # an existing account keeps its language


def test_the_answer_is_the_same_whether_the_account_exists(db: None) -> None:
    Customer.objects.create(email="known@example.com")
    pages = []
    for email in ["known@example.com", "nobody@example.com"]:
        client = client_in("en")
        response, code = ask_code(client, email)
        assert response.status_code == 302
        assert code
        pages.append(page(client.get(response["Location"])).replace(email, "EMAIL"))
    strip = [p.split('name="csrfmiddlewaretoken" value="')[0] for p in pages]
    assert strip[0] == strip[1]


def test_it_returns_to_the_page_that_asked_for_login(db: None) -> None:
    client = client_in("en")
    response, code = ask_code(client, PHONE, next="/help")
    assert response["Location"] == reverse("web:login-code") + "?next=%2Fhelp"
    assert 'name="next" value="/help"' in page(client.get(response["Location"]))
    done = client.post(response["Location"], {"code": code, "next": "/help"})
    assert done["Location"] == "/help"


def test_it_refuses_to_return_to_another_site(db: None) -> None:
    response = log_in(client_in("en"), next="https://evil.example/steal")
    assert response["Location"] == reverse("web:devices")


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_wrong_code_is_shown_next_to_the_code_field(db: None, language: str) -> None:
    client = client_in(language)
    response, code = ask_code(client, PHONE)
    assert code
    wrong = f"{(int(code) + 1) % 1000000:06d}"

    response = client.post(reverse("web:login-code"), {"code": wrong})

    assert response.status_code == 422
    with translation.override(language):
        assert translation.gettext(
            "The code is wrong or has expired. Check the latest message we sent, or ask for a "
            "new code."
        ) in field_errors(response, "code")
    assert SESSION_KEY not in client.session
    assert Customer.objects.count() == 0
    assert LoginCode.objects.get().attempts == 1
    # The right code still works afterwards.
    assert client.post(reverse("web:login-code"), {"code": code}).status_code == 302


def test_an_empty_code_is_required(db: None) -> None:
    client = client_in("en")
    ask_code(client, PHONE)
    response = client.post(reverse("web:login-code"), {"code": ""})
    assert response.status_code == 422
    assert "This field is required." in field_errors(response, "code")


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_bad_address_is_shown_next_to_the_field(db: None, language: str) -> None:
    client = client_in(language)
    for typed, message in [
        ("12345", "Enter a valid mobile phone number, e.g. +86 138 0013 8000."),
        ("not-an-email@", "Enter a valid email address."),
    ]:
        response, code = ask_code(client, typed)
        assert response.status_code == 422
        assert code is None
        with translation.override(language):
            assert translation.gettext(message) in field_errors(response, "identity")
    assert LoginCode.objects.count() == 0


def test_asking_too_often_is_refused_next_to_the_field(db: None, settings: Any) -> None:
    settings.LOGIN_CODE_IDENTITY_LIMITS = ["1/60"]
    client = client_in("en")
    first, code = ask_code(client, PHONE)
    assert first.status_code == 302
    assert code

    again, second_code = ask_code(client, PHONE)

    assert again.status_code == 429
    assert 1 <= int(again["Retry-After"]) <= 60
    assert second_code is None
    assert "Too many requests. Please wait" in field_errors(again, "identity")
    assert LoginCode.objects.count() == 1
    # The code already sent stays valid.
    assert client.post(reverse("web:login-code"), {"code": code}).status_code == 302


def test_the_code_step_needs_the_first_step(db: None) -> None:
    response = client_in("en").get(reverse("web:login-code") + "?next=/help")
    assert response.status_code == 302
    assert response["Location"] == reverse("web:login") + "?next=%2Fhelp"


def test_a_logged_in_customer_skips_the_login_page(db: None) -> None:
    client = client_in("en")
    log_in(client)
    response = client.get(reverse("web:login"))
    assert response.status_code == 302
    assert response["Location"] == reverse("web:devices")


def test_the_login_forms_need_the_csrf_token(db: None) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post(reverse("web:login"), {"identity": PHONE})
    assert response.status_code == 403
    assert LoginCode.objects.count() == 0
    form = client.get(reverse("web:login"))
    with captured_messages() as sent:
        response = client.post(
            reverse("web:login"),
            {"identity": PHONE, "csrfmiddlewaretoken": csrf_token(form)},
        )
    assert response.status_code == 302
    code = code_in(sent[-1])
    assert client.post(reverse("web:login-code"), {"code": code}).status_code == 403
    assert SESSION_KEY not in client.session


def test_logout_needs_a_post_with_the_csrf_token(db: None) -> None:
    client = Client(enforce_csrf_checks=True)
    form = client.get(reverse("web:login"))
    with captured_messages() as sent:
        client.post(
            reverse("web:login"), {"identity": PHONE, "csrfmiddlewaretoken": csrf_token(form)}
        )
    code_form = client.get(reverse("web:login-code"))
    csrf_before = client.cookies["csrftoken"].value
    response = client.post(
        reverse("web:login-code"),
        {"code": code_in(sent[-1]), "csrfmiddlewaretoken": csrf_token(code_form)},
    )
    assert response.status_code == 302
    customer_id = client.session[SESSION_KEY]
    assert client.cookies["csrftoken"].value != csrf_before  # the CSRF secret rotates too

    assert client.get(reverse("web:logout")).status_code == 405
    assert client.post(reverse("web:logout")).status_code == 403
    assert client.session[SESSION_KEY] == customer_id

    home = client.get("/")
    response = client.post(reverse("web:logout"), {"csrfmiddlewaretoken": csrf_token(home)})
    assert response.status_code == 302
    assert response["Location"] == reverse("home")
    assert SESSION_KEY not in client.session
    assert f'href="{reverse("web:login")}"' in page(client.get("/"))
