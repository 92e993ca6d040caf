"""One JSON object per log line, for a log collector (``SIMTOPUP_LOG_FORMAT=json``).

Each line has ``time`` (UTC, ISO 8601 with milliseconds and ``Z``), ``level``, ``logger``,
``message`` (the formatted message), ``request_id`` (core/requestid.py; "" outside a request)
and, when the record carries one, ``exception`` (the traceback text) and ``stack``. Anything
that cannot be put in JSON as it is (an odd argument's repr in the message is already text)
is written with ``str``. A message with line breaks stays one line: JSON escapes them.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from simtopup.core import requestid


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": requestid.current(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)
