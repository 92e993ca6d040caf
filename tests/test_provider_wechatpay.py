"""WeChat Pay provider against a local APIv3 gateway (real HTTP on 127.0.0.1): the gateway checks
each request's merchant signature (``Authorization: WECHATPAY2-SHA256-RSA2048 …``) and signs its
answers with the platform key, so the SDK's answer verification really runs. Notifications are
built as WeChat Pay builds them: the resource encrypted with AES-256-GCM under the APIv3 key,
the headers signed with the platform key. Keys and the platform certificate are generated here.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.core.exceptions import ImproperlyConfigured

from simtopup.payments.providers import base
from simtopup.payments.providers.wechatpay import WechatPayProvider
from tests.payment_keys import (
    KeyPair,
    apiv3_key,
    key_pair,
    self_signed_certificate,
    wechat_encrypt,
    wechat_signature_headers,
)

MCHID = "1900009191"
APPID = "wxd678efh567hg6787"
MERCHANT_SERIAL = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
PUBLIC_KEY_ID = "PUB_KEY_ID_0119000091912026112600000000000001"
REF = "pay_7Hk2mQ9xLr"
APIV3_KEY = apiv3_key()

Answer = tuple[int, dict[str, Any] | None] | Callable[[dict[str, Any]], tuple[int, Any]]


class FakeWechatGateway:
    """api.mch.weixin.qq.com on loopback."""

    def __init__(self, merchant: KeyPair, platform: KeyPair, serial: str) -> None:
        self.merchant = merchant
        self.platform = platform  # signs the answers; a test may swap it for a forger's key
        self.serial = serial
        self.routes: dict[tuple[str, str], Answer] = {}
        self.requests: list[dict[str, Any]] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                status, payload = gateway.answer(
                    self.command, self.path, body, self.headers.get("Authorization", "")
                )
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in wechat_signature_headers(
                    data, gateway.platform, gateway.serial
                ).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = handle_any

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    def answer(
        self, method: str, path: str, body: str, authorization: str
    ) -> tuple[int, dict[str, Any] | None]:
        fields = dict(re.findall(r'(\w+)="([^"]*)"', authorization))
        message = (
            f"{method}\n{path}\n{fields.get('timestamp')}\n{fields.get('nonce_str')}\n{body}\n"
        )
        if not (
            authorization.startswith("WECHATPAY2-SHA256-RSA2048 ")
            and fields.get("mchid") == MCHID
            and fields.get("serial_no") == MERCHANT_SERIAL
            and self.merchant.verify_sha256(message.encode(), fields.get("signature", ""))
        ):
            return 401, {"code": "SIGN_ERROR", "message": "签名错误"}
        request = {"method": method, "path": path, "json": json.loads(body) if body else None}
        self.requests.append(request)
        answer = self.routes.get((method, path.split("?")[0]))
        if answer is None:
            return 404, {"code": "RESOURCE_NOT_EXISTS", "message": "资源不存在"}
        return answer(request) if callable(answer) else answer

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def merchant_keys() -> KeyPair:
    return key_pair("wechat-merchant")


@pytest.fixture
def platform_keys() -> KeyPair:
    return key_pair("wechat-platform")


def configure(settings: Any, gateway_url: str, merchant: KeyPair) -> None:
    settings.WECHATPAY_MCHID = MCHID
    settings.WECHATPAY_APPID = APPID
    settings.WECHATPAY_APIV3_KEY = APIV3_KEY
    settings.WECHATPAY_PRIVATE_KEY = merchant.private_pem
    settings.WECHATPAY_CERT_SERIAL_NO = MERCHANT_SERIAL
    settings.WECHATPAY_PUBLIC_KEY = ""
    settings.WECHATPAY_PUBLIC_KEY_ID = ""
    settings.WECHATPAY_CERT_DIR = ""
    settings.WECHATPAY_GATEWAY = gateway_url
    settings.WECHATPAY_REFUND_NOTIFY_URL = ""
    settings.WECHATPAY_TIMEOUT_SECONDS = 5


@pytest.fixture
def gateway(
    settings: Any, merchant_keys: KeyPair, platform_keys: KeyPair
) -> Iterator[FakeWechatGateway]:
    """Public-key mode: WeChat Pay's public key and its id."""
    fake = FakeWechatGateway(merchant_keys, platform_keys, PUBLIC_KEY_ID)
    configure(settings, fake.url, merchant_keys)
    settings.WECHATPAY_PUBLIC_KEY = platform_keys.public_pem
    settings.WECHATPAY_PUBLIC_KEY_ID = PUBLIC_KEY_ID
    yield fake
    fake.close()


