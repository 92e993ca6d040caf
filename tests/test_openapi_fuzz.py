"""Schemathesis over the whole OpenAPI document: every operation gets generated requests,
sent in-process to the Django app (WSGI, this test's database) with real credentials — an
app token, a reseller key, the network's signature — and every answer must hold to the
document: no 5xx, the documented status codes, content types, headers and schemas.

Bounded (``MAX_EXAMPLES`` per operation, no shrinking) so it stays a suite test; a failure
names the operation and the check. Known exceptions are listed in ``EXCLUDED_CHECKS`` with
their reasons.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import pytest
import schemathesis
from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.utils import timezone
from django.utils.encoding import escape_uri_path
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from schemathesis.core import NotSet
from schemathesis.core.result import Ok

from simtopup.core.signing import sign
from simtopup.devices.models import Device
from tests.customer_support import NO_LIMITS, app_client, login_customer
from tests.support import Actors, post_json, reseller_client

MAX_EXAMPLES = 10
# Checks left out, each with the reason it does not hold for this API by design.
EXCLUDED_CHECKS = {
    "positive_data_acceptance": (
        "a request valid by the schema may still break a rule a JSON schema cannot state:"
        " a phone number or an email (one of them), an identifier's check digit, a plan"
        " code or device that exists. Those are refused with a documented 422 problem"
        " (a stable code such as check_digit_mismatch or unknown_plan), not accepted."
    ),
}
EXCLUDED = [getattr(schemathesis.checks, name) for name in EXCLUDED_CHECKS]
Failures = dict[tuple[str, str], str]  # (operation, check) → the first failure's report


@pytest.fixture
def wsgi_app(transactional_db: None, settings: Any) -> Any:
    # A real transaction per request, as served: the WSGI handler opens and closes database
    # connections around requests, which a test wrapped in one transaction would not survive.
    for name, value in NO_LIMITS.items():
        setattr(settings, name, value)
    settings.SMS_SENDER = "memory"
    settings.EMAIL_SENDER = "memory"
    return get_wsgi_application()


def fuzz(operation: Any, headers_for: Callable[[Any], dict[str, str]], failures: Failures) -> None:
    """Send ``MAX_EXAMPLES`` generated requests for ``operation``; every failed check is
    recorded in ``failures`` (once per operation and check), none stops the others."""
    where = f"{operation.method.upper()} {operation.path}"

    @given(case=operation.as_strategy())
    @hypothesis_settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        kwargs: dict[str, Any] = {}
        headers = headers_for(case)
        if case.path.startswith("/network/"):
            # The signature covers the raw body: send exactly the bytes that were signed.
            has_body = not isinstance(case.body, NotSet)
            raw = json.dumps(case.body).encode() if has_body else b""
            # And the method and path as the server reads them (the network API has no query).
            path = escape_uri_path(unquote(case.formatted_path))
            signature = sign(settings.NETWORK_SECRET, case.method, path, raw)
            headers = {"X-Simtopup-Signature": signature}
            if has_body:
                headers["Content-Type"] = "application/json"
                kwargs["data"] = raw
        try:
            case.call_and_validate(headers=headers, excluded_checks=EXCLUDED, **kwargs)
        except (AssertionError, BaseExceptionGroup) as exc:
            for failure in getattr(exc, "exceptions", [exc]):
                title = getattr(failure, "title", type(failure).__name__)
                failures.setdefault((where, title), str(exc))

    run()


def seed() -> Actors:
    """Plans, devices, resellers alice and bob; a customer owning a card with an order
    awaiting payment and a reseller sale on it: the lists answer with real items."""
    actors = Actors()
    token, customer = login_customer("+8613800138000")
    card = actors.devices[1]
    Device.objects.filter(pk=card.pk).update(owner=customer, bound_at=timezone.now())
    body = {"device": card.iccid, "plan": "day-1g", "payment_method": "card"}
    assert post_json(app_client(token), "/api/v1/orders", body).status_code == 201
    sale = {"device": card.iccid, "plan": "month-20g", "reference": "fuzz-seed"}
    assert (
        post_json(reseller_client(actors.alice_key), "/reseller/v1/topups", sale).status_code == 201
    )
    return actors


def test_every_operation_holds_to_the_openapi_document(wsgi_app: Any) -> None:
    actors = seed()
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", wsgi_app)
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # every operation's definition loads
        operations.append(result.ok())
    assert len(operations) > 30

    failures: Failures = {}
    for operation in operations:
        # A fresh app token for each operation: the log-out operations revoke tokens.
        app_token, _ = login_customer("+8613800138000")

        def headers_for(case: Any, app_token: str = app_token) -> dict[str, str]:
            key = actors.alice_key if case.path.startswith("/reseller/") else app_token
            return {"Authorization": f"Bearer {key}"}

        fuzz(operation, headers_for, failures)
    report = [f"{where}: {title}" for where, title in failures]
    assert not failures, "\n".join(report) + "\n\n" + "\n\n".join(list(failures.values())[:3])


def test_a_device_id_beyond_any_row_is_not_found(db: None) -> None:
    # Found by the run above: the balance's one-statement read handed such an id to the
    # database driver, which refused it (500) where the ORM answers "no such row".
    token, _ = login_customer("+8613800138000")
    for device_id in (2**63, 2**70, 0):
        response = app_client(token).get(f"/api/v1/devices/{device_id}/balance")
        assert response.status_code == 404, (device_id, response.content)
        assert response.json()["code"] == "not_found"
