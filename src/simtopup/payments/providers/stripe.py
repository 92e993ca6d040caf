"""Stripe: cards, Alipay and WeChat Pay through the official ``stripe`` SDK.

Settings (environment variables, ``SIMTOPUP_`` prefix, ``*_FILE`` variants for secrets):

- ``STRIPE_SECRET_KEY`` (required): secret or restricted API key, ``sk_live_…`` / ``sk_test_…``.
- ``STRIPE_WEBHOOK_SECRET`` (required): the signing secret of the webhook endpoint
  (``whsec_…``), which must send ``payment_intent.succeeded``, ``payment_intent.payment_failed``,
  ``payment_intent.canceled``, ``payment_intent.processing``, ``checkout.session.expired``,
  ``refund.created``, ``refund.updated`` and ``refund.failed``.
- ``STRIPE_ACCOUNT``: a connected account (``acct_…``) to act for (Connect); events for
  another account are refused.
- ``STRIPE_API_VERSION`` (default: the SDK's pinned version), ``STRIPE_TIMEOUT_SECONDS`` (30),
  ``STRIPE_MAX_NETWORK_RETRIES`` (2; safe, every POST carries an idempotency key).
- ``STRIPE_API_BASE``: another address of Stripe's API (empty: Stripe's own; a test's fake).

The statement of a day (:meth:`StripeProvider.statement`) is the account's balance
transactions created that day, a UTC day (Stripe's reports count days in UTC unless the
account says otherwise).

How each method is paid:

- ``card``: a Checkout Session — Stripe's hosted payment page; the payer is redirected to it.
  The PaymentIntent it creates carries ``metadata[reference]`` too, so the webhooks of both
  objects name our payment.
- ``alipay``: a PaymentIntent confirmed at once with an Alipay payment method; Stripe answers
  with the Alipay page to redirect to (``alipay_handle_redirect`` / ``redirect_to_url``).
- ``wechat_pay``: a PaymentIntent confirmed at once for the ``web`` client; Stripe answers with
  the ``weixin://`` URL to show as a QR code (``wechat_pay_display_qr_code.data``).

Creation is idempotent on our reference (``Idempotency-Key``); refunds on the refund reference,
and beyond Stripe's 24 h idempotency window too: an existing refund carrying our refund
reference in its metadata is returned instead of asking for a second one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

import stripe
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext

from simtopup.payments.providers import base
from simtopup.payments.providers._common import (
    check_payment_request,
    check_reference,
    check_refund,
    gateway_url,
    header,
    require,
)

logger = logging.getLogger(__name__)

# ISO 4217 says these have no minor unit, but Stripe still takes them as two-decimal amounts
# (with "00" decimals) for backwards compatibility.
_TWO_DECIMAL_AT_STRIPE = frozenset({"ISK", "UGX"})
# A Checkout Session lives between 30 minutes and 24 hours.
_CHECKOUT_MIN = timedelta(minutes=31)
_CHECKOUT_MAX = timedelta(hours=23, minutes=50)
_CHECKOUT_LOCALES = {"zh-hans": "zh", "zh-hant": "zh-TW", "en": "en"}

_PI_STATUS: dict[str, str] = {
    "succeeded": "succeeded",
    "canceled": "failed",
    "processing": "pending",
    "requires_payment_method": "pending",
    "requires_confirmation": "pending",
    "requires_action": "pending",
    "requires_capture": "pending",
}


def to_stripe_amount(amount: int, currency: str) -> int:
    """Our minor units → Stripe's ``amount`` (the same, except ISK and UGX)."""
    return amount * 100 if currency.upper() in _TWO_DECIMAL_AT_STRIPE else amount


def from_stripe_amount(amount: int | None, currency: str | None) -> int | None:
    if amount is None or currency is None:
        return None
    if currency.upper() in _TWO_DECIMAL_AT_STRIPE:
        return amount // 100
    return int(amount)


def _error(exc: stripe.StripeError) -> base.ProviderError:
    """Map an SDK error onto the taxonomy: the payer's refusal, our mistake, their outage."""
    status = exc.http_status or 0
    logger.warning("stripe: %s (status %s, code %s)", exc.__class__.__name__, status, exc.code)
    if isinstance(exc, stripe.CardError):
        return base.ProviderError("payment_declined", gettext("The card was declined."))
    if (
        isinstance(exc, stripe.APIConnectionError | stripe.APIError | stripe.RateLimitError)
        or status >= 500
        or status in (409, 429)
    ):
        return base.unavailable_error()
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return base.misconfigured_error()
    return base.refused_error()