@pytest.fixture
def cert_gateway(
    settings: Any, tmp_path: Path, merchant_keys: KeyPair, platform_keys: KeyPair
) -> Iterator[FakeWechatGateway]:
    """Certificate mode: a platform certificate already in the certificate directory."""
    serial_number = 0x6F2A9C0E5B1D4C2E8F01A2B3C4D5E6F708192A3B
    serial = format(serial_number, "X")
    (tmp_path / f"{serial}.pem").write_text(
        self_signed_certificate(platform_keys, serial_number, "Tenpay.com Root CA test")
    )
    fake = FakeWechatGateway(merchant_keys, platform_keys, serial)
    configure(settings, fake.url, merchant_keys)
    settings.WECHATPAY_CERT_DIR = str(tmp_path)
    yield fake
    fake.close()


def request(**changes: Any) -> base.PaymentRequest:
    fields: dict[str, Any] = {
        "reference": REF,
        "amount": 3000,
        "currency": "CNY",
        "method": base.WECHAT_PAY,
        "description": "月套餐 20GB",
        "return_url": "https://shop.example/return/pay_7Hk2mQ9xLr",
        "notify_url": "https://shop.example/payments/webhooks/wechatpay",
        "client_ip": "203.0.113.7",
        "expires_at": datetime(2026, 11, 26, 8, 30, tzinfo=UTC),
    }
    fields.update(changes)
    return base.PaymentRequest(**fields)


# --- creating payments ----------------------------------------------------------------------


def test_it_places_a_native_order_and_shows_its_qr_code(gateway: FakeWechatGateway) -> None:
    gateway.routes[("POST", "/v3/pay/transactions/native")] = (
        200,
        {"code_url": "weixin://wxpay/bizpayurl?pr=p4lpSuKzz"},
    )
    created = WechatPayProvider().create_payment(request())

    assert created == base.CreatedPayment(
        None, base.NextAction("qr", qr_data="weixin://wxpay/bizpayurl?pr=p4lpSuKzz")
    )
    [sent] = gateway.requests  # the gateway verified our merchant signature
    assert sent["json"] == {
        "appid": APPID,
        "mchid": MCHID,
        "description": "月套餐 20GB",
        "out_trade_no": REF,
        "notify_url": "https://shop.example/payments/webhooks/wechatpay",
        "amount": {"total": 3000, "currency": "CNY"},
        "time_expire": "2026-11-26T16:30:00+08:00",
        "scene_info": {"payer_client_ip": "203.0.113.7"},
    }


def test_it_works_with_platform_certificates_without_downloading_them(
    cert_gateway: FakeWechatGateway,
) -> None:
    cert_gateway.routes[("POST", "/v3/pay/transactions/native")] = (
        200,
        {"code_url": "weixin://wxpay/bizpayurl?pr=cert"},
    )
    created = WechatPayProvider().create_payment(request())
    assert created.next_action.qr_data == "weixin://wxpay/bizpayurl?pr=cert"
    assert [r["path"] for r in cert_gateway.requests] == ["/v3/pay/transactions/native"]


def test_it_refuses_an_answer_not_signed_by_wechat_pay(gateway: FakeWechatGateway) -> None:
    gateway.platform = key_pair("wechat-forger")
    gateway.routes[("POST", "/v3/pay/transactions/native")] = (
        200,
        {"code_url": "weixin://wxpay/bizpayurl?pr=forged"},
    )
    with pytest.raises(base.ProviderError) as caught:
        WechatPayProvider().create_payment(request())
    assert (caught.value.code, caught.value.retryable) == ("invalid_provider_response", True)


