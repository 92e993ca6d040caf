from __future__ import annotations

import json
from typing import Any, cast

from django.http import HttpRequest
from ninja.parser import Parser


class StrictJSONParser(Parser):
    """JSON only; a body that is not a JSON object is refused (as malformed_json)."""

    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        data = json.loads(request.body)
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        return cast(dict[str, Any], data)
