"""Error answers from every layer: problem+json under /api/, /reseller/ and /network/, pages
elsewhere; a database out of reach is 503 with Retry-After (never 500, never HTML under the
APIs), logged once as a warning, and the next request after it is back works.

The outage is made two ways: every new connection refused (the driver's own
OperationalError, as while PostgreSQL restarts) and, on PostgreSQL, the app's session really
ended by the server (``pg_terminate_backend``).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.core.signals import request_finished, request_started
from django.db import IntegrityError, connection, connections, transaction
from django.db.utils import DataError, InterfaceError, OperationalError, ProgrammingError
from django.test import Client

from simtopup.api import fast_topup
from simtopup.core.unavailable import RETRY_AFTER_SECONDS, database_unavailable
from simtopup.devices.models import Device
from simtopup.orders.models import Order
from simtopup.resellers import fast_sale
from tests.staff_support import verify_console
from tests.support import Actors, float_of, network_get, post_json

PROBLEM = "application/problem+json"
TOPUPS = "/reseller/v1/topups"
postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="ends a real PostgreSQL session"
)


def client(**headers: Any) -> Client:
    # A crash must come back as the answer a real client gets, not be re-raised in the test.
    return Client(raise_request_exception=False, **headers)


def reseller(actors: Actors, key: str | None = None) -> Client:
    return client(HTTP_AUTHORIZATION=f"Bearer {key or actors.alice_key}")


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["status"] == status
    assert body["type"].endswith("/" + code)
    assert body["title"]
    assert body["detail"]
    return body


def assert_unavailable(response: Any) -> dict[str, Any]:
    body = assert_problem(response, 503, "database_unavailable")
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)
    return body


def sell(actors: Actors, reference: str, key: str | None = None) -> Any:
    headers = {"Idempotency-Key": key} if key else {}
    return post_json(
        reseller(actors),
        TOPUPS,
        {"device": actors.device.iccid, "plan": "day-1g", "reference": reference},
        **headers,
    )


# --- 404, 405, 413, 500 -------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/no-such-thing",
        "/api/no-such-version/plans",
        "/reseller/v1/no-such-thing",
        "/reseller/",
        "/network/v1/no-such-thing",
        "/network/v2/usage",
    ],
)
def test_an_unknown_path_under_the_apis_is_a_not_found_problem(db: None, path: str) -> None:
    for method in ("get", "post", "delete"):
        response = getattr(client(), method)(path)
        assert_problem(response, 404, "not_found")
        # made from Django's 404 page inside the middleware that sets these
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["X-Frame-Options"] == "DENY"


def test_an_unknown_website_path_stays_an_html_page(db: None) -> None:
    response = client().get("/no-such-page")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("delete", "/reseller/v1/float", {"GET"}),
        ("post", "/api/v1/plans", {"GET"}),
        ("put", TOPUPS, {"GET", "POST"}),
        ("get", "/network/v1/usage", {"POST"}),
    ],
)
def test_a_method_a_path_does_not_take_is_a_problem_with_allow(
    actors: Actors, method: str, path: str, allowed: set[str]
) -> None:
    response = getattr(reseller(actors), method)(path)
    assert_problem(response, 405, "method_not_allowed")
    assert {m.strip() for m in response["Allow"].split(",")} == allowed


def test_a_wrong_method_on_a_website_page_stays_html(db: None) -> None:
    response = client().post("/")
    assert response.status_code == 405
    assert not response["Content-Type"].startswith(PROBLEM)


def test_an_oversize_body_is_a_problem_in_the_request_language(actors: Actors) -> None:
    body = b'{"device": "' + b"1" * (1024 * 1024) + b'"}'
    for language, detail in [("en", "larger than 1 MiB"), ("zh-hans", "1 MiB")]:
        response = reseller(actors).post(
            TOPUPS, data=body, content_type="application/json", HTTP_ACCEPT_LANGUAGE=language
        )
        problem = assert_problem(response, 413, "payload_too_large")
        assert detail in problem["detail"]
    assert not Order.objects.exists()


def test_a_zh_request_gets_its_405_in_chinese(actors: Actors) -> None:
    response = reseller(actors).delete("/reseller/v1/float", HTTP_ACCEPT_LANGUAGE="zh-hant")
    problem = assert_problem(response, 405, "method_not_allowed")
    assert "Allow" in problem["detail"]
    assert "方法" in problem["detail"]


def test_a_view_that_crashes_is_a_server_error_problem_logged_with_its_traceback(
    actors: Actors, caplog: pytest.LogCaptureFixture
) -> None:
    with mock.patch("simtopup.api.app_devices.plan_body", side_effect=RuntimeError("a bug")):
        response = client().get("/api/v1/plans")
    assert_problem(response, 500, "server_error")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info
    assert isinstance(errors[0].exc_info[1], RuntimeError)


def test_a_middleware_that_crashes_under_the_api_is_a_server_error_problem(
    actors: Actors, caplog: pytest.LogCaptureFixture
) -> None:
    # The top-up hot path is a middleware: its exceptions never reach ninja's handlers.
    with (
        mock.patch.object(fast_topup, "enabled", return_value=True),
        mock.patch.object(fast_topup, "try_topup", side_effect=RuntimeError("a bug")),
    ):
        response = sell(actors, "crash")
    assert_problem(response, 500, "server_error")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info
    assert isinstance(errors[0].exc_info[1], RuntimeError)
    assert float_of(actors.alice) == 100000


def test_a_website_page_that_crashes_stays_djangos_html_500(actors: Actors) -> None:
    with mock.patch("simtopup.web.views.plan_card", side_effect=RuntimeError("a bug")):
        response = client().get("/")
    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")
    assert "Retry-After" not in response


@pytest.mark.parametrize(
    "error",
    [
        IntegrityError("duplicate key value violates unique constraint"),
        DataError("value too long for type character varying(40)"),
        ProgrammingError("column does not exist"),
    ],
)
def test_a_database_error_that_is_a_bug_stays_a_500(actors: Actors, error: Exception) -> None:
    with mock.patch("simtopup.api.app_devices.plan_body", side_effect=error):
        response = client().get("/api/v1/plans")
    assert_problem(response, 500, "server_error")
    assert "Retry-After" not in response


def test_a_real_wrong_statement_is_a_500_on_either_database(actors: Actors) -> None:
    # PostgreSQL says ProgrammingError, SQLite OperationalError("no such table"): both bugs.
    def wrong_statement(plan: Any) -> Any:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT * FROM simtopup_no_such_table")
        return {}

    with mock.patch("simtopup.api.app_devices.plan_body", side_effect=wrong_statement):
        response = client().get("/api/v1/plans")
    assert_problem(response, 500, "server_error")


def test_which_errors_mean_the_database_is_out_of_reach() -> None:
    def raised_from(outer: BaseException, inner: BaseException) -> BaseException:
        outer.__cause__ = inner
        return outer

    assert database_unavailable(OperationalError("connection refused"))
    assert database_unavailable(InterfaceError("connection already closed"))
    assert database_unavailable(
        raised_from(OperationalError("database is locked"), sqlite3.OperationalError("locked"))
    )
    assert database_unavailable(raised_from(RuntimeError("wrapped"), OperationalError("gone")))
    assert not database_unavailable(
        raised_from(
            OperationalError("no such table: x"), sqlite3.OperationalError("no such table: x")
        )
    )
    for bug in (IntegrityError(), DataError(), ProgrammingError(), RuntimeError(), KeyError()):
        assert not database_unavailable(bug)


# --- the database out of reach -------------------------------------------------------------


@contextmanager
def database_down() -> Iterator[None]:
    """Every connection gone and every new one refused with the driver's own error, as while
    PostgreSQL restarts (or the SQLite file cannot be opened)."""
    for conn in connections.all():
        conn.close()
    message = (
        'connection to server at "127.0.0.1", port 5432 failed: Connection refused'
        if connection.vendor == "postgresql"
        else "unable to open database file"
    )

    def refuse(self: Any, conn_params: Any) -> Any:
        raise self.Database.OperationalError(message)

    with mock.patch.object(type(connections["default"]), "get_new_connection", refuse):
        yield


def outage_logs(caplog: pytest.LogCaptureFixture) -> tuple[list[logging.LogRecord], list[Any]]:
    warnings = [r for r in caplog.records if r.name == "simtopup.core.unavailable"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    return warnings, errors


@pytest.fixture
def outage_actors(transactional_db: None) -> Actors:
    return Actors()


def test_the_app_api_answers_503_while_the_database_is_down(
    outage_actors: Actors, caplog: pytest.LogCaptureFixture
) -> None:
    with database_down():
        response = client().get("/api/v1/plans")
    assert_unavailable(response)
    warnings, errors = outage_logs(caplog)
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "/api/v1/plans" in warnings[0].getMessage()
    assert warnings[0].exc_info is None  # one line, no traceback
    assert errors == []
    again = client().get("/api/v1/plans")
    assert again.status_code == 200, again.content
    assert {p["code"] for p in again.json()} == set(outage_actors.plans)


@pytest.mark.parametrize("hot_path", [True, False], ids=["hot-path", "general-path"])
def test_a_reseller_topup_answers_503_in_either_path_and_charges_nothing(
    outage_actors: Actors, caplog: pytest.LogCaptureFixture, settings: Any, hot_path: bool
) -> None:
    """The hot path is a middleware (an exception there goes through ``handler500``), the
    general path a ninja view (its exception handlers): both meet the outage. SQLite has no
    hot path, but forced on it reads the database first exactly where PostgreSQL's does."""
    actors = outage_actors
    settings.FAST_TOPUP = hot_path
    calls = mock.Mock(wraps=fast_sale._call)
    with (
        database_down(),
        mock.patch.object(fast_topup, "enabled", return_value=hot_path),
        mock.patch.object(fast_sale, "_call", calls),
    ):
        response = sell(actors, "during", key="outage-1")
    assert_unavailable(response)
    assert calls.called is hot_path  # the layer this case is about met the outage
    warnings, errors = outage_logs(caplog)
    assert len(warnings) == 1
    assert errors == []
    assert not Order.objects.exists()
    assert float_of(actors.alice) == 100000

    # Back: the same request (same key) is sold once, by whichever path the database has.
    again = sell(actors, "during", key="outage-1")
    assert again.status_code == 201, again.content
    assert Order.objects.count() == 1
    assert float_of(actors.alice) == 100000 - 460