@pytest.mark.parametrize(
    ("status", "code", "expected", "retryable"),
    [
        (500, "SYSTEM_ERROR", "provider_unavailable", True),
        (429, "FREQUENCY_LIMITED", "provider_unavailable", True),
        (400, "PARAM_ERROR", "provider_rejected", False),
        (403, "ORDERPAID", "provider_misconfigured", False),
    ],
)
def test_it_maps_refusals(
    gateway: FakeWechatGateway, status: int, code: str, expected: str, retryable: bool
) -> None:
    gateway.routes[("POST", "/v3/pay/transactions/native")] = (
        status,
        {"code": code, "message": "…"},
    )
    with pytest.raises(base.ProviderError) as caught:
        WechatPayProvider().create_payment(request())
    assert (caught.value.code, caught.value.retryable) == (expected, retryable)


def test_it_is_refused_when_our_merchant_key_is_wrong(
    settings: Any, gateway: FakeWechatGateway
) -> None:
    settings.WECHATPAY_PRIVATE_KEY = key_pair("wechat-other-merchant").private_pem
    gateway.routes[("POST", "/v3/pay/transactions/native")] = (200, {"code_url": "weixin://x"})
    with pytest.raises(base.ProviderError) as caught:
        WechatPayProvider().create_payment(request())
    assert (caught.value.code, caught.value.retryable) == ("provider_misconfigured", False)
    assert gateway.requests == []


def test_it_reports_an_unreachable_gateway_as_retryable(
    settings: Any, gateway: FakeWechatGateway
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings.WECHATPAY_GATEWAY = f"http://127.0.0.1:{port}"
    with pytest.raises(base.ProviderError) as caught:
        WechatPayProvider().create_payment(request())
    assert (caught.value.code, caught.value.retryable) == ("provider_unavailable", True)


def test_it_refuses_other_currencies_and_long_references(gateway: FakeWechatGateway) -> None:
    provider = WechatPayProvider()
    with pytest.raises(base.ProviderError) as caught:
        provider.create_payment(request(currency="HKD"))
    assert caught.value.code == "currency_not_supported"
    with pytest.raises(base.ProviderError) as caught:
        provider.create_payment(request(reference="p" * 33))
    assert caught.value.code == "invalid_reference"
    assert gateway.requests == []


# --- notifications --------------------------------------------------------------------------


def transaction(**changes: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "mchid": MCHID,
        "appid": APPID,
        "out_trade_no": REF,
        "transaction_id": "4200002026112612345678901234",
        "trade_type": "NATIVE",
        "trade_state": "SUCCESS",
        "trade_state_desc": "支付成功",
        "bank_type": "OTHERS",
        "attach": "",
        "success_time": "2026-11-26T16:01:02+08:00",
        "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
        "amount": {"total": 3000, "payer_total": 3000, "currency": "CNY", "payer_currency": "CNY"},
    }
    resource.update(changes)
    return resource


def notification(
    resource: dict[str, Any],
    event_type: str = "TRANSACTION.SUCCESS",
    key: str = APIV3_KEY,
    event_id: str = "EV-2026112616010200001",
) -> bytes:
    original = "refund" if event_type.startswith("REFUND") else "transaction"
    document = {
        "id": event_id,
        "create_time": "2026-11-26T16:01:03+08:00",
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": "支付成功",
        "resource": {**wechat_encrypt(resource, key, original), "original_type": original},
    }
    return json.dumps(document, ensure_ascii=False).encode()


def test_it_accepts_a_notification_signed_and_encrypted_by_wechat_pay(
    gateway: FakeWechatGateway, platform_keys: KeyPair
) -> None:
    body = notification(transaction())
    headers = wechat_signature_headers(body, platform_keys, PUBLIC_KEY_ID)
    [event] = WechatPayProvider().parse_notification(headers, body)

    assert event.event_id == "EV-2026112616010200001"
    assert event.kind == base.SUCCEEDED
    assert event.reference == REF
    assert event.provider_ref == "4200002026112612345678901234"
    assert (event.amount, event.currency, event.merchant) == (3000, "CNY", MCHID)
    assert event.occurred_at == datetime(2026, 11, 26, 8, 1, 2, tzinfo=UTC)
    assert gateway.requests == []  # verified offline, with the configured public key


def test_it_accepts_headers_in_any_case(gateway: FakeWechatGateway, platform_keys: KeyPair) -> None:
    body = notification(transaction())
    headers = wechat_signature_headers(body, platform_keys, PUBLIC_KEY_ID)
    lower = {k.lower(): v for k, v in headers.items()}
    meta = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}
    provider = WechatPayProvider()
    assert provider.parse_notification(lower, body)[0].kind == base.SUCCEEDED
    assert provider.parse_notification(meta, body)[0].kind == base.SUCCEEDED


