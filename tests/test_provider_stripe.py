"""Stripe provider, offline: the SDK's HTTP client is replaced by a fake Stripe API that records
each request (form fields, headers) and answers with realistic objects; webhooks are signed
with a test secret exactly as Stripe signs them (``t=…,v1=HMAC-SHA256(secret, "t.payload")``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import stripe
from django.core.exceptions import ImproperlyConfigured

from simtopup.payments.providers import base
from simtopup.payments.providers.stripe import StripeProvider

SECRET = "whsec_test_0123456789abcdef"
REF = "pay_7Hk2mQ9xLr"


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]
    query: dict[str, str]


Answer = tuple[int, dict[str, Any]] | Callable[["Call"], tuple[int, dict[str, Any]]]


class FakeStripe(stripe.HTTPClient):
    """What Stripe's API would answer, per (method, path); every request recorded."""

    name = "fake"

    def __init__(self, routes: Mapping[tuple[str, str], Answer] | None = None) -> None:
        super().__init__()
        self.routes: dict[tuple[str, str], Answer] = dict(routes or {})
        self.calls: list[Call] = []

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        **kwargs: Any,
    ) -> tuple[bytes, int, Mapping[str, str]]:
        parts = urlsplit(url)
        body = post_data.decode() if isinstance(post_data, bytes) else post_data or ""
        call = Call(
            method.upper(),
            parts.path,
            dict(headers or {}),
            dict(parse_qsl(body, keep_blank_values=True)),
            dict(parse_qsl(parts.query, keep_blank_values=True)),
        )
        self.calls.append(call)
        answer = self.routes.get((call.method, call.path))
        if answer is None:
            status, payload = (
                404,
                {"error": {"type": "invalid_request_error", "code": "resource_missing"}},
            )
        elif callable(answer):
            status, payload = answer(call)
        else:
            status, payload = answer
        return json.dumps(payload).encode(), status, {"Request-Id": "req_test"}

    def close(self) -> None:
        pass


class Unreachable(FakeStripe):
    def request(self, *args: Any, **kwargs: Any) -> tuple[bytes, int, Mapping[str, str]]:
        raise stripe.APIConnectionError("connection refused", should_retry=True)


@pytest.fixture(autouse=True)
def _stripe_settings(settings: Any) -> None:
    settings.STRIPE_SECRET_KEY = "sk_test_51Fake"
    settings.STRIPE_WEBHOOK_SECRET = SECRET
    settings.STRIPE_ACCOUNT = ""
    settings.STRIPE_API_VERSION = ""
    settings.STRIPE_MAX_NETWORK_RETRIES = 0


def request(method: str = base.CARD, **changes: Any) -> base.PaymentRequest:
    fields: dict[str, Any] = {
        "reference": REF,
        "amount": 3000,
        "currency": "CNY",
        "method": method,
        "description": "month-20g for 8986…1234",
        "return_url": "https://shop.example/return/pay_7Hk2mQ9xLr",
        "notify_url": "https://shop.example/payments/webhooks/stripe",
    }
    fields.update(changes)
    return base.PaymentRequest(**fields)


def intent(status: str = "succeeded", **changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": "pi_3Test",
        "object": "payment_intent",
        "amount": 3000,
        "amount_received": 3000 if status == "succeeded" else 0,
        "currency": "cny",
        "status": status,
        "created": 1_790_000_000,
        "livemode": False,
        "metadata": {"reference": REF},
        "next_action": None,
        "last_payment_error": None,
        "cancellation_reason": None,
    }
    obj.update(changes)
    return obj


# --- creating payments ----------------------------------------------------------------------


