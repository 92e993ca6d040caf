"""The customer who placed an order is told when it is credited (到账) or refunded, in their
own language and currency format; reseller sales are not announced to anybody's phone."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client, TestCase

from simtopup.accounts.models import Customer
from simtopup.notifications.backends import memory
from simtopup.orders.models import Order, OrderStatus
from tests.payments_support import (
    app,
    assert_ledger_clean,
    bind,
    give_credit,
    make_customer,
    post_json,
    run_tasks,
)
from tests.support import Actors


@pytest.fixture(autouse=True)
def _memory_senders(settings: Any) -> None:
    settings.SMS_SENDER = "memory"
    settings.EMAIL_SENDER = "memory"
    memory.outbox.clear()


def buy_with_credit(token: str, device: str) -> Any:
    with TestCase.captureOnCommitCallbacks(execute=True):
        return post_json(
            app(token),
            "/api/v1/orders",
            {"device": device, "plan": "day-1g", "payment_method": "balance"},
        )


def test_a_credited_top_up_is_announced_to_its_customer(actors: Actors) -> None:
    token, customer = make_customer("+8613600000101")
    bind(actors.device, customer)
    give_credit(actors.device, 1000, "test:notice:1")
    response = buy_with_credit(token, actors.device.iccid)
    assert response.status_code == 201, response.content
    [message] = memory.outbox
    assert message.recipient == "+8613600000101"
    assert "¥5.00" in message.body
    assert actors.device.masked in message.body
    assert actors.plans["day-1g"].name_en in message.body  # the customer's language: en


def test_the_plan_is_named_in_the_customers_language(actors: Actors) -> None:
    token, customer = make_customer("+8613600000102")
    Customer.objects.filter(pk=customer.pk).update(language="zh-hant")
    bind(actors.device, customer)
    give_credit(actors.device, 1000, "test:notice:2")
    assert buy_with_credit(token, actors.device.iccid).status_code == 201
    [message] = memory.outbox
    assert message.language == "zh-hant"
    assert actors.plans["day-1g"].name_zh_hant in message.body


def test_a_refund_is_announced_and_reseller_sales_are_not(
    actors: Actors, alice: Client, settings: Any
) -> None:
    with TestCase.captureOnCommitCallbacks(execute=True):
        sale = post_json(
            alice,
            "/reseller/v1/topups",
            {"device": actors.devices[1].iccid, "plan": "day-1g", "reference": "n-1"},
        )
    assert sale.status_code == 201
    assert memory.outbox == []

    settings.NETWORK_ADAPTER = "tests.test_balance_payment.FlakyUpstream"  # refuses for good
    token, customer = make_customer("+8613600000103")
    bind(actors.device, customer)
    give_credit(actors.device, 1000, "test:notice:3")
    assert buy_with_credit(token, actors.device.iccid).json()["status"] == "paid"
    assert memory.outbox == []  # not credited: nothing said yet
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert run_tasks() == ["failed"]
    assert Order.objects.get(customer=customer).status == OrderStatus.REFUNDED
    [message] = memory.outbox
    assert message.recipient == "+8613600000103"
    assert "¥5.00" in message.body
    assert_ledger_clean()
