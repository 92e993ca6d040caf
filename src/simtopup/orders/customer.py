"""Customer orders (app, website, automatic top-up): quotes, prices, paying from the card's
credit, the customer's orders. Paying through a provider, and cancelling an order that
awaits its payment, is payments' side of the sale (payments/checkout.py).

Anyone logged in may quote and top up any rechargeable device (a parent paying for a child's
card) and sees only its masked identifier; only the card's owner may spend its credit. On the
website a visitor who is not logged in may pay for a card too (``customer=None``): by card,
Alipay or WeChat Pay only, without a stored quote.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from simtopup.accounts.models import Customer
from simtopup.catalog.models import Plan
from simtopup.catalog.pricing import get_plan
from simtopup.core.errors import DomainError, field_error
from simtopup.devices.identifiers import rechargeable_device
from simtopup.devices.models import Device
from simtopup.ledger.actions import Posting, lock_accounts, post, system_account
from simtopup.ledger.keys import order_key
from simtopup.orders.actions import create_order, fulfil_paid_order
from simtopup.orders.locking import lock_card
from simtopup.orders.models import Channel, Order, Quote

# The payment method "the card's credit" (beside the providers' METHODS): one name for
# every door.
BALANCE = "balance"


def _not_owner() -> DomainError:
    return DomainError("not_device_owner", _("Only the card's owner can pay with its credit."), 403)


def create_quote(customer: Customer, device_text: str, plan_code: str) -> Quote:
    device = rechargeable_device(device_text)
    plan = get_plan(plan_code, settings.CURRENCY)
    return Quote.objects.create(
        customer=customer,
        device=device,
        plan=plan,
        amount=plan.price,
        currency=plan.currency,
        expires_at=timezone.now() + timedelta(seconds=settings.QUOTE_TTL_SECONDS),
    )


def order_amount(
    customer: Customer | None,
    device: Device,
    plan: Plan,
    *,
    quote_id: int | None = None,
    confirmed: tuple[int, str] | None = None,
) -> int:
    """What the payer pays for ``plan`` on ``device`` — the one pricing rule of every door
    (app API, website): a customer's quote locks its amount until it expires; without a
    quote it is the plan's price now, and a price the payer confirmed elsewhere
    (``confirmed``: amount and currency, the website visitor's signed confirmation) must
    still be it."""
    if quote_id is not None and customer is not None:
        return _quoted_amount(customer, quote_id, device, plan)
    if confirmed is not None and confirmed != (plan.price, plan.currency):
        raise DomainError(
            "quote_expired",
            _("The price of this plan has changed. Please confirm the order again."),
            409,
        )
    return plan.price


def _quoted_amount(customer: Customer, quote_id: int, device: Device, plan: Plan) -> int:
    quote = Quote.objects.filter(pk=quote_id, customer=customer).first()
    if quote is None:
        raise field_error("unknown_quote", _("There is no such quote."), "quote")
    if quote.device_id != device.pk or quote.plan_id != plan.pk:
        raise field_error("quote_mismatch", _("This quote is for another device or plan."), "quote")
    if quote.expires_at <= timezone.now():
        raise field_error(
            "quote_expired",
            _("This price confirmation has expired. Please confirm the order again."),
            "quote",
        )
    return quote.amount


def resolve_order(
    customer: Customer | None,
    device_text: str,
    plan_code: str,
    payment_method: str,
    quote_id: int | None,
    confirmed: tuple[int, str] | None = None,
) -> tuple[Device, Plan, int]:
    """The device, plan and price of a customer's order, checked (the payment method is
    payments' to check: payments/checkout.py)."""
    if customer is None and payment_method == BALANCE:
        raise _not_owner()
    if customer is None and quote_id is not None:
        raise field_error("unknown_quote", _("There is no such quote."), "quote")
    device = rechargeable_device(device_text)
    plan = get_plan(plan_code, settings.CURRENCY)
    amount = order_amount(customer, device, plan, quote_id=quote_id, confirmed=confirmed)
    return device, plan, amount


def place_balance_order(
    customer: Customer,
    device: Device,
    plan: Plan,
    channel: str = Channel.APP,
    amount: int | None = None,
) -> Order:
    """Buy ``plan`` for ``device`` with the card's credit (owner only) and fulfil at once.

    Runs in its own savepoint inside the caller's transaction: credit that cannot cover the
    price raises ``insufficient_balance`` (402) and leaves no order behind. Concurrent
    orders of one card queue on its row lock, and only the owner as of that lock may pay
    (``not_device_owner``, 403); the credit never goes below zero.
    Automatic top-up calls this with ``channel="auto"``.
    """
    if plan.is_payg:
        raise field_error(
            "payment_method_not_allowed",
            _("Credit cannot buy more credit. Please choose another payment method."),
            "payment_method",
        )
    if plan.currency != device.credit_account.unit:
        raise field_error("unknown_plan", _("There is no such plan."), "plan")
    price = plan.price if amount is None else amount
    now = timezone.now()
    with transaction.atomic():
        # The lock order of every sale (orders/locking.py): the card, then its credit. The
        # card's row is locked here even when the sale does not change it, and its owner is
        # read under that lock: ``device`` is the caller's earlier read, which an unbinding
        # committed since may have made stale.
        if lock_card(device) != customer.pk:
            raise _not_owner()
        credit = lock_accounts([device.credit_account_id])[device.credit_account_id]
        order = create_order(
            channel, device, plan, price, paid_at=now, customer=customer, payment_method=BALANCE
        )
        post(
            [
                Posting(
                    credit,
                    system_account("order_clearing", order.currency),
                    price,
                    "order_payment",
                    order_key(order.pk, "pay"),
                    f"order {order.pk} paid from the card's credit",
                )
            ]
        )
        fulfil_paid_order(order, now)
    order.refresh_from_db()
    return order


def customer_orders(customer: Customer) -> QuerySet[Order]:
    # Their refunds (payments' ``Refund.order``) come with them: each row shows its own.
    return (
        Order.objects.filter(customer=customer)
        .select_related("device", "plan", "payment")
        .prefetch_related("refunds")
    )


def get_customer_order(customer: Customer, order_id: int) -> Order:
    order = customer_orders(customer).filter(pk=order_id).first()
    if order is None:
        raise DomainError("not_found", _("There is no such order."), 404)
    return order


def prune_quotes(older_than: timedelta = timedelta(days=1)) -> int:
    """Delete quotes that expired long ago (the janitor calls this)."""
    deleted, _rows = Quote.objects.filter(expires_at__lt=timezone.now() - older_than).delete()
    return deleted