def test_it_verifies_notifications_with_a_platform_certificate(
    cert_gateway: FakeWechatGateway, platform_keys: KeyPair
) -> None:
    body = notification(transaction())
    headers = wechat_signature_headers(body, platform_keys, cert_gateway.serial)
    assert WechatPayProvider().parse_notification(headers, body)[0].kind == base.SUCCEEDED
    forged = wechat_signature_headers(body, key_pair("wechat-forger"), cert_gateway.serial)
    with pytest.raises(base.InvalidNotification):
        WechatPayProvider().parse_notification(forged, body)
    assert cert_gateway.requests == []


def encrypted_certificate_list(*certificates: tuple[str, str]) -> dict[str, Any]:
    """GET /v3/certificates: each certificate encrypted with the APIv3 key."""
    data = []
    for serial, pem in certificates:
        nonce = secrets.token_hex(6)
        ciphertext = AESGCM(APIV3_KEY.encode()).encrypt(
            nonce.encode(), pem.encode(), b"certificate"
        )
        data.append(
            {
                "serial_no": serial,
                "effective_time": "2026-01-01T00:00:00+08:00",
                "expire_time": "2031-01-01T00:00:00+08:00",
                "encrypt_certificate": {
                    "algorithm": "AEAD_AES_256_GCM",
                    "nonce": nonce,
                    "associated_data": "certificate",
                    "ciphertext": base64.b64encode(ciphertext).decode(),
                },
            }
        )
    return {"data": data}


def test_it_follows_a_platform_certificate_rotation(
    settings: Any, cert_gateway: FakeWechatGateway, platform_keys: KeyPair
) -> None:
    old_serial = cert_gateway.serial
    new_keys = key_pair("wechat-platform-2027")
    new_number = 0x7A11C0FFEE2027
    new_serial = format(new_number, "X")
    new_pem = self_signed_certificate(new_keys, new_number, "Tenpay.com Root CA test 2027")
    provider = WechatPayProvider()
    body = notification(transaction())

    # A serial WeChat Pay does not know (a forger's), while its certificate list cannot be
    # fetched: refused, and the certificates already loaded stay loaded.
    cert_gateway.routes[("GET", "/v3/certificates")] = (500, {"code": "SYSTEM_ERROR"})
    bogus = wechat_signature_headers(body, key_pair("wechat-forger"), "ABCDEF0123")
    with pytest.raises(base.InvalidNotification):
        provider.parse_notification(bogus, body)
    assert [r["path"] for r in cert_gateway.requests] == ["/v3/certificates"]
    current = wechat_signature_headers(body, platform_keys, old_serial)
    assert provider.parse_notification(current, body)[0].kind == base.SUCCEEDED
    assert len(cert_gateway.requests) == 1

    old_pem = Path(settings.WECHATPAY_CERT_DIR, f"{old_serial}.pem").read_text()
    cert_gateway.routes[("GET", "/v3/certificates")] = (
        200,
        encrypted_certificate_list((old_serial, old_pem), (new_serial, new_pem)),
    )
    # The new certificate: fetched once, kept in the directory, then used offline.
    rotated = wechat_signature_headers(body, new_keys, new_serial)
    assert provider.parse_notification(rotated, body)[0].kind == base.SUCCEEDED
    assert Path(settings.WECHATPAY_CERT_DIR, f"{new_serial}.pem").read_text() == new_pem
    fetched = len(cert_gateway.requests)
    assert WechatPayProvider().parse_notification(rotated, body)[0].kind == base.SUCCEEDED
    assert len(cert_gateway.requests) == fetched


