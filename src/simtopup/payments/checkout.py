"""A customer's order paid through a provider (card, Alipay, WeChat Pay), for the app and the
website: checking the request, having the provider create the payment, placing the order
with it, cancelling one that still awaits its payment. The order side — price, quote, the
card's credit — is orders' (orders/customer.py); payments sits above it.
"""

from __future__ import annotations

from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from simtopup.accounts.models import Customer
from simtopup.catalog.models import Plan
from simtopup.core.errors import DomainError
from simtopup.devices.models import Device
from simtopup.orders.actions import create_order
from simtopup.orders.customer import (
    BALANCE,
    get_customer_order,
    place_balance_order,
    resolve_order,
)
from simtopup.orders.models import Channel, Order, OrderStatus
from simtopup.payments.actions import (
    PreparedPayment,
    cancel_awaiting_order,
    prepare_payment,
    retry_payment,
    start_payment,
)
from simtopup.payments.providers.base import Provider
from simtopup.payments.registry import provider_for


def _resolve(
    customer: Customer | None,
    device_text: str,
    plan_code: str,
    payment_method: str,
    quote_id: int | None,
    confirmed: tuple[int, str] | None = None,
) -> tuple[Device, Plan, int, Provider | None]:
    """The provider that takes ``payment_method`` now (None: the card's credit; checked
    first), and the order's device, plan and price (orders' rules)."""
    provider = None if payment_method == BALANCE else provider_for(payment_method)
    device, plan, amount = resolve_order(
        customer, device_text, plan_code, payment_method, quote_id, confirmed
    )
    return device, plan, amount, provider


def _language(customer: Customer | None) -> str:
    """The payer's language: the customer's, or the page's for a visitor."""
    if customer is not None:
        return customer.language
    return (translation.get_language() or settings.LANGUAGE_CODE).lower()


def _description(customer: Customer | None, device: Device, plan: Plan) -> str:
    with translation.override(_language(customer)):  # the payer's language on their page
        return gettext("Top-up %(plan)s for %(device)s") % {
            "plan": plan.name,
            "device": device.masked,
        }


def prepare_order(
    customer: Customer | None,
    device_text: str,
    plan_code: str,
    payment_method: str,
    *,
    quote_id: int | None = None,
    confirmed: tuple[int, str] | None = None,
    client_ip: str | None = None,
    surface: str | None = None,
    payer_openid: str | None = None,
) -> PreparedPayment | None:
    """Before :func:`place_order`'s transaction, outside it: check the request and, for
    card / Alipay / WeChat Pay, have the provider create the payment now, so that no
    database lock waits on the provider. Raises the same errors as :func:`place_order`."""
    device, plan, amount, provider = _resolve(
        customer, device_text, plan_code, payment_method, quote_id, confirmed
    )
    if provider is None:
        return None
    return prepare_payment(
        provider,
        payment_method,
        amount,
        plan.currency,
        description=_description(customer, device, plan),
        language=_language(customer),
        client_ip=client_ip,
        surface=surface,
        payer_openid=payer_openid,
    )


def place_order(
    customer: Customer | None,
    device_text: str,
    plan_code: str,
    payment_method: str,
    *,
    quote_id: int | None = None,
    confirmed: tuple[int, str] | None = None,
    channel: str = Channel.APP,
    client_ip: str | None = None,
    prepared: PreparedPayment | None = None,
    surface: str | None = None,
    payer_openid: str | None = None,
) -> Order:
    """Place an order in the caller's transaction. ``balance`` settles at once; the other
    methods leave the order ``awaiting_payment`` with a payment whose next action (checkout
    URL or QR code) the payer follows — the one :func:`prepare_order` got, if given.
    ``surface`` (payments/surface.py) picks the provider's flow for where the payer is."""
    device, plan, amount, provider = _resolve(
        customer, device_text, plan_code, payment_method, quote_id, confirmed
    )
    if provider is None:
        assert customer is not None  # resolve_order refuses credit without a customer
        return place_balance_order(customer, device, plan, channel=channel, amount=amount)
    order = create_order(
        channel, device, plan, amount, customer=customer, payment_method=payment_method
    )
    start_payment(
        order,
        provider,
        payment_method,
        description=_description(customer, device, plan),
        language=_language(customer),
        client_ip=client_ip,
        prepared=prepared,
        surface=surface,
        payer_openid=payer_openid,
    )
    return order


def cancel_order(customer: Customer, order_id: int) -> Order:
    """The customer cancels an order still awaiting payment (caller's transaction)."""
    order = get_customer_order(customer, order_id)
    if order.status != OrderStatus.AWAITING_PAYMENT:
        raise DomainError("order_not_cancellable", _("This order can no longer be cancelled."), 409)
    cancel_awaiting_order(order, "cancelled")
    return get_customer_order(customer, order_id)


def _retry_provider(order: Order, payment_method: str) -> Provider:
    """The provider for paying ``order`` again: refused at once (nothing asked of any
    provider) unless its payment was declined; the card's credit is not a retry."""
    if order.status != OrderStatus.FAILED or order.failure_code != "payment_failed":
        raise DomainError(
            "order_not_retryable", _("This order can no longer be paid another way."), 409
        )
    if payment_method == BALANCE:
        raise DomainError(
            "payment_method_not_retryable",
            _("The card's credit cannot pay this order again. Please place a new order."),
            422,
        )
    return provider_for(payment_method)


def prepare_retry(
    order: Order,
    payment_method: str,
    *,
    client_ip: str | None = None,
    surface: str | None = None,
    payer_openid: str | None = None,
) -> PreparedPayment:
    """Before :func:`retry_order`'s transaction: the provider creates the new attempt."""
    provider = _retry_provider(order, payment_method)
    return prepare_payment(
        provider,
        payment_method,
        order.amount,
        order.currency,
        description=_description(order.customer, order.device, order.plan),
        language=_language(order.customer),
        client_ip=client_ip,
        surface=surface,
        payer_openid=payer_openid,
    )


def retry_order(
    order: Order,
    payment_method: str,
    *,
    prepared: PreparedPayment | None = None,
    client_ip: str | None = None,
    surface: str | None = None,
    payer_openid: str | None = None,
) -> Order:
    """Pay a declined order again with ``payment_method`` (caller's transaction): the same
    order, a new payment attempt (``actions.retry_payment``)."""
    provider = _retry_provider(order, payment_method)
    return retry_payment(
        order.pk,
        provider,
        payment_method,
        description=_description(order.customer, order.device, order.plan),
        language=_language(order.customer),
        client_ip=client_ip,
        prepared=prepared,
        surface=surface,
        payer_openid=payer_openid,
    )
