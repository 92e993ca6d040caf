"""The request id (core/requestid.py): echoed when sane, replaced when not, in every answer's
X-Request-Id, in problem documents, and in JSON log lines (core/logformat.py)."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from simtopup.core import requestid
from simtopup.core.logformat import JsonFormatter
from tests.support import Actors, post_json

MADE = re.compile(r"[0-9a-f]{32}")


def test_an_answer_carries_a_new_request_id(db: None) -> None:
    first = Client().get("/healthz")
    second = Client().get("/healthz")
    assert MADE.fullmatch(first["X-Request-Id"])
    assert MADE.fullmatch(second["X-Request-Id"])
    assert first["X-Request-Id"] != second["X-Request-Id"]


@pytest.mark.parametrize(
    "given", ["abc", "req-2026.12.04:0001_x", "A" * 64, "0f8e2c6a-8b1d-4c9e-9e1a-2b3c4d5e6f70"]
)
def test_a_sane_incoming_request_id_is_echoed(db: None, given: str) -> None:
    response = Client().get("/healthz", headers={"X-Request-Id": given})
    assert response["X-Request-Id"] == given


@pytest.mark.parametrize(
    "given",
    [
        "",
        "A" * 65,
        "has space",
        "new\\nline",
        "<script>",
        'quote"d',
        "日本",
        "a,b",
        "{json}",
    ],
)
def test_an_odd_incoming_request_id_is_replaced(db: None, given: str) -> None:
    response = Client().get("/healthz", headers={"X-Request-Id": given})
    assert response.status_code == 200
    assert MADE.fullmatch(response["X-Request-Id"])


def test_a_problem_carries_the_request_id_of_its_header(db: None) -> None:
    response = Client().get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "not_found"
    assert body["request_id"] == response["X-Request-Id"]
    assert MADE.fullmatch(body["request_id"])


def test_a_problem_carries_the_caller_s_request_id(actors: Actors, alice: Client) -> None:
    """A domain error from a view (ninja's handler), with the caller's own id."""
    response = post_json(
        alice,
        "/reseller/v1/topups",
        {"device": "89860000000000000000", "plan": "day-1g", "reference": "rid-1"},
        **{"X-Request-Id": "caller-7"},
    )
    assert response.status_code in (404, 422)
    assert response["X-Request-Id"] == "caller-7"
    assert response.json()["request_id"] == "caller-7"


def test_a_refused_body_size_problem_carries_it_too(db: None, settings: Any) -> None:
    """The 413 is answered by the layer just inside the request id's."""
    settings.MAX_REQUEST_BYTES = 10
    response = Client().post(
        "/api/v1/orders",
        data=b"{" + b" " * 20 + b"}",
        content_type="application/json",
        headers={"X-Request-Id": "big-body"},
    )
    assert response.status_code == 413
    assert response.json()["request_id"] == "big-body" == response["X-Request-Id"]


def test_a_validation_problem_and_the_website_carry_it(db: None) -> None:
    response = Client().post(
        "/api/v1/auth/code", data='{"phone": 5}', content_type="application/json"
    )
    assert response.status_code in (400, 422)
    assert response.json()["request_id"] == response["X-Request-Id"]
    page = Client().get("/no-such-page/")
    assert page.status_code == 404
    assert MADE.fullmatch(page["X-Request-Id"])


def test_no_request_id_outside_a_request() -> None:
    assert requestid.current() == ""
    with requestid.bound("task-1"):
        assert requestid.current() == "task-1"
        with requestid.bound("bad id"):
            assert requestid.current() == ""
        assert requestid.current() == "task-1"
    assert requestid.current() == ""


# --- JSON log lines -------------------------------------------------------------------------


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The root logger writes JSON lines into a buffer, as settings.LOGGING does with
    SIMTOPUP_LOG_FORMAT=json."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_log_lines_parse_and_carry_the_request_id(db: None, json_log: io.StringIO) -> None:
    response = Client().get("/api/v1/no-such-thing", headers={"X-Request-Id": "trace-404"})
    assert response.status_code == 404
    logged = [line for line in lines(json_log) if line["logger"] == "django.request"]
    assert logged, json_log.getvalue()
    entry = logged[0]
    assert entry["request_id"] == "trace-404"
    assert entry["level"] == "WARNING"
    assert "/api/v1/no-such-thing" in entry["message"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])


def test_a_json_log_line_is_one_line_with_the_exception(json_log: io.StringIO) -> None:
    log = logging.getLogger("simtopup.test")
    with requestid.bound("with-exc"):
        try:
            raise ValueError("bad\nvalue")
        except ValueError:
            log.exception("it broke:\n%s — %s", "two lines", "中文")
    log.warning("after")
    text = json_log.getvalue()
    assert text.count("\n") == 2  # two records, one line each
    first, second = lines(json_log)
    assert first["message"] == "it broke:\ntwo lines — 中文"
    assert first["request_id"] == "with-exc"
    assert first["level"] == "ERROR"
    assert first["logger"] == "simtopup.test"
    assert "ValueError: bad" in first["exception"]
    assert "Traceback" in first["exception"]
    assert second["request_id"] == ""
    assert "exception" not in second


def test_the_log_format_setting_picks_the_formatter() -> None:
    """settings.LOGGING: the console handler uses the formatter SIMTOPUP_LOG_FORMAT names, and
    an unknown one refuses to start."""
    import os
    import subprocess
    import sys

    code = (
        "import django, logging; django.setup(); from simtopup.core import requestid;"
        "\nwith requestid.bound('from-settings'): logging.getLogger('x').warning('hello')"
    )
    base = {**os.environ, "DJANGO_SETTINGS_MODULE": "simtopup.settings"}
    ran = subprocess.run(
        [sys.executable, "-c", code],
        env={**base, "SIMTOPUP_LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        check=True,
    )
    entry = json.loads(ran.stderr.strip().splitlines()[-1])
    assert entry["message"] == "hello"
    assert entry["request_id"] == "from-settings"
    plain = subprocess.run(
        [sys.executable, "-c", code], env=base, capture_output=True, text=True, check=True
    )
    assert plain.stderr.strip().endswith("WARNING x: hello")
    wrong = subprocess.run(
        [sys.executable, "-c", code],
        env={**base, "SIMTOPUP_LOG_FORMAT": "xml"},
        capture_output=True,
        text=True,
    )
    assert wrong.returncode != 0
    assert "SIMTOPUP_LOG_FORMAT must be plain or json" in wrong.stderr