class StripeProvider(base.Provider):
    name = "stripe"
    methods = frozenset({base.CARD, base.ALIPAY, base.WECHAT_PAY})
    supports_partial_refund = True

    def __init__(self, *, http_client: stripe.HTTPClient | None = None) -> None:
        secret_key = require("STRIPE_SECRET_KEY")
        if not secret_key.startswith(("sk_", "rk_")):
            raise ImproperlyConfigured(
                "SIMTOPUP_STRIPE_SECRET_KEY must be a secret (sk_…) or restricted (rk_…) key."
            )
        self._webhook_secret = require("STRIPE_WEBHOOK_SECRET")
        self._account = settings.STRIPE_ACCOUNT.strip() or None
        self._live = "_live_" in secret_key
        api_base = gateway_url("STRIPE_API_BASE")
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base} if api_base else None,
            stripe_account=self._account,
            stripe_version=settings.STRIPE_API_VERSION.strip() or None,
            max_network_retries=settings.STRIPE_MAX_NETWORK_RETRIES,
            http_client=http_client
            or stripe.RequestsClient(timeout=settings.STRIPE_TIMEOUT_SECONDS),
        )

    @property
    def merchant(self) -> str | None:
        return self._account

    # --- payments -------------------------------------------------------------------------

    def create_payment(self, request: base.PaymentRequest) -> base.CreatedPayment:
        check_payment_request(request, self.methods)
        check_reference(request.reference)
        try:
            if request.method == base.CARD:
                return self._checkout(request)
            return self._intent(request)
        except stripe.StripeError as exc:
            raise _error(exc) from exc

    def _checkout(self, request: base.PaymentRequest) -> base.CreatedPayment:
        currency = request.currency.upper()
        expires_at = self._checkout_expiry(request.expires_at)
        params: dict[str, Any] = {
            "mode": "payment",
            "payment_method_types": ["card"],
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": currency.lower(),
                        "unit_amount": to_stripe_amount(request.amount, currency),
                        "product_data": {"name": request.description[:250]},
                    },
                }
            ],
            "client_reference_id": request.reference,
            "metadata": {"reference": request.reference},
            "payment_intent_data": {
                "description": request.description[:1000],
                "metadata": {"reference": request.reference},
            },
            "success_url": request.return_url,
            "cancel_url": request.return_url,
            "locale": _CHECKOUT_LOCALES.get(request.language, "auto"),
        }
        if expires_at is not None:
            params["expires_at"] = expires_at
        session = self._client.v1.checkout.sessions.create(
            params=cast(Any, params), options={"idempotency_key": request.reference}
        )
        if not session.url:
            raise base.refused_error()
        return base.CreatedPayment(session.id, base.NextAction("redirect", url=session.url))

    @staticmethod
    def _checkout_expiry(wanted: datetime | None) -> int | None:
        """Unix time the Checkout Session expires: ours if Stripe allows it, else the nearest
        it allows. Retries must send the same parameters under the same idempotency key, so a
        bound that depends on "now" is rounded up to a 10-minute step."""
        if wanted is None:
            return None  # Stripe's default: 24 hours
        now = time.time()
        low, high = now + _CHECKOUT_MIN.total_seconds(), now + _CHECKOUT_MAX.total_seconds()
        if low <= wanted.timestamp() <= high:
            return int(wanted.timestamp())
        if wanted.timestamp() > high:
            return int(high // 600 * 600)
        return int(-(-low // 600) * 600)

    def _intent(self, request: base.PaymentRequest) -> base.CreatedPayment:
        currency = request.currency.upper()
        common: dict[str, Any] = {
            "amount": to_stripe_amount(request.amount, currency),
            "currency": currency.lower(),
            "confirm": True,
            "description": request.description[:1000],
            "metadata": {"reference": request.reference},
        }
        if request.method == base.ALIPAY:
            params: dict[str, Any] = {
                **common,
                "payment_method_types": ["alipay"],
                "payment_method_data": {"type": "alipay"},
                "return_url": request.return_url,
            }
        else:
            params = {
                **common,
                "payment_method_types": ["wechat_pay"],
                "payment_method_data": {"type": "wechat_pay"},
                "payment_method_options": {"wechat_pay": {"client": "web"}},
            }
        intent = self._client.v1.payment_intents.create(
            params=cast(Any, params), options={"idempotency_key": request.reference}
        )
        data = intent.to_dict()
        action = data.get("next_action") or {}
        kind = action.get("type")
        if kind == "wechat_pay_display_qr_code":
            qr = action.get("wechat_pay_display_qr_code") or {}
            if qr.get("data"):
                return base.CreatedPayment(intent.id, base.NextAction("qr", qr_data=qr["data"]))
        elif kind in ("alipay_handle_redirect", "redirect_to_url"):
            url = (action.get(kind) or {}).get("url")
            if url:
                return base.CreatedPayment(intent.id, base.NextAction("redirect", url=url))
        elif data.get("status") in ("succeeded", "processing"):
            # Nothing left for the payer to do; the webhook settles it.
            return base.CreatedPayment(
                intent.id, base.NextAction("redirect", url=request.return_url)
            )
        logger.warning("stripe: PaymentIntent %s has no usable next action (%s)", intent.id, kind)
        raise base.refused_error()

    # --- notifications --------------------------------------------------------------------

    def parse_notification(
        self, headers: Mapping[str, str], body: bytes
    ) -> list[base.ProviderEvent]:
        signature = header(headers, "Stripe-Signature")
        tolerance = settings.SIGNATURE_TOLERANCE_SECONDS
        try:
            event = self._client.construct_event(
                body, signature, self._webhook_secret, tolerance=tolerance
            )
        except stripe.SignatureVerificationError as exc:
            raise base.InvalidNotification(f"stripe signature: {exc.user_message or exc}") from None
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise base.InvalidNotification(f"stripe payload: {exc}") from None
        # The SDK only refuses old timestamps; one far in the future is as suspicious.
        signed_at = self._signed_at(signature)
        if signed_at > time.time() + tolerance:
            raise base.InvalidNotification("stripe signature timestamp is in the future")
        data = event.to_dict()
        if bool(data.get("livemode")) != self._live:
            raise base.InvalidNotification(
                "stripe event livemode does not match the API key's mode"
            )
        account = data.get("account")
        if self._account and account != self._account:
            raise base.InvalidNotification(f"stripe event for account {account!r}, not ours")
        return [self._event(data)]

    @staticmethod
    def _signed_at(signature: str) -> int:
        for item in signature.split(","):
            key, _, value = item.strip().partition("=")
            if key == "t" and value.isdigit():
                return int(value)
        raise base.InvalidNotification("stripe signature without timestamp")

    def _event(self, data: dict[str, Any]) -> base.ProviderEvent:
        event_type = str(data.get("type", ""))
        envelope = data.get("data")
        obj = envelope.get("object") if isinstance(envelope, dict) else None
        if not isinstance(obj, dict):
            raise base.InvalidNotification("stripe event without data.object")
        metadata = obj.get("metadata") or {}
        currency = (obj.get("currency") or "").upper() or None
        created = data.get("created")
        shared: dict[str, Any] = {
            "event_id": str(data.get("id", "")),
            "merchant": data.get("account"),
            "currency": currency,
            "occurred_at": datetime.fromtimestamp(created, UTC)
            if isinstance(created, int)
            else None,
            "raw": data,
        }
        if not shared["event_id"]:
            raise base.InvalidNotification("stripe event without id")
        reference = metadata.get("reference")
        if event_type.startswith("payment_intent."):
            error = obj.get("last_payment_error") or {}
            kind = {
                "payment_intent.succeeded": base.SUCCEEDED,
                "payment_intent.payment_failed": base.FAILED,
                "payment_intent.canceled": base.FAILED,
                "payment_intent.processing": base.PENDING,
            }.get(event_type, base.IGNORED)
            amount = obj.get("amount_received") if kind == base.SUCCEEDED else obj.get("amount")
            failure = None
            if kind == base.FAILED:
                failure = (
                    error.get("decline_code")
                    or error.get("code")
                    or obj.get("cancellation_reason")
                    or "payment_failed"
                )
            return base.ProviderEvent(
                kind=kind,
                reference=reference,
                provider_ref=obj.get("id"),
                amount=from_stripe_amount(amount, currency),
                failure_code=failure,
                **shared,
            )
        if event_type == "checkout.session.expired":
            return base.ProviderEvent(
                kind=base.FAILED,
                reference=reference or obj.get("client_reference_id"),
                provider_ref=obj.get("id"),
                amount=from_stripe_amount(obj.get("amount_total"), currency),
                failure_code="expired",
                **shared,
            )
        if event_type in ("refund.created", "refund.updated", "refund.failed"):
            status = obj.get("status")
            if event_type == "refund.failed" or status in ("failed", "canceled"):
                kind = base.REFUND_FAILED
            elif status == "succeeded":
                kind = base.REFUNDED
            else:
                kind = base.IGNORED  # pending / requires_action: a later event says how it ended
            return base.ProviderEvent(
                kind=kind,
                reference=reference,
                provider_ref=obj.get("payment_intent"),
                amount=from_stripe_amount(obj.get("amount"), currency),
                failure_code=obj.get("failure_reason") if kind == base.REFUND_FAILED else None,
                refund_reference=metadata.get("refund_reference"),
                provider_refund_ref=obj.get("id"),
                **shared,
            )
        # charge.refunded and the rest: stored, not acted upon (refund.* carry each refund's
        # own amount and our refund reference; charge.refunded only a running total).
        return base.ProviderEvent(
            kind=base.IGNORED, reference=reference, provider_ref=obj.get("id"), **shared
        )

    # --- queries and refunds --------------------------------------------------------------

    def query(self, reference: str, provider_ref: str | None) -> base.ProviderPaymentStatus:
        try:
            if provider_ref and provider_ref.startswith("cs_"):
                return self._query_session(reference, provider_ref)
            intent = self._find_intent(reference, provider_ref)
        except stripe.StripeError as exc:
            raise _error(exc) from exc
        if intent is None:
            return base.ProviderPaymentStatus("unknown")
        return self._intent_status(intent)

    def _query_session(self, reference: str, session_id: str) -> base.ProviderPaymentStatus:
        session = self._client.v1.checkout.sessions.retrieve(
            session_id, params={"expand": ["payment_intent"]}
        ).to_dict()
        self._check_owner(reference, session.get("metadata"))
        intent = session.get("payment_intent")
        if isinstance(intent, dict):
            status = self._intent_status(intent)
            if status.status != "succeeded" and session.get("status") == "expired":
                return base.ProviderPaymentStatus(
                    "failed",
                    intent.get("id"),
                    status.amount,
                    status.currency,
                    self.merchant,
                    "expired",
                )
            return status
        currency = (session.get("currency") or "").upper() or None
        amount = from_stripe_amount(session.get("amount_total"), currency)
        if session.get("status") == "expired":
            return base.ProviderPaymentStatus(
                "failed", None, amount, currency, self.merchant, "expired"
            )
        if session.get("payment_status") == "paid":
            return base.ProviderPaymentStatus("succeeded", None, amount, currency, self.merchant)
        return base.ProviderPaymentStatus("pending", None, amount, currency, self.merchant)

    def _find_intent(self, reference: str, provider_ref: str | None) -> dict[str, Any] | None:
        if provider_ref and provider_ref.startswith("pi_"):
            intent = self._client.v1.payment_intents.retrieve(provider_ref).to_dict()
            self._check_owner(reference, intent.get("metadata"))
            return intent
        if provider_ref and provider_ref.startswith("cs_"):
            session = self._client.v1.checkout.sessions.retrieve(provider_ref).to_dict()
            self._check_owner(reference, session.get("metadata"))
            intent_id = session.get("payment_intent")
            if not intent_id:
                return None
            return self._find_intent(reference, str(intent_id))
        check_reference(reference)
        # Search is eventually consistent (seconds, rarely longer): "unknown" until indexed.
        found = self._client.v1.payment_intents.search(
            params={"query": f"metadata['reference']:'{reference}'", "limit": 10}
        ).to_dict()
        intents = [
            i
            for i in found.get("data") or []
            if i.get("metadata", {}).get("reference") == reference
        ]
        if not intents:
            return None
        succeeded = [i for i in intents if i.get("status") == "succeeded"]
        return (succeeded or sorted(intents, key=lambda i: i.get("created") or 0))[-1]

    def _intent_status(self, intent: dict[str, Any]) -> base.ProviderPaymentStatus:
        status = _PI_STATUS.get(str(intent.get("status")), "unknown")
        currency = (intent.get("currency") or "").upper() or None
        amount = intent.get("amount_received") if status == "succeeded" else intent.get("amount")
        error = intent.get("last_payment_error") or {}
        failure = None
        if status == "failed":
            failure = intent.get("cancellation_reason") or "canceled"
        elif error:
            failure = error.get("decline_code") or error.get("code")
        return base.ProviderPaymentStatus(
            cast(Any, status),
            intent.get("id"),
            from_stripe_amount(amount, currency),
            currency,
            self.merchant,
            failure,
        )

    def _check_owner(self, reference: str, metadata: Any) -> None:
        if (metadata or {}).get("reference") != reference:
            raise base.other_payment_error()

    def make_refund(self, refund: base.RefundRequest) -> base.RefundResult:
        check_refund(refund)
        check_reference(refund.refund_reference)
        refund_reference, currency = refund.refund_reference, refund.currency
        try:
            intent = self._find_intent(refund.reference, refund.provider_ref)
            if intent is None or intent.get("status") != "succeeded":
                raise base.ProviderError(
                    "not_refundable", gettext("This payment cannot be refunded (not captured).")
                )
            intent_currency = str(intent.get("currency", "")).upper()
            if intent_currency != currency.upper():
                raise base.ProviderError(
                    "currency_mismatch",
                    gettext("The refund currency differs from the payment's."),
                )
            # Stripe keeps idempotency keys for 24 h: a refund retried later must find the
            # first one rather than ask for a second.
            existing = self._client.v1.refunds.list(
                params={"payment_intent": intent["id"], "limit": 100}
            ).to_dict()
            for item in existing.get("data") or []:
                if (item.get("metadata") or {}).get("refund_reference") == refund_reference:
                    return self._refund_result(item)
            created = self._client.v1.refunds.create(
                params={
                    "payment_intent": intent["id"],
                    "amount": to_stripe_amount(refund.amount, currency),
                    "metadata": {
                        "reference": refund.reference,
                        "refund_reference": refund_reference,
                    },
                },
                options={"idempotency_key": refund_reference},
            )
        except stripe.StripeError as exc:
            raise _error(exc) from exc
        return self._refund_result(created.to_dict())

    @staticmethod
    def _refund_result(refund: dict[str, Any]) -> base.RefundResult:
        status = refund.get("status")
        if status == "succeeded":
            return base.RefundResult("succeeded", refund.get("id"))
        if status in ("failed", "canceled"):
            return base.RefundResult("failed", refund.get("id"))
        return base.RefundResult("pending", refund.get("id"))

    # --- the day's statement --------------------------------------------------------------

    def statement(self, day: date) -> list[base.StatementLine]:
        """Balance transactions created on ``day`` (UTC), every page (``has_more`` /
        ``starting_after``): ``charge`` ones as payments, ``refund`` and ``refund_failure``
        ones as refunds; fees, payouts and the rest are not ours to match.

        A balance transaction's own amount is in the balance's currency, after conversion and
        before fees; what we asked for is the source's (the charge's or the refund's) amount
        in its own currency, so that is what a line carries. Our reference is in the
        PaymentIntent's metadata (expanded with the source) and our refund reference in the
        refund's."""
        start, end = base.day_window(day, self.statement_zone)
        params: dict[str, Any] = {
            "created": {"gte": int(start.timestamp()), "lt": int(end.timestamp())},
            "limit": 100,
            "expand": ["data.source", "data.source.payment_intent"],
        }
        lines: list[base.StatementLine] = []
        try:
            page = self._client.v1.balance_transactions.list(params=cast(Any, params))
            for item in page.auto_paging_iter():
                line = self._statement_line(item.to_dict())
                if line is not None:
                    lines.append(line)
        except stripe.StripeError as exc:
            raise _error(exc) from exc
        return lines

    @staticmethod
    def _statement_line(transaction: dict[str, Any]) -> base.StatementLine | None:
        category = transaction.get("reporting_category") or transaction.get("type")
        source = transaction.get("source")
        if category not in ("charge", "refund", "refund_failure") or not isinstance(source, dict):
            return None
        currency = str(source.get("currency") or transaction.get("currency") or "").upper()
        amount = from_stripe_amount(source.get("amount"), currency) or 0
        intent = source.get("payment_intent")
        intent_metadata = (intent.get("metadata") if isinstance(intent, dict) else None) or {}
        metadata = source.get("metadata") or {}
        created = transaction.get("created")
        at = datetime.fromtimestamp(created, UTC) if isinstance(created, int) else None
        payment_reference = str(metadata.get("reference") or intent_metadata.get("reference") or "")
        if category == "charge":
            return base.StatementLine(
                kind=base.STATEMENT_PAYMENT,
                reference=payment_reference,
                provider_ref=str(
                    (intent.get("id") if isinstance(intent, dict) else intent) or source["id"]
                ),
                amount=amount,
                currency=currency,
                state="succeeded" if source.get("status") == "succeeded" else "pending",
                at=at,
            )
        status = "failed" if category == "refund_failure" else source.get("status")
        return base.StatementLine(
            kind=base.STATEMENT_REFUND,
            reference=str(metadata.get("refund_reference") or ""),
            provider_ref=str(source.get("id") or ""),
            amount=amount,
            currency=currency,
            state={"succeeded": "succeeded", "failed": "failed", "canceled": "failed"}.get(
                str(status), "pending"
            ),
            at=at,
            payment_reference=payment_reference,
        )