def test_it_rejects_a_tampered_body(gateway: FakeWechatGateway, platform_keys: KeyPair) -> None:
    body = notification(transaction())
    headers = wechat_signature_headers(body, platform_keys, PUBLIC_KEY_ID)
    tampered = body.replace(b"EV-2026112616010200001", b"EV-2026112616010200002")
    assert tampered != body
    with pytest.raises(base.InvalidNotification):
        WechatPayProvider().parse_notification(headers, tampered)


def test_it_rejects_a_notification_signed_with_another_key(gateway: FakeWechatGateway) -> None:
    body = notification(transaction())
    headers = wechat_signature_headers(body, key_pair("wechat-forger"), PUBLIC_KEY_ID)
    with pytest.raises(base.InvalidNotification):
        WechatPayProvider().parse_notification(headers, body)


def test_it_rejects_an_unknown_key_id_without_going_online(
    gateway: FakeWechatGateway, platform_keys: KeyPair
) -> None:
    body = notification(transaction())
    headers = wechat_signature_headers(body, platform_keys, "PUB_KEY_ID_SOMEONE_ELSE")
    with pytest.raises(base.InvalidNotification):
        WechatPayProvider().parse_notification(headers, body)
    assert gateway.requests == []


def test_it_rejects_stale_and_future_timestamps(
    gateway: FakeWechatGateway, platform_keys: KeyPair
) -> None:
    body = notification(transaction())
    provider = WechatPayProvider()
    fresh = wechat_signature_headers(
        body, platform_keys, PUBLIC_KEY_ID, timestamp=int(time.time()) - 290
    )
    assert provider.parse_notification(fresh, body)
    for skew in (-301, 3600):
        headers = wechat_signature_headers(
            body, platform_keys, PUBLIC_KEY_ID, timestamp=int(time.time()) + skew
        )
        with pytest.raises(base.InvalidNotification, match="window"):
            provider.parse_notification(headers, body)


def test_it_rejects_a_resource_encrypted_with_another_key(
    gateway: FakeWechatGateway, platform_keys: KeyPair
) -> None:
    body = notification(transaction(), key=apiv3_key())
    headers = wechat_signature_headers(body, platform_keys, PUBLIC_KEY_ID)
    with pytest.raises(base.InvalidNotification):
        WechatPayProvider().parse_notification(headers, body)


@pytest.mark.parametrize("field", ["mchid", "appid"])
def test_it_rejects_a_notification_for_another_merchant(
    gateway: FakeWechatGateway, platform_keys: KeyPair, field: str
) -> None:
    body = notification(transaction(**{field: "1900000001"}))
    headers = wechat_signature_headers(body, platform_keys, PUBLIC_KEY_ID)
    with pytest.raises(base.InvalidNotification, match=field):
        WechatPayProvider().parse_notification(headers, body)


@pytest.mark.parametrize(
    "drop", ["Wechatpay-Signature", "Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Serial"]
)
def test_it_rejects_missing_headers(
    gateway: FakeWechatGateway, platform_keys: KeyPair, drop: str
) -> None:
    body = notification(transaction())
    headers = wechat_signature_headers(body, platform_keys, PUBLIC_KEY_ID)
    del headers[drop]
    with pytest.raises(base.InvalidNotification):
        WechatPayProvider().parse_notification(headers, body)


def test_it_rejects_signed_garbage(gateway: FakeWechatGateway, platform_keys: KeyPair) -> None:
    for body in (b"not json", b"{}", b'{"id": "EV-1", "resource_type": "plain"}', b"\xff"):
        headers = wechat_signature_headers(body, platform_keys, PUBLIC_KEY_ID)
        with pytest.raises(base.InvalidNotification):
            WechatPayProvider().parse_notification(headers, body)


