"""The payment provider protocol.

A provider turns "take this much money for this payment" into a next action for the payer
(a checkout page to open, or a QR code to scan), turns the provider's signed notifications
into :class:`ProviderEvent` objects, answers status queries and refunds. It never touches the
database: :mod:`simtopup.payments.actions` stores events once, checks them against the
payment and moves money through the ledger.

Capability flags tell the rest of the system what a provider can do (like Django's task
backends: ``supports_defer`` …).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, ClassVar, Final, Literal

from django.utils.translation import gettext

# What the customer chose. ``balance`` (the card's credit) never reaches a provider.
CARD = "card"
ALIPAY = "alipay"
WECHAT_PAY = "wechat_pay"
METHODS = (CARD, ALIPAY, WECHAT_PAY)

# Where the payer is (payments/surface.py decides it from the browser): the flow a provider
# takes for them. ``wechat``: WeChat's own browser (WeChat Pay JSAPI); ``phone``: a phone's
# browser (Alipay WAP, WeChat Pay H5: the app opens on the same phone); ``desktop``: a
# computer (the QR codes a phone scans: Alipay precreate, WeChat Pay Native).
WECHAT = "wechat"
PHONE = "phone"
DESKTOP = "desktop"
SURFACES = (WECHAT, PHONE, DESKTOP)


class ProviderError(Exception):
    """The provider refused or could not be reached.

    ``code`` is stable (``payment_declined``, ``provider_unavailable``, …); ``retryable`` says
    whether trying again later may work (a timeout) or not (a refusal).
    """

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


# The refusals every provider maps its own answers onto (codes and words the payer sees).


def unavailable_error() -> ProviderError:
    """The provider is down, slow or limiting our rate: trying again later may work."""
    return ProviderError(
        "provider_unavailable",
        gettext("The payment service is not available right now. Please try again later."),
        retryable=True,
    )


def unsigned_answer_error() -> ProviderError:
    """An answer without the provider's valid signature (a proxy, an impostor): later."""
    return ProviderError(
        "invalid_provider_response",
        gettext("The payment service is not available right now. Please try again later."),
        retryable=True,
    )


def refused_error() -> ProviderError:
    """The provider refused the request itself; the same request will not work later."""
    return ProviderError("provider_rejected", gettext("The payment service refused the request."))


def misconfigured_error() -> ProviderError:
    """The provider refused our credentials or permissions: the operator has to act."""
    return ProviderError(
        "provider_misconfigured",
        gettext("The payment service is not set up correctly. Please contact us."),
    )


def other_payment_error() -> ProviderError:
    """The provider answered about a payment other than the one asked about."""
    return ProviderError(
        "provider_ref_mismatch", gettext("The payment service reported a different payment.")
    )


class InvalidNotification(ProviderError):
    """A notification whose signature, timestamp or shape is wrong: forged, tampered,
    replayed out of its window. Nothing may change because of it; it is logged."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid_notification", message)


@dataclass(frozen=True)
class PaymentRequest:
    # Our merchant reference for the payment (``out_trade_no``, metadata): unique, stable
    # across retries of the same payment — providers deduplicate on it.
    reference: str
    amount: int  # minor units
    currency: str  # ISO 4217
    method: str  # one of METHODS
    description: str  # shown to the payer by the provider
    return_url: str  # where the payer's browser goes after the provider's page
    notify_url: str  # where the provider posts its asynchronous notifications
    language: str = "zh-hans"
    client_ip: str | None = None
    expires_at: datetime | None = None
    # Where the payer is (one of SURFACES); None: the provider's configured flow.
    surface: str | None = None
    # The payer's openid for the WeChat app (公众号) we charge for: JSAPI needs it.
    payer_openid: str | None = None


@dataclass(frozen=True)
class NextAction:
    """What the payer does next: open ``url`` (a hosted checkout page, an app's payment
    page), scan ``qr_data`` with another device, or (``jsapi``) have WeChat's browser open
    its payment sheet for the prepay id (the provider's ``jsapi_parameters``)."""

    kind: Literal["redirect", "qr", "jsapi"]
    url: str | None = None
    qr_data: str | None = None


@dataclass(frozen=True)
class CreatedPayment:
    provider_ref: str | None  # the provider's id (PaymentIntent id, prepay id …), if any
    next_action: NextAction


# Event kinds, normalised across providers.
SUCCEEDED = "payment.succeeded"
FAILED = "payment.failed"
PENDING = "payment.pending"
REFUNDED = "refund.succeeded"
REFUND_FAILED = "refund.failed"
IGNORED = "ignored"  # an event type we do not act on (still stored once)
# The event a notification is when it only reports a payment's status (as a query would).
EVENT_OF_STATUS = {"succeeded": SUCCEEDED, "pending": PENDING, "failed": FAILED}


@dataclass(frozen=True)
class ProviderEvent:
    """One notification, verified. ``event_id`` is unique per provider (stored once)."""

    event_id: str
    kind: str  # one of the kinds above
    reference: str | None  # our PaymentRequest.reference, as echoed by the provider
    provider_ref: str | None = None
    amount: int | None = None  # minor units, as the provider reports it
    currency: str | None = None
    merchant: str | None = None  # the merchant / app the event was sent for
    occurred_at: datetime | None = None
    failure_code: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)
    # For refund.* kinds: our refund reference, when the provider echoes it, and the
    # provider's own id of the refund.
    refund_reference: str | None = None
    provider_refund_ref: str | None = None