def test_a_503_from_the_hot_path_is_in_the_request_language(outage_actors: Actors) -> None:
    # The hot path runs before LocaleMiddleware: its answers pick the language themselves.
    with database_down(), mock.patch.object(fast_topup, "enabled", return_value=True):
        response = post_json(
            reseller(outage_actors),
            TOPUPS,
            {"device": outage_actors.device.iccid, "plan": "day-1g", "reference": "zh"},
            **{"Accept-Language": "zh-hant"},
        )
    problem = assert_unavailable(response)
    assert problem["title"] == "服務暫時無法使用"
    assert problem["detail"] == "服務暫時無法使用，請稍後再試。"


def test_the_network_api_answers_503_while_the_database_is_down(outage_actors: Actors) -> None:
    path = f"/network/v1/devices/{outage_actors.device.iccid}/authorization"
    with database_down():
        response = network_get(client(), path)
    assert_unavailable(response)
    again = network_get(client(), path)
    assert again.status_code == 200, again.content


@pytest.mark.parametrize(
    ("language", "title", "text"),
    [
        ("en", "Briefly unavailable", "The service is briefly unavailable, try again in a moment."),
        ("zh-hans", "暂时无法使用", "服务暂时不可用，请稍后再试。"),
        ("zh-hant", "暫時無法使用", "服務暫時無法使用，請稍後再試。"),
    ],
)
def test_a_website_page_answers_a_translated_503_page_while_the_database_is_down(
    outage_actors: Actors,
    caplog: pytest.LogCaptureFixture,
    language: str,
    title: str,
    text: str,
) -> None:
    with database_down():
        response = client(HTTP_ACCEPT_LANGUAGE=language).get("/")
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)
    page = response.content.decode()
    assert f"<title>{title}</title>" in page
    assert text in page
    warnings, errors = outage_logs(caplog)
    assert len(warnings) == 1
    assert errors == []
    again = client(HTTP_ACCEPT_LANGUAGE=language).get("/")
    assert again.status_code == 200
    assert "day-1g" in again.content.decode()