@pytest.mark.parametrize(
    ("event_type", "resource", "kind", "amount"),
    [
        ("TRANSACTION.SUCCESS", transaction(trade_state="PAYERROR"), base.FAILED, 3000),
        ("TRANSACTION.SUCCESS", transaction(trade_state="USERPAYING"), base.PENDING, 3000),
        (
            "REFUND.SUCCESS",
            {
                "mchid": MCHID,
                "out_trade_no": REF,
                "transaction_id": "4200002026112612345678901234",
                "out_refund_no": "rf_7Hk2mQ9xLr",
                "refund_id": "50000000382019052709732678859",
                "refund_status": "SUCCESS",
                "success_time": "2026-11-26T16:20:00+08:00",
                "user_received_account": "支付用户零钱",
                "amount": {
                    "total": 3000,
                    "refund": 3000,
                    "payer_total": 3000,
                    "payer_refund": 3000,
                },
            },
            base.REFUNDED,
            3000,
        ),
        (
            "REFUND.ABNORMAL",
            {
                "mchid": MCHID,
                "out_trade_no": REF,
                "out_refund_no": "rf_7Hk2mQ9xLr",
                "refund_status": "ABNORMAL",
                "amount": {"total": 3000, "refund": 3000},
            },
            base.REFUND_FAILED,
            3000,
        ),
    ],
)
def test_it_maps_events(
    gateway: FakeWechatGateway,
    platform_keys: KeyPair,
    event_type: str,
    resource: dict[str, Any],
    kind: str,
    amount: int,
) -> None:
    body = notification(resource, event_type=event_type)
    headers = wechat_signature_headers(body, platform_keys, PUBLIC_KEY_ID)
    [event] = WechatPayProvider().parse_notification(headers, body)
    assert (event.kind, event.amount, event.reference) == (kind, amount, REF)
    assert event.refund_reference == resource.get("out_refund_no")
    assert event.provider_refund_ref == resource.get("refund_id")


def test_it_answers_as_wechat_pay_expects(gateway: FakeWechatGateway) -> None:
    provider = WechatPayProvider()
    assert provider.ack(True) == base.Ack(
        200, "application/json", b'{"code":"SUCCESS","message":"OK"}'
    )
    failed = provider.ack(False)
    assert failed.status == 400
    assert json.loads(failed.body)["code"] == "FAIL"


# --- queries and refunds --------------------------------------------------------------------


def order(state: str) -> dict[str, Any]:
    return {
        **transaction(trade_state=state),
        "trade_state_desc": "…",
    }


@pytest.mark.parametrize(
    ("state", "status", "failure"),
    [
        ("SUCCESS", "succeeded", None),
        ("NOTPAY", "pending", None),
        ("CLOSED", "failed", "closed"),
        ("REFUND", "succeeded", None),
    ],
)
def test_it_queries_an_order(
    gateway: FakeWechatGateway, state: str, status: str, failure: str | None
) -> None:
    gateway.routes[("GET", f"/v3/pay/transactions/out-trade-no/{REF}")] = (200, order(state))
    result = WechatPayProvider().query(REF, None)

    assert result == base.ProviderPaymentStatus(
        status, "4200002026112612345678901234", 3000, "CNY", MCHID, failure
    )
    assert gateway.requests[0]["path"] == f"/v3/pay/transactions/out-trade-no/{REF}?mchid={MCHID}"


def test_it_reports_an_order_wechat_pay_never_saw_as_failed(gateway: FakeWechatGateway) -> None:
    gateway.routes[("GET", f"/v3/pay/transactions/out-trade-no/{REF}")] = (
        404,
        {"code": "ORDER_NOT_EXIST", "message": "订单不存在"},
    )
    result = WechatPayProvider().query(REF, None)
    assert (result.status, result.failure_code) == ("failed", "order_not_exist")