def test_it_opens_a_checkout_session_for_cards() -> None:
    fake = FakeStripe(
        {
            ("POST", "/v1/checkout/sessions"): (
                200,
                {
                    "id": "cs_test_a1",
                    "object": "checkout.session",
                    "url": "https://checkout.stripe.com/c/pay/cs_test_a1",
                    "status": "open",
                },
            )
        }
    )
    created = StripeProvider(http_client=fake).create_payment(request(language="zh-hant"))

    assert created == base.CreatedPayment(
        "cs_test_a1",
        base.NextAction("redirect", url="https://checkout.stripe.com/c/pay/cs_test_a1"),
    )
    [call] = fake.calls
    assert call.headers["Idempotency-Key"] == REF
    assert call.headers["Authorization"] == "Bearer sk_test_51Fake"
    assert call.form["mode"] == "payment"
    assert call.form["payment_method_types[0]"] == "card"
    assert call.form["line_items[0][price_data][unit_amount]"] == "3000"
    assert call.form["line_items[0][price_data][currency]"] == "cny"
    assert call.form["metadata[reference]"] == REF
    assert call.form["payment_intent_data[metadata][reference]"] == REF
    assert call.form["client_reference_id"] == REF
    assert call.form["success_url"] == "https://shop.example/return/pay_7Hk2mQ9xLr"
    assert call.form["locale"] == "zh-TW"
    assert "expires_at" not in call.form


def test_it_keeps_the_checkout_expiry_stable_across_retries() -> None:
    from datetime import UTC, datetime, timedelta

    answer = (200, {"id": "cs_test_a1", "url": "https://checkout.stripe.com/c/pay/cs_test_a1"})
    fake = FakeStripe({("POST", "/v1/checkout/sessions"): answer})
    provider = StripeProvider(http_client=fake)
    soon = datetime.now(UTC) + timedelta(minutes=5)  # sooner than Stripe's 30 min minimum
    later = datetime.now(UTC) + timedelta(hours=2)
    provider.create_payment(request(expires_at=soon))
    provider.create_payment(request(expires_at=soon))
    provider.create_payment(request(expires_at=later))

    first, second, third = (int(c.form["expires_at"]) for c in fake.calls)
    assert first == second
    assert first % 600 == 0
    assert first >= time.time() + 30 * 60
    assert third == int(later.timestamp())


def test_it_confirms_an_alipay_payment_intent_and_redirects() -> None:
    redirect = "https://hooks.stripe.com/redirect/authenticate/src_1?client_secret=x"
    fake = FakeStripe(
        {
            ("POST", "/v1/payment_intents"): (
                200,
                intent(
                    "requires_action",
                    next_action={
                        "type": "alipay_handle_redirect",
                        "alipay_handle_redirect": {
                            "url": redirect,
                            "native_url": None,
                            "return_url": "https://shop.example/return/pay_7Hk2mQ9xLr",
                        },
                    },
                ),
            )
        }
    )
    created = StripeProvider(http_client=fake).create_payment(request(base.ALIPAY))

    assert created == base.CreatedPayment("pi_3Test", base.NextAction("redirect", url=redirect))
    [call] = fake.calls
    assert call.path == "/v1/payment_intents"
    assert call.headers["Idempotency-Key"] == REF
    assert call.form["amount"] == "3000"
    assert call.form["currency"] == "cny"
    assert call.form["metadata[reference]"] == REF
    assert call.form["payment_method_types[0]"] == "alipay"
    assert call.form["payment_method_data[type]"] == "alipay"
    assert call.form["confirm"] == "true"
    assert call.form["return_url"] == "https://shop.example/return/pay_7Hk2mQ9xLr"


def test_it_shows_the_wechat_pay_qr_code() -> None:
    fake = FakeStripe(
        {
            ("POST", "/v1/payment_intents"): (
                200,
                intent(
                    "requires_action",
                    next_action={
                        "type": "wechat_pay_display_qr_code",
                        "wechat_pay_display_qr_code": {
                            "data": "weixin://wxpay/bizpayurl?pr=Test123",
                            "image_url_png": "https://qr.stripe.com/test.png",
                        },
                    },
                ),
            )
        }
    )
    created = StripeProvider(http_client=fake).create_payment(request(base.WECHAT_PAY))

    assert created.next_action == base.NextAction(
        "qr", qr_data="weixin://wxpay/bizpayurl?pr=Test123"
    )
    assert fake.calls[0].form["payment_method_options[wechat_pay][client]"] == "web"
    assert fake.calls[0].form["payment_method_types[0]"] == "wechat_pay"