def test_the_operator_console_answers_an_html_503_while_the_database_is_down(
    outage_actors: Actors,
) -> None:
    operator = client()
    verify_console(
        operator, get_user_model().objects.create_superuser("operator", "op@example.com", "pw")
    )
    assert operator.get("/admin/").status_code == 200
    with database_down():
        response = operator.get("/admin/")  # the session and the user are read first
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert operator.get("/admin/").status_code == 200


# --- a session the server really ended (PostgreSQL) ----------------------------------------


def end_the_apps_session() -> None:
    from tests.test_db_backend import backend_pid, terminate

    terminate(backend_pid())


@postgresql_only
@pytest.mark.parametrize("hot_path", [True, False], ids=["hot-path", "general-path"])
def test_a_session_the_server_ended_is_503_or_answered_never_500(
    outage_actors: Actors, settings: Any, hot_path: bool
) -> None:
    actors = outage_actors
    settings.FAST_TOPUP = hot_path
    assert sell(actors, "before").status_code == 201
    end_the_apps_session()
    # The test client sends no request_started, so nothing checks the connection first: the
    # request meets the dead session itself.
    response = sell(actors, "after", key="after-1")
    if response.status_code != 201:
        assert_unavailable(response)
        assert Order.objects.count() == 1
    again = sell(actors, "after", key="after-1")
    assert again.status_code == 201, again.content
    assert Order.objects.count() == 2
    assert float_of(actors.alice) == 100000 - 2 * 460