def test_it_refunds_with_the_refund_reference_as_out_refund_no(
    settings: Any, gateway: FakeWechatGateway
) -> None:
    settings.WECHATPAY_REFUND_NOTIFY_URL = "https://shop.example/payments/webhooks/wechatpay"
    gateway.routes[("POST", "/v3/refund/domestic/refunds")] = lambda sent: (
        200,
        {
            "refund_id": "50000000382019052709732678859",
            "out_refund_no": sent["json"]["out_refund_no"],
            "transaction_id": "4200002026112612345678901234",
            "out_trade_no": REF,
            "channel": "ORIGINAL",
            "status": "PROCESSING",
            "amount": {"total": 3000, "refund": 3000, "currency": "CNY"},
        },
    )
    result = WechatPayProvider().refund(REF, None, 3000, "CNY", "rf_7Hk2mQ9xLr", 3000)

    assert result == base.RefundResult("pending", "50000000382019052709732678859")
    assert gateway.requests[0]["json"] == {
        "notify_url": "https://shop.example/payments/webhooks/wechatpay",
        "out_refund_no": "rf_7Hk2mQ9xLr",
        "amount": {"refund": 3000, "total": 3000, "currency": "CNY"},
        "out_trade_no": REF,
    }


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        ((200, {"refund_id": "5000", "status": "SUCCESS"}), "succeeded"),
        ((200, {"refund_id": "5000", "status": "ABNORMAL"}), "failed"),
    ],
)
def test_it_maps_refund_states(
    gateway: FakeWechatGateway, answer: tuple[int, dict[str, Any]], outcome: str
) -> None:
    gateway.routes[("POST", "/v3/refund/domestic/refunds")] = answer
    result = WechatPayProvider().refund(REF, None, 3000, "CNY", "rf_7Hk2mQ9xLr", 3000)
    assert result.status == outcome


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [(403, "NOT_ENOUGH", True), (400, "INVALID_REQUEST", False), (500, "SYSTEM_ERROR", True)],
)
def test_it_maps_refund_refusals(
    gateway: FakeWechatGateway, status: int, code: str, retryable: bool
) -> None:
    gateway.routes[("POST", "/v3/refund/domestic/refunds")] = (status, {"code": code})
    with pytest.raises(base.ProviderError) as caught:
        WechatPayProvider().refund(REF, None, 3000, "CNY", "rf_7Hk2mQ9xLr", 3000)
    assert caught.value.retryable is retryable


def test_it_refuses_refunds_above_the_total(gateway: FakeWechatGateway) -> None:
    with pytest.raises(base.ProviderError) as caught:
        WechatPayProvider().refund(REF, None, 3001, "CNY", "rf_7Hk2mQ9xLr", 3000)
    assert caught.value.code == "invalid_refund_amount"
    assert gateway.requests == []


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"WECHATPAY_MCHID": ""}, "SIMTOPUP_WECHATPAY_MCHID"),
        ({"WECHATPAY_APIV3_KEY": "too-short"}, "32 characters"),
        ({"WECHATPAY_PRIVATE_KEY": ""}, "SIMTOPUP_WECHATPAY_PRIVATE_KEY"),
        ({"WECHATPAY_GATEWAY": "ftp://example"}, "SIMTOPUP_WECHATPAY_GATEWAY"),
        ({"WECHATPAY_PUBLIC_KEY_ID": ""}, "SIMTOPUP_WECHATPAY_PUBLIC_KEY_ID"),
        ({"WECHATPAY_PUBLIC_KEY": "", "WECHATPAY_PUBLIC_KEY_ID": ""}, "CERT_DIR"),
        (
            {
                "WECHATPAY_PUBLIC_KEY": "",
                "WECHATPAY_PUBLIC_KEY_ID": "",
                "WECHATPAY_CERT_DIR": "/nonexistent/certs",
            },
            "not a directory",
        ),
    ],
)
def test_it_refuses_to_start_misconfigured(
    settings: Any, gateway: FakeWechatGateway, changes: dict[str, str], message: str
) -> None:
    for name, value in changes.items():
        setattr(settings, name, value)
    with pytest.raises(ImproperlyConfigured, match=message):
        WechatPayProvider()


# --- the flow for where the payer is ----------------------------------------------------------