def test_it_sends_two_decimal_amounts_for_isk() -> None:
    fake = FakeStripe(
        {("POST", "/v1/checkout/sessions"): (200, {"id": "cs_1", "url": "https://c.example"})}
    )
    StripeProvider(http_client=fake).create_payment(request(amount=1500, currency="ISK"))
    assert fake.calls[0].form["line_items[0][price_data][unit_amount]"] == "150000"


def test_it_reports_a_declined_card_as_final() -> None:
    fake = FakeStripe(
        {
            ("POST", "/v1/payment_intents"): (
                402,
                {
                    "error": {
                        "type": "card_error",
                        "code": "card_declined",
                        "decline_code": "insufficient_funds",
                        "message": "Your card has insufficient funds.",
                    }
                },
            )
        }
    )
    with pytest.raises(base.ProviderError) as caught:
        StripeProvider(http_client=fake).create_payment(request(base.ALIPAY))
    assert caught.value.code == "payment_declined"
    assert caught.value.retryable is False


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (500, "provider_unavailable", True),
        (429, "provider_unavailable", True),
        (400, "provider_rejected", False),
        (401, "provider_misconfigured", False),
    ],
)
def test_it_maps_api_errors(status: int, code: str, retryable: bool) -> None:
    error = {"error": {"type": "api_error" if status >= 500 else "invalid_request_error"}}
    fake = FakeStripe({("POST", "/v1/checkout/sessions"): (status, error)})
    with pytest.raises(base.ProviderError) as caught:
        StripeProvider(http_client=fake).create_payment(request())
    assert (caught.value.code, caught.value.retryable) == (code, retryable)


def test_it_reports_network_failures_as_retryable() -> None:
    with pytest.raises(base.ProviderError) as caught:
        StripeProvider(http_client=Unreachable()).create_payment(request())
    assert caught.value.code == "provider_unavailable"
    assert caught.value.retryable is True


def test_it_refuses_to_start_without_credentials(settings: Any) -> None:
    settings.STRIPE_SECRET_KEY = ""
    with pytest.raises(ImproperlyConfigured, match="SIMTOPUP_STRIPE_SECRET_KEY"):
        StripeProvider()
    settings.STRIPE_SECRET_KEY = "sk_test_x"
    settings.STRIPE_WEBHOOK_SECRET = ""
    with pytest.raises(ImproperlyConfigured, match="SIMTOPUP_STRIPE_WEBHOOK_SECRET"):
        StripeProvider()
    settings.STRIPE_WEBHOOK_SECRET = SECRET
    settings.STRIPE_SECRET_KEY = "pk_test_publishable"
    with pytest.raises(ImproperlyConfigured, match="secret"):
        StripeProvider()


# --- webhooks -------------------------------------------------------------------------------


def stripe_event(event_type: str, obj: dict[str, Any], **changes: Any) -> bytes:
    event: dict[str, Any] = {
        "id": "evt_1TestEvent",
        "object": "event",
        "api_version": "2025-01-27.acacia",
        "created": 1_790_000_100,
        "livemode": False,
        "pending_webhooks": 1,
        "type": event_type,
        "data": {"object": obj},
    }
    event.update(changes)
    return json.dumps(event).encode()