@dataclass(frozen=True)
class ProviderPaymentStatus:
    """Answer of :meth:`Provider.query`: what the provider says of a payment (not to be
    confused with our Payment row's status, ``payments.models.PaymentStatus``)."""

    status: Literal["pending", "succeeded", "failed", "unknown"]
    provider_ref: str | None = None
    amount: int | None = None
    currency: str | None = None
    merchant: str | None = None
    failure_code: str | None = None


@dataclass(frozen=True)
class RefundRequest:
    """A refund of a captured payment, as :meth:`Provider.refund` is asked for it."""

    reference: str  # the payment's PaymentRequest.reference
    provider_ref: str | None  # the provider's id of the payment, if it gave one
    amount: int  # minor units to give back
    currency: str
    # Our reference for this refund: providers deduplicate on it (the same one never
    # refunds twice).
    refund_reference: str
    total: int  # the captured payment's amount, minor units


@dataclass(frozen=True)
class RefundResult:
    status: Literal["succeeded", "pending", "failed"]
    provider_refund_ref: str | None = None


@dataclass(frozen=True)
class Ack:
    """What to answer the provider's notification request with."""

    status: int = 200
    content_type: str = "text/plain"
    body: bytes = b""


# A statement line's kind.
STATEMENT_PAYMENT: Final = "payment"
STATEMENT_REFUND: Final = "refund"


@dataclass(frozen=True)
class StatementLine:
    """One payment or refund as the provider's own statement of a day lists it.

    ``reference``: ours, as the provider echoes it (the payment's ``PaymentRequest.reference``
    as out_trade_no / 商户订单号 / metadata; a refund's refund reference as out_request_no /
    商户退款单号 / metadata) — empty when the provider's line names none. ``state``:
    ``succeeded``, ``pending`` or ``failed``, in our words. ``amount``: minor units, in the
    payment's own currency (not a converted settlement amount)."""

    kind: Literal["payment", "refund"]
    reference: str
    provider_ref: str
    amount: int
    currency: str
    state: str = "succeeded"
    at: datetime | None = None
    # The payment's reference for a refund line, when the statement gives it.
    payment_reference: str = ""


def day_window(day: date, zone: tzinfo) -> tuple[datetime, datetime]:
    """``day`` in ``zone`` as a half-open UTC interval ``[start, end)``."""
    start = datetime.combine(day, time.min, tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


class Provider(abc.ABC):
    name: ClassVar[str]
    methods: ClassVar[frozenset[str]]
    # Capability flags.
    supports_refund: ClassVar[bool] = True
    supports_partial_refund: ClassVar[bool] = False
    supports_query: ClassVar[bool] = True
    # The provider delivers notifications asynchronously (all real ones do).
    supports_webhooks: ClassVar[bool] = True
    # The provider gives a statement of each day (:meth:`statement`), in the time zone its
    # own days are counted in, complete this long after the day's end (Alipay's and WeChat
    # Pay's bills are made the next morning).
    supports_statement: ClassVar[bool] = True
    statement_zone: ClassVar[tzinfo] = UTC
    statement_ready_after: ClassVar[timedelta] = timedelta(hours=1)

    @property
    def merchant(self) -> str | None:
        """Our merchant identity at the provider (account, app id, mch id); events for
        another merchant are refused."""
        return None

    @abc.abstractmethod
    def create_payment(self, request: PaymentRequest) -> CreatedPayment:
        """Ask the provider for a payment; raises :class:`ProviderError`."""

    @abc.abstractmethod
    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> list[ProviderEvent]:
        """Verify and decode a notification (raw body, request headers with any case);
        raises :class:`InvalidNotification` if it is not authentic or not fresh."""

    def ack(self, accepted: bool) -> Ack:
        """The answer the provider expects (Alipay wants ``success``, WeChat Pay JSON …)."""
        return Ack(200 if accepted else 400)

    @abc.abstractmethod
    def query(self, reference: str, provider_ref: str | None) -> ProviderPaymentStatus:
        """Ask the provider where the payment stands (the janitor does this)."""

    def refund(
        self,
        reference: str,
        provider_ref: str | None,
        amount: int,
        currency: str,
        refund_reference: str,
        total: int,
    ) -> RefundResult:
        """Refund ``amount`` of a captured payment of ``total``; idempotent on
        ``refund_reference``."""
        return self.make_refund(
            RefundRequest(reference, provider_ref, amount, currency, refund_reference, total)
        )

    @abc.abstractmethod
    def make_refund(self, refund: RefundRequest) -> RefundResult:
        """Ask the provider for ``refund`` (what :meth:`refund` does, with its arguments in
        one object); raises :class:`ProviderError`."""

    def statement(self, day: date) -> list[StatementLine]:
        """The provider's own statement of ``day`` (a calendar day in
        :attr:`statement_zone`): the payments it captured and the refunds it made that day;
        raises :class:`ProviderError` (``provider_unavailable`` when it cannot be reached,
        or the statement is not made yet)."""
        raise ProviderError("statement_not_supported", "this provider gives no statement")