@postgresql_only
@pytest.mark.parametrize("hot_path", [True, False], ids=["hot-path", "general-path"])
def test_a_server_that_ended_the_session_between_requests_is_not_noticed(
    outage_actors: Actors, settings: Any, hot_path: bool
) -> None:
    """What a real server does: Django's WSGI handler starts each request with
    ``close_old_connections`` (the test client does not), and the backend's health check
    replaces the dead connection before the sale uses it."""
    actors = outage_actors
    settings.FAST_TOPUP = hot_path
    assert sell(actors, "before").status_code == 201
    end_the_apps_session()
    request_started.send(sender=None)
    response = sell(actors, "after")
    assert response.status_code == 201, response.content
    request_finished.send(sender=None)
    assert float_of(actors.alice) == 100000 - 2 * 460


@postgresql_only
def test_api_and_website_recover_from_a_session_the_server_ended(outage_actors: Actors) -> None:
    device = Device.objects.get(pk=outage_actors.device.pk)
    network_path = f"/network/v1/devices/{device.iccid}/authorization"
    requests = [
        lambda: client().get("/api/v1/plans"),
        lambda: network_get(client(), network_path),
        lambda: client().get("/"),
    ]
    for request in requests:
        assert request().status_code == 200
        end_the_apps_session()
        response = request()
        assert response.status_code in {200, 503}, response.content
        if response.status_code == 503:
            assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)
        assert request().status_code == 200


# --- OpenAPI ------------------------------------------------------------------------------


def test_the_openapi_document_declares_problem_json_errors_and_503_everywhere(db: None) -> None:
    spec = client().get("/api/openapi.json").json()
    problem = spec["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "code", "errors"} <= set(problem["properties"])
    operations = [
        (path, method, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict) and "responses" in operation
    ]
    assert len(operations) > 20
    for path, method, operation in operations:
        where = f"{method.upper()} {path}"
        responses = operation["responses"]
        for status, response in responses.items():
            if int(status) >= 400:
                assert set(response.get("content", {PROBLEM: {}})) == {PROBLEM}, (where, status)
        unavailable = responses["503"]
        assert unavailable["content"][PROBLEM]["schema"] == {
            "$ref": "#/components/schemas/Problem"
        }, where
        assert "database_unavailable" in unavailable["description"], where
        assert "Retry-After" in unavailable["headers"], where
    topup = spec["paths"][TOPUPS]["post"]["responses"]
    assert topup["402"]["content"][PROBLEM]["schema"] == {"$ref": "#/components/schemas/Problem"}
    assert "application/json" in topup["201"]["content"]
