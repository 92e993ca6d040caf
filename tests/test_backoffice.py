"""The operator console shows customers, tokens, payments, provider events, refunds, quotes and
automatic top-up rules — read-only, with tokens revocable from the list."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.test import Client, TestCase

from simtopup.accounts.models import AppToken
from simtopup.payments.models import Payment, PaymentEvent
from tests.payments_support import app, make_customer, pay_on_page, post_json, run_tasks
from tests.staff_support import console_client
from tests.support import Actors


def operator() -> Client:
    user = User.objects.create_superuser("operator", "op@example.com", "pw-not-used")
    return console_client(user)


def test_the_console_lists_customer_payments_read_only(actors: Actors, settings) -> None:
    settings.PAYMENT_PROVIDER = "sandbox"
    settings.SANDBOX_WEBHOOK_DELIVERY = "direct"
    token, customer = make_customer("+8613600000201")
    order = post_json(
        app(token),
        "/api/v1/orders",
        {"device": actors.device.iccid, "plan": "day-1g", "payment_method": "card"},
    ).json()
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert pay_on_page(order["payment"]["checkout_url"]).status_code == 302
        run_tasks()
    payment = Payment.objects.get()
    assert PaymentEvent.objects.exists()
    console = operator()
    pages = {
        "/admin/accounts/customer/": customer.phone,
        "/admin/accounts/apptoken/": AppToken.objects.get().prefix,
        "/admin/payments/payment/": payment.reference,
        "/admin/payments/paymentevent/": "payment.succeeded",
        "/admin/payments/refund/": "0 refunds",
        "/admin/orders/quote/": "0 quotes",
        "/admin/usage/autotopuprule/": "0 automatic top-up rules",
        "/admin/resellers/resellermember/": "0 reseller staff",
        "/admin/support/supportticket/": "0 support tickets",
    }
    for path, text in pages.items():
        response = console.get(path)
        assert response.status_code == 200, path
        assert text in response.content.decode(), path
    detail = console.get(f"/admin/payments/payment/{payment.pk}/change/")
    assert detail.status_code == 200
    assert 'type="submit" value="Save"' not in detail.content.decode()  # read-only
    assert (
        "token_hash"
        not in console.get(
            f"/admin/accounts/apptoken/{AppToken.objects.get().pk}/change/"
        ).content.decode()
    )


def test_an_operator_revokes_a_token_at_once(db: None) -> None:
    token, _customer = make_customer("+8613600000202")
    assert app(token).get("/api/v1/devices").status_code == 200
    row = AppToken.objects.get()
    response = operator().post(
        "/admin/accounts/apptoken/",
        {"action": "revoke", "_selected_action": [row.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "1 token revoked." in response.content.decode()
    row.refresh_from_db()
    assert row.revoked_at is not None
    assert app(token).get("/api/v1/devices").status_code == 401


def test_logging_out_of_the_console_keeps_a_customer_login_in_the_same_browser(db: None) -> None:
    from django.urls import reverse

    from simtopup.web.session import SESSION_KEY
    from tests.web_support import customer

    console = operator()
    me = customer()
    session = console.session
    session[SESSION_KEY] = me.pk
    session.save()
    assert console.get("/admin/").status_code == 200
    assert reverse("admin:logout") == "/admin/logout/"

    before = console.cookies["sessionid"].value
    response = console.post("/admin/logout/")
    assert response.status_code == 200, response.content[:300]
    assert console.cookies["sessionid"].value != before
    assert console.get("/admin/").status_code == 302  # the operator is logged out
    assert console.get(reverse("web:devices")).status_code == 200  # the customer is not


def test_a_customer_logging_out_keeps_the_console_login_and_its_second_factor(
    db: None,
) -> None:
    from django.urls import reverse

    from simtopup.web.session import SESSION_KEY
    from tests.web_support import customer

    console = operator()
    session = console.session
    session[SESSION_KEY] = customer().pk
    session.save()
    assert console.get(reverse("web:devices")).status_code == 200
    console.post(reverse("web:logout"))
    assert console.get(reverse("web:devices")).status_code == 302  # the customer is out
    assert console.get("/admin/").status_code == 200  # the operator, both factors, is not