def test_a_phone_browser_pays_through_h5_on_the_same_phone(gateway: FakeWechatGateway) -> None:
    h5_url = "https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id=wx2016&package=1"
    gateway.routes[("POST", "/v3/pay/transactions/h5")] = (200, {"h5_url": h5_url})
    created = WechatPayProvider().create_payment(request(surface=base.PHONE))

    # A page that opens WeChat on this phone: no QR code for the phone to scan itself.
    assert created == base.CreatedPayment(None, base.NextAction("redirect", url=h5_url))
    [sent] = gateway.requests  # the gateway verified our merchant signature
    assert sent["path"] == "/v3/pay/transactions/h5"
    assert sent["json"]["scene_info"] == {
        "payer_client_ip": "203.0.113.7",
        "h5_info": {"type": "Wap"},
    }
    assert sent["json"]["amount"] == {"total": 3000, "currency": "CNY"}
    assert sent["json"]["out_trade_no"] == REF


def test_h5_needs_the_payers_ip_and_an_https_page(gateway: FakeWechatGateway) -> None:
    with pytest.raises(base.ProviderError) as caught:
        WechatPayProvider().create_payment(request(surface=base.PHONE, client_ip=None))
    assert caught.value.code == "provider_rejected"
    assert gateway.requests == []  # refused before asking WeChat Pay

    gateway.routes[("POST", "/v3/pay/transactions/h5")] = (200, {"h5_url": "http://evil.example/"})
    with pytest.raises(base.ProviderError) as caught:
        WechatPayProvider().create_payment(request(surface=base.PHONE))
    assert caught.value.code == "provider_rejected"


def test_a_desktop_gets_a_native_qr_code(gateway: FakeWechatGateway) -> None:
    gateway.routes[("POST", "/v3/pay/transactions/native")] = (
        200,
        {"code_url": "weixin://wxpay/bizpayurl?pr=Qx7f2Lk"},
    )
    created = WechatPayProvider().create_payment(request(surface=base.DESKTOP))
    assert created.next_action == base.NextAction(
        "qr", qr_data="weixin://wxpay/bizpayurl?pr=Qx7f2Lk"
    )
    assert [r["path"] for r in gateway.requests] == ["/v3/pay/transactions/native"]


def test_inside_wechat_it_places_a_jsapi_order_and_signs_the_bridge_parameters(
    gateway: FakeWechatGateway, merchant_keys: KeyPair
) -> None:
    prepay_id = "wx201410272009395522657a690389285100"
    gateway.routes[("POST", "/v3/pay/transactions/jsapi")] = (200, {"prepay_id": prepay_id})
    provider = WechatPayProvider()
    created = provider.create_payment(
        request(surface=base.WECHAT, payer_openid="oUpF8uMuAJO_M2pxb1Q9zNjWeS6o")
    )

    assert created == base.CreatedPayment(prepay_id, base.NextAction("jsapi"))
    [sent] = gateway.requests
    assert sent["path"] == "/v3/pay/transactions/jsapi"
    assert sent["json"]["payer"] == {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}
    assert sent["json"]["appid"] == APPID

    params = provider.jsapi_parameters(prepay_id)
    assert params["appId"] == APPID
    assert params["package"] == f"prepay_id={prepay_id}"
    assert params["signType"] == "RSA"
    assert abs(int(params["timeStamp"]) - time.time()) < 60
    assert len(params["nonceStr"]) == 32
    # What WeChat checks: our merchant key over appId, timeStamp, nonceStr, package, one a line.
    message = f"{APPID}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n"
    assert merchant_keys.verify_sha256(message.encode(), params["paySign"])
    assert not merchant_keys.verify_sha256(b"tampered\n", params["paySign"])


def test_inside_wechat_without_the_payers_openid_it_refuses_and_never_shows_a_qr_code(
    gateway: FakeWechatGateway,
) -> None:
    with pytest.raises(base.ProviderError) as caught:
        WechatPayProvider().create_payment(request(surface=base.WECHAT))
    assert caught.value.code == "payer_openid_required"
    assert gateway.requests == []