def sign(body: bytes, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={t},v1={mac}"}


def test_it_accepts_a_signed_payment_succeeded_event() -> None:
    body = stripe_event("payment_intent.succeeded", intent("succeeded"))
    [event] = StripeProvider(http_client=FakeStripe()).parse_notification(sign(body), body)

    assert event.event_id == "evt_1TestEvent"
    assert event.kind == base.SUCCEEDED
    assert event.reference == REF
    assert event.provider_ref == "pi_3Test"
    assert (event.amount, event.currency) == (3000, "CNY")
    assert event.merchant is None
    assert event.occurred_at is not None
    assert event.occurred_at.timestamp() == 1_790_000_100


def test_it_reads_headers_in_any_case_and_in_meta_form() -> None:
    body = stripe_event("payment_intent.succeeded", intent("succeeded"))
    signature = sign(body)["Stripe-Signature"]
    provider = StripeProvider(http_client=FakeStripe())
    assert provider.parse_notification({"stripe-signature": signature}, body)[0].kind == (
        base.SUCCEEDED
    )
    assert provider.parse_notification({"HTTP_STRIPE_SIGNATURE": signature}, body)


@pytest.mark.parametrize(
    ("event_type", "obj", "kind", "failure"),
    [
        (
            "payment_intent.payment_failed",
            intent(
                "requires_payment_method",
                last_payment_error={"code": "card_declined", "decline_code": "stolen_card"},
            ),
            base.FAILED,
            "stolen_card",
        ),
        (
            "payment_intent.canceled",
            intent("canceled", cancellation_reason="abandoned"),
            base.FAILED,
            "abandoned",
        ),
        ("payment_intent.processing", intent("processing"), base.PENDING, None),
        ("payment_intent.created", intent("requires_payment_method"), base.IGNORED, None),
        ("charge.refunded", {"id": "ch_1", "metadata": {"reference": REF}}, base.IGNORED, None),
    ],
)
def test_it_maps_payment_events(
    event_type: str, obj: dict[str, Any], kind: str, failure: str | None
) -> None:
    body = stripe_event(event_type, obj)
    [event] = StripeProvider(http_client=FakeStripe()).parse_notification(sign(body), body)
    assert (event.kind, event.failure_code, event.reference) == (kind, failure, REF)


def test_it_maps_an_expired_checkout_session_to_a_failure() -> None:
    session = {
        "id": "cs_test_a1",
        "object": "checkout.session",
        "amount_total": 3000,
        "currency": "cny",
        "client_reference_id": REF,
        "metadata": {"reference": REF},
        "status": "expired",
    }
    body = stripe_event("checkout.session.expired", session)
    [event] = StripeProvider(http_client=FakeStripe()).parse_notification(sign(body), body)
    assert (event.kind, event.reference, event.provider_ref) == (
        base.FAILED,
        REF,
        "cs_test_a1",
    )
    assert event.failure_code == "expired"


@pytest.mark.parametrize(
    ("event_type", "status", "kind"),
    [
        ("refund.created", "succeeded", base.REFUNDED),
        ("refund.updated", "succeeded", base.REFUNDED),
        ("refund.created", "pending", base.IGNORED),
        ("refund.updated", "failed", base.REFUND_FAILED),
        ("refund.failed", "failed", base.REFUND_FAILED),
    ],
)
def test_it_maps_refund_events(event_type: str, status: str, kind: str) -> None:
    refund = {
        "id": "re_1",
        "object": "refund",
        "amount": 3000,
        "currency": "cny",
        "payment_intent": "pi_3Test",
        "status": status,
        "metadata": {"reference": REF, "refund_reference": "rf_7Hk2mQ9xLr"},
    }
    body = stripe_event(event_type, refund)
    [event] = StripeProvider(http_client=FakeStripe()).parse_notification(sign(body), body)
    assert (event.kind, event.reference, event.provider_ref) == (kind, REF, "pi_3Test")
    assert (event.amount, event.currency) == (3000, "CNY")
    assert event.refund_reference == "rf_7Hk2mQ9xLr"
    assert event.provider_refund_ref == "re_1"


def test_it_rejects_a_tampered_body() -> None:
    body = stripe_event("payment_intent.succeeded", intent("succeeded"))
    headers = sign(body)
    tampered = body.replace(b'"amount_received": 3000', b'"amount_received": 300000')
    assert tampered != body
    with pytest.raises(base.InvalidNotification):
        StripeProvider(http_client=FakeStripe()).parse_notification(headers, tampered)


def test_it_rejects_a_wrong_secret() -> None:
    body = stripe_event("payment_intent.succeeded", intent("succeeded"))
    with pytest.raises(base.InvalidNotification):
        StripeProvider(http_client=FakeStripe()).parse_notification(
            sign(body, secret="whsec_attacker"), body
        )


def test_it_rejects_stale_and_future_timestamps() -> None:
    body = stripe_event("payment_intent.succeeded", intent("succeeded"))
    provider = StripeProvider(http_client=FakeStripe())
    # Just inside the 300 s window: accepted.
    assert provider.parse_notification(sign(body, timestamp=int(time.time()) - 290), body)
    with pytest.raises(base.InvalidNotification):
        provider.parse_notification(sign(body, timestamp=int(time.time()) - 301), body)
    with pytest.raises(base.InvalidNotification):
        provider.parse_notification(sign(body, timestamp=int(time.time()) + 3600), body)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Stripe-Signature": ""}, {"Stripe-Signature": "garbage"}, {"Stripe-Signature": "t=1"}],
)
def test_it_rejects_missing_or_malformed_signatures(headers: dict[str, str]) -> None:
    body = stripe_event("payment_intent.succeeded", intent("succeeded"))
    with pytest.raises(base.InvalidNotification):
        StripeProvider(http_client=FakeStripe()).parse_notification(headers, body)


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b"\xff", b'{"id": "evt_1", "object": "event", "data": []}'],
)
def test_it_rejects_signed_garbage(body: bytes) -> None:
    with pytest.raises(base.InvalidNotification):
        StripeProvider(http_client=FakeStripe()).parse_notification(sign(body), body)


