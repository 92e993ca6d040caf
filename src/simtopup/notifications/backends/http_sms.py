"""A generic HTTP SMS provider adapter.

``POST <SMS_HTTP_URL>`` with the JSON body ``{"to", "text", "from"?, "reference"}``, the API
key in ``Authorization: Bearer <key>``, and, when a signing secret is set, the body signed
like our webhooks: ``X-Simtopup-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">``.
Any non-2xx answer, a timeout or a connection error is a :class:`SendError`.
"""

from __future__ import annotations

import json
import uuid
from typing import ClassVar

import requests
from django.conf import settings

from simtopup.core.signing import HEADER, sign_body
from simtopup.notifications.senders import Message, SendError


class HttpSmsSender:
    channels: ClassVar[frozenset[str]] = frozenset({"sms"})

    def payload(self, message: Message) -> dict[str, str]:
        body = {"to": message.recipient, "text": message.body, "reference": uuid.uuid4().hex}
        if settings.SMS_HTTP_SENDER_ID:
            body["from"] = settings.SMS_HTTP_SENDER_ID
        return body

    def send(self, message: Message) -> None:
        if not settings.SMS_HTTP_URL:
            raise SendError("SIMTOPUP_SMS_HTTP_URL is not set")
        raw = json.dumps(self.payload(message), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if settings.SMS_HTTP_API_KEY:
            headers["Authorization"] = f"Bearer {settings.SMS_HTTP_API_KEY}"
        if settings.SMS_HTTP_SIGNING_SECRET:
            headers[HEADER] = sign_body(settings.SMS_HTTP_SIGNING_SECRET, raw)
        try:
            response = requests.post(
                settings.SMS_HTTP_URL,
                data=raw,
                headers=headers,
                timeout=settings.SMS_HTTP_TIMEOUT_SECONDS,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise SendError(f"SMS provider unreachable: {exc}") from exc
        if not 200 <= response.status_code < 300:
            raise SendError(
                f"SMS provider answered {response.status_code}: {response.text[:200]!r}"
            )