def test_it_rejects_a_live_event_on_a_test_key() -> None:
    body = stripe_event("payment_intent.succeeded", intent("succeeded"), livemode=True)
    with pytest.raises(base.InvalidNotification, match="livemode"):
        StripeProvider(http_client=FakeStripe()).parse_notification(sign(body), body)


def test_it_rejects_events_for_another_connected_account(settings: Any) -> None:
    settings.STRIPE_ACCOUNT = "acct_ours"
    provider = StripeProvider(http_client=FakeStripe())
    assert provider.merchant == "acct_ours"
    ours = stripe_event("payment_intent.succeeded", intent("succeeded"), account="acct_ours")
    assert provider.parse_notification(sign(ours), ours)[0].merchant == "acct_ours"
    theirs = stripe_event("payment_intent.succeeded", intent("succeeded"), account="acct_other")
    with pytest.raises(base.InvalidNotification):
        provider.parse_notification(sign(theirs), theirs)


# --- queries and refunds --------------------------------------------------------------------


def test_it_queries_a_payment_intent_by_id() -> None:
    fake = FakeStripe({("GET", "/v1/payment_intents/pi_3Test"): (200, intent("succeeded"))})
    status = StripeProvider(http_client=fake).query(REF, "pi_3Test")
    assert status == base.ProviderPaymentStatus("succeeded", "pi_3Test", 3000, "CNY", None, None)


def test_it_queries_a_checkout_session_with_its_intent() -> None:
    session = {
        "id": "cs_test_a1",
        "object": "checkout.session",
        "status": "expired",
        "payment_status": "unpaid",
        "amount_total": 3000,
        "currency": "cny",
        "metadata": {"reference": REF},
        "payment_intent": intent("canceled", cancellation_reason="abandoned"),
    }
    fake = FakeStripe({("GET", "/v1/checkout/sessions/cs_test_a1"): (200, session)})
    status = StripeProvider(http_client=fake).query(REF, "cs_test_a1")
    assert (status.status, status.provider_ref, status.amount) == ("failed", "pi_3Test", 3000)
    assert fake.calls[0].query["expand[0]"] == "payment_intent"


def test_it_queries_an_open_checkout_session_as_pending() -> None:
    session = {
        "id": "cs_test_a1",
        "status": "open",
        "payment_status": "unpaid",
        "amount_total": 3000,
        "currency": "cny",
        "metadata": {"reference": REF},
        "payment_intent": None,
    }
    fake = FakeStripe({("GET", "/v1/checkout/sessions/cs_test_a1"): (200, session)})
    assert StripeProvider(http_client=fake).query(REF, "cs_test_a1").status == "pending"


def test_it_searches_by_reference_without_a_provider_ref() -> None:
    found = {
        "object": "search_result",
        "data": [intent("canceled", id="pi_old", created=1), intent("succeeded", created=2)],
        "has_more": False,
    }
    fake = FakeStripe({("GET", "/v1/payment_intents/search"): (200, found)})
    status = StripeProvider(http_client=fake).query(REF, None)
    assert (status.status, status.provider_ref) == ("succeeded", "pi_3Test")
    assert fake.calls[0].query["query"] == f"metadata['reference']:'{REF}'"

    empty = FakeStripe(
        {("GET", "/v1/payment_intents/search"): (200, {"object": "search_result", "data": []})}
    )
    assert StripeProvider(http_client=empty).query(REF, None).status == "unknown"


def test_it_refuses_a_provider_ref_of_another_payment() -> None:
    other = intent("succeeded", metadata={"reference": "pay_someoneelse"})
    fake = FakeStripe({("GET", "/v1/payment_intents/pi_3Test"): (200, other)})
    with pytest.raises(base.ProviderError) as caught:
        StripeProvider(http_client=fake).query(REF, "pi_3Test")
    assert caught.value.code == "provider_ref_mismatch"


def test_it_refunds_with_the_refund_reference_as_idempotency_key() -> None:
    refund = {
        "id": "re_1",
        "object": "refund",
        "amount": 3000,
        "currency": "cny",
        "status": "succeeded",
        "payment_intent": "pi_3Test",
        "metadata": {"reference": REF, "refund_reference": "rf_7Hk2mQ9xLr"},
    }
    fake = FakeStripe(
        {
            ("GET", "/v1/payment_intents/pi_3Test"): (200, intent("succeeded")),
            ("GET", "/v1/refunds"): (200, {"object": "list", "data": [], "has_more": False}),
            ("POST", "/v1/refunds"): (200, refund),
        }
    )
    result = StripeProvider(http_client=fake).refund(
        REF, "pi_3Test", 3000, "CNY", "rf_7Hk2mQ9xLr", 3000
    )

    assert result == base.RefundResult("succeeded", "re_1")
    create = fake.calls[-1]
    assert (create.method, create.path) == ("POST", "/v1/refunds")
    assert create.headers["Idempotency-Key"] == "rf_7Hk2mQ9xLr"
    assert create.form["payment_intent"] == "pi_3Test"
    assert create.form["amount"] == "3000"
    assert create.form["metadata[refund_reference]"] == "rf_7Hk2mQ9xLr"
    assert fake.calls[1].query["payment_intent"] == "pi_3Test"


def test_it_finds_an_earlier_refund_instead_of_refunding_twice() -> None:
    earlier = {
        "id": "re_earlier",
        "object": "refund",
        "amount": 3000,
        "status": "pending",
        "metadata": {"reference": REF, "refund_reference": "rf_7Hk2mQ9xLr"},
    }
    fake = FakeStripe(
        {
            ("GET", "/v1/payment_intents/pi_3Test"): (200, intent("succeeded")),
            ("GET", "/v1/refunds"): (200, {"object": "list", "data": [earlier]}),
        }
    )
    result = StripeProvider(http_client=fake).refund(
        REF, "pi_3Test", 3000, "CNY", "rf_7Hk2mQ9xLr", 3000
    )
    assert result == base.RefundResult("pending", "re_earlier")
    assert [c.method for c in fake.calls] == ["GET", "GET"]


def test_it_refuses_refunds_it_cannot_make() -> None:
    fake = FakeStripe(
        {("GET", "/v1/payment_intents/pi_3Test"): (200, intent("requires_payment_method"))}
    )
    provider = StripeProvider(http_client=fake)
    with pytest.raises(base.ProviderError) as caught:
        provider.refund(REF, "pi_3Test", 3000, "CNY", "rf_7Hk2mQ9xLr", 3000)
    assert caught.value.code == "not_refundable"
    with pytest.raises(base.ProviderError) as caught:
        provider.refund(REF, "pi_3Test", 3001, "CNY", "rf_7Hk2mQ9xLr", 3000)
    assert caught.value.code == "invalid_refund_amount"
    assert not any(c.method == "POST" for c in fake.calls)
