"""WeChat Pay direct (微信支付 APIv3) through ``wechatpayv3``.

The flow follows where the payer is (``PaymentRequest.surface``): on a desktop, or when the
payment does not say, Native (``/v3/pay/transactions/native``: a QR code the phone scans); in
a phone's browser, H5 (``/v3/pay/transactions/h5``: a page that opens WeChat on the same
phone, ``h5_url``; it needs the payer's IP); in WeChat's own browser, JSAPI
(``/v3/pay/transactions/jsapi``: a prepay id, then WeixinJSBridge's ``getBrandWCPayRequest``
with :meth:`WechatPayProvider.jsapi_parameters`). JSAPI needs the payer's openid for our
app id (``PaymentRequest.payer_openid``, from WeChat's OAuth ``snsapi_base``); a payment
inside WeChat without one is refused (``payer_openid_required``) — never a QR code on the
screen of the phone that would have to scan it. H5 and JSAPI must be enabled for the
merchant at WeChat Pay (H5 with the site's domain, JSAPI with the payment directory).

Settings (environment variables, ``SIMTOPUP_`` prefix, ``*_FILE`` variants for keys):

- ``WECHATPAY_MCHID``, ``WECHATPAY_APPID`` (required): the merchant and the app (公众号 / 应用)
  the payments are made for; notifications for another merchant or app are refused.
- ``WECHATPAY_APIV3_KEY`` (required): the 32-character APIv3 key that encrypts notifications.
- ``WECHATPAY_PRIVATE_KEY`` (required, ``apiclient_key.pem``) and ``WECHATPAY_CERT_SERIAL_NO``
  (required): the merchant API key that signs our requests, and its certificate's serial.
- How WeChat Pay's own signatures are verified — one of:
  ``WECHATPAY_PUBLIC_KEY`` (``pub_key.pem``) with ``WECHATPAY_PUBLIC_KEY_ID``
  (``PUB_KEY_ID_…``): the WeChat Pay public key, the current mode for merchants; or
  ``WECHATPAY_CERT_DIR``: a directory of platform certificates (``<serial>.pem``). In that mode
  the SDK downloads the certificates into the directory when it holds none valid (from
  WeChat Pay's default gateway), and fetches new ones when a notification names a serial it
  does not know yet (certificate rotation).
- ``WECHATPAY_GATEWAY`` (default ``https://api.mch.weixin.qq.com``),
  ``WECHATPAY_REFUND_NOTIFY_URL`` (optional: where refund results are posted; refunds are
  settled by the refund call's answer and queries without it), ``WECHATPAY_TIMEOUT_SECONDS``
  (15).

The statement of a day (:meth:`WechatPayProvider.statement`) is WeChat Pay's trade bill of
that Beijing day (``GET /v3/bill/tradebill``, ``bill_type=ALL``): a download address and the
SHA-1 of the bill, then the bill itself (gzip), a CSV whose every cell starts with a backtick,
followed by a summary. WeChat Pay makes it the next morning (from 10:00 Beijing time).

A notification is verified (RSA-SHA256 over ``timestamp\\nnonce\\nbody\\n`` with the key named by
``Wechatpay-Serial``), must be signed within 300 s of now, and its ``resource`` is decrypted
(AEAD_AES_256_GCM with the APIv3 key). API answers are verified by the SDK the same way.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext
from wechatpayv3 import WeChatPay, WeChatPayType  # type: ignore[import-untyped]

from simtopup.payments.providers import base
from simtopup.payments.providers._common import (
    BEIJING,
    check_payment_request,
    check_reference,
    check_refund,
    gateway_url,
    header,
    malformed_statement_error,
    private_key_pem,
    public_key_pem,
    require,
    yuan_to_fen,
)

logger = logging.getLogger(__name__)

CURRENCY = "CNY"  # Native payments of a mainland merchant are in fen
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
# out_trade_no: 6–32 of [0-9A-Za-z_-|*]; out_refund_no: 1–64 of [0-9A-Za-z_-|*@].
_TRADE_NO = re.compile(r"[0-9A-Za-z_-]{6,32}")
_REFUND_NO = re.compile(r"[0-9A-Za-z_-]{1,64}")
_SERIAL = re.compile(r"[0-9A-Fa-f]{1,64}")
_TRADE_STATES: dict[str, str] = {
    "SUCCESS": "succeeded",
    "REFUND": "succeeded",  # paid, then (partly) refunded
    "NOTPAY": "pending",
    "USERPAYING": "pending",
    "CLOSED": "failed",
    "REVOKED": "failed",
    "PAYERROR": "failed",
}
# Error codes of WeChat Pay that mean "later": its outage, its rate limit, our balance.
_RETRYABLE = {"SYSTEM_ERROR", "FREQUENCY_LIMITED", "BANKERROR", "NOT_ENOUGH"}


# A refund's 退款状态 in the bill, in our words.
_REFUND_STATES = {"SUCCESS": "succeeded", "PROCESSING": "pending"}


def _cells(line: str) -> list[str]:
    """One row of the bill: every cell starts with a backtick (so that a spreadsheet keeps
    long numbers as text); cells are split on ``,` `` so that a comma inside a product name
    does not shift the columns."""
    text = line.strip()
    if text.startswith("`"):
        return [cell.strip() for cell in text[1:].split(",`")]
    return [cell.strip() for cell in text.split(",")]


def parse_trade_bill(text: str) -> list[base.StatementLine]:
    """The lines of WeChat Pay's ALL trade bill: the header, one row per payment (交易状态
    SUCCESS: 订单金额 is what was asked for, 应结订单金额 when the bill has no 订单金额) and per
    refund (REFUND: 商户退款单号 is our out_refund_no, 申请退款金额 what we asked back), then the
    summary (总交易单数 …), whose count of rows must agree."""
    lines = [line for line in text.lstrip("\ufeff").splitlines() if line.strip()]
    if not lines:
        return []
    header = _cells(lines[0])
    column = {name: index for index, name in enumerate(header)}
    for needed in ("交易时间", "微信订单号", "商户订单号", "交易状态", "应结订单金额"):
        if needed not in column:
            raise malformed_statement_error(f"column {needed} is missing")
    rows: list[list[str]] = []
    summary: list[str] = []
    for index, line in enumerate(lines[1:], start=1):
        if line.lstrip("`").startswith("总交易单数"):
            summary = _cells(lines[index + 1]) if index + 1 < len(lines) else []
            break
        rows.append(_cells(line))
    if summary and summary[0].isdigit() and int(summary[0]) != len(rows):
        raise malformed_statement_error(f"{len(rows)} rows, the summary says {summary[0]}")

    def cell(row: list[str], name: str) -> str:
        index = column.get(name)
        return row[index] if index is not None and index < len(row) else ""

    statement: list[base.StatementLine] = []
    for row in rows:
        if len(row) < len(header):
            raise malformed_statement_error(f"a short row ({len(row)} cells)")
        try:
            at = datetime.strptime(cell(row, "交易时间"), "%Y-%m-%d %H:%M:%S").replace(
                tzinfo=BEIJING
            )
        except ValueError:
            raise malformed_statement_error(f"time {cell(row, '交易时间')!r}") from None
        state = cell(row, "交易状态")
        currency = (cell(row, "货币种类") or CURRENCY).upper()
        if state == "SUCCESS":
            statement.append(
                base.StatementLine(
                    kind=base.STATEMENT_PAYMENT,
                    reference=cell(row, "商户订单号"),
                    provider_ref=cell(row, "微信订单号"),
                    amount=yuan_to_fen(cell(row, "订单金额") or cell(row, "应结订单金额")),
                    currency=currency,
                    at=at,
                )
            )
        elif state == "REFUND":
            refund_state = cell(row, "退款状态")
            statement.append(
                base.StatementLine(
                    kind=base.STATEMENT_REFUND,
                    reference=cell(row, "商户退款单号"),
                    provider_ref=cell(row, "微信退款单号"),
                    amount=yuan_to_fen(cell(row, "申请退款金额") or cell(row, "退款金额")),
                    currency=currency,
                    state=_REFUND_STATES.get(refund_state, "failed"),
                    at=at,
                    payment_reference=cell(row, "商户订单号"),
                )
            )
    return statement


@dataclass(frozen=True)
class _Config:
    mchid: str
    appid: str
    apiv3_key: str
    private_key: str
    cert_serial_no: str
    public_key: str | None
    public_key_id: str | None
    cert_dir: str | None
    gateway: str
    timeout: int


@lru_cache(maxsize=8)
def _sdk(config: _Config) -> WeChatPay:
    """One SDK client per configuration: in certificate mode it keeps the platform
    certificates it loaded (or downloaded) between calls."""
    client = WeChatPay(
        wechatpay_type=WeChatPayType.NATIVE,
        mchid=config.mchid,
        private_key=config.private_key,
        cert_serial_no=config.cert_serial_no,
        appid=config.appid,
        apiv3_key=config.apiv3_key,
        cert_dir=config.cert_dir,
        logger=logger if settings.DEBUG else None,
        timeout=(min(5, config.timeout), config.timeout),
        public_key=config.public_key,
        public_key_id=config.public_key_id,
    )
    if config.gateway:
        client._core._gate_way = config.gateway.rstrip("/")
    return client


def _utf8_prefix(text: str, limit: int) -> str:
    """At most ``limit`` bytes of UTF-8, cut between characters."""
    return text.encode()[:limit].decode(errors="ignore")


def _openid_error() -> base.ProviderError:
    return base.ProviderError(
        "payer_openid_required", gettext("WeChat Pay cannot be used on this page.")
    )


class WechatPayProvider(base.Provider):
    name = "wechatpay"
    methods = frozenset({base.WECHAT_PAY})
    supports_partial_refund = True
    statement_zone = BEIJING
    statement_ready_after = timedelta(hours=11)

    def __init__(self) -> None:
        apiv3_key = require("WECHATPAY_APIV3_KEY")
        if len(apiv3_key.encode()) != 32:
            raise ImproperlyConfigured("SIMTOPUP_WECHATPAY_APIV3_KEY must be 32 characters long.")
        public_key = public_key_id = cert_dir = None
        if settings.WECHATPAY_PUBLIC_KEY.strip() or settings.WECHATPAY_PUBLIC_KEY_ID.strip():
            public_key = public_key_pem("WECHATPAY_PUBLIC_KEY")
            public_key_id = require("WECHATPAY_PUBLIC_KEY_ID")
        elif settings.WECHATPAY_CERT_DIR.strip():
            cert_dir = settings.WECHATPAY_CERT_DIR.strip()
            if not Path(cert_dir).is_dir():
                raise ImproperlyConfigured(
                    f"SIMTOPUP_WECHATPAY_CERT_DIR {cert_dir!r} is not a directory."
                )
        else:
            raise ImproperlyConfigured(
                "WeChat Pay needs its public key (SIMTOPUP_WECHATPAY_PUBLIC_KEY and "
                "SIMTOPUP_WECHATPAY_PUBLIC_KEY_ID) or platform certificates "
                "(SIMTOPUP_WECHATPAY_CERT_DIR)."
            )
        self._config = _Config(
            mchid=require("WECHATPAY_MCHID"),
            appid=require("WECHATPAY_APPID"),
            apiv3_key=apiv3_key,
            private_key=private_key_pem("WECHATPAY_PRIVATE_KEY"),
            cert_serial_no=require("WECHATPAY_CERT_SERIAL_NO"),
            public_key=public_key,
            public_key_id=public_key_id,
            cert_dir=cert_dir,
            gateway=gateway_url("WECHATPAY_GATEWAY"),
            timeout=settings.WECHATPAY_TIMEOUT_SECONDS,
        )

    @property
    def merchant(self) -> str | None:
        return self._config.mchid

    def _client(self, *, fresh: bool = False) -> WeChatPay:
        try:
            return _sdk.__wrapped__(self._config) if fresh else _sdk(self._config)
        except requests.RequestException as exc:
            logger.warning("wechatpay: platform certificates could not be downloaded: %s", exc)
            raise base.unavailable_error() from exc
        except Exception as exc:
            logger.error("wechatpay: the SDK refused the configuration: %s", exc)
            raise base.misconfigured_error() from exc

    def _call(self, operation: Callable[..., tuple[int, Any]], **kwargs: Any) -> tuple[int, Any]:
        """Run one SDK request: the answer's JSON on 2xx, ``(status, error)`` otherwise;
        transport failures and unverifiable answers as :class:`ProviderError`."""
        try:
            status, text = operation(**kwargs)
        except requests.RequestException as exc:
            logger.warning("wechatpay: gateway unreachable: %s", exc)
            raise base.unavailable_error() from exc
        except Exception as exc:
            if "verify the signature" in str(exc):
                logger.error("wechatpay: an answer does not carry WeChat Pay's signature")
                raise base.unsigned_answer_error() from exc
            logger.error("wechatpay: %s", exc)
            raise base.refused_error() from exc
        try:
            document = json.loads(text) if text else {}
        except (ValueError, TypeError):
            document = {}
        if not isinstance(document, dict):
            document = {}
        return status, document

    @staticmethod
    def _refusal(status: int, answer: Mapping[str, Any]) -> base.ProviderError:
        code = str(answer.get("code", ""))
        logger.warning("wechatpay: refused: HTTP %s %s (%s)", status, code, answer.get("message"))
        if status >= 500 or status == 429 or code in _RETRYABLE:
            return base.unavailable_error()
        if status in (401, 403) or code in ("SIGN_ERROR", "NO_AUTH", "APPID_MCHID_NOT_MATCH"):
            return base.misconfigured_error()
        return base.refused_error()

    # --- payments -------------------------------------------------------------------------

    def create_payment(self, request: base.PaymentRequest) -> base.CreatedPayment:
        check_payment_request(request, self.methods, yuan_only=True)
        check_reference(request.reference, _TRADE_NO)
        kwargs: dict[str, Any] = {
            "description": _utf8_prefix(request.description, 127),
            "out_trade_no": request.reference,
            "amount": {"total": request.amount, "currency": CURRENCY},
            "notify_url": request.notify_url,
        }
        if request.expires_at is not None:
            kwargs["time_expire"] = request.expires_at.astimezone(BEIJING).isoformat(
                timespec="seconds"
            )
        if request.client_ip:
            kwargs["scene_info"] = {"payer_client_ip": request.client_ip}
        if request.surface == base.WECHAT:
            if not request.payer_openid:
                raise _openid_error()
            kwargs["payer"] = {"openid": request.payer_openid}
            kwargs["pay_type"] = WeChatPayType.JSAPI
        elif request.surface == base.PHONE:
            if not request.client_ip:  # H5 requires it (WeChat Pay checks it is the payer's)
                raise base.refused_error()
            kwargs["scene_info"] = {
                "payer_client_ip": request.client_ip,
                "h5_info": {"type": "Wap"},
            }
            kwargs["pay_type"] = WeChatPayType.H5
        else:
            kwargs["pay_type"] = WeChatPayType.NATIVE
        status, answer = self._call(self._client().pay, **kwargs)
        if not 200 <= status < 300:
            raise self._refusal(status, answer)
        if kwargs["pay_type"] == WeChatPayType.JSAPI:
            prepay_id = answer.get("prepay_id")
            if not prepay_id:
                logger.error("wechatpay: a JSAPI order without prepay_id")
                raise base.refused_error()
            return base.CreatedPayment(str(prepay_id), base.NextAction("jsapi"))
        if kwargs["pay_type"] == WeChatPayType.H5:
            h5_url = answer.get("h5_url")
            if not h5_url or not str(h5_url).startswith("https://"):
                logger.error("wechatpay: an H5 order without an https h5_url")
                raise base.refused_error()
            return base.CreatedPayment(None, base.NextAction("redirect", url=str(h5_url)))
        code_url = answer.get("code_url")
        if not code_url:
            logger.error("wechatpay: a Native order without code_url")
            raise base.refused_error()
        return base.CreatedPayment(None, base.NextAction("qr", qr_data=str(code_url)))

    def jsapi_parameters(self, prepay_id: str) -> dict[str, str]:
        """What WeChat's browser takes to open its payment sheet for a JSAPI order
        (``WeixinJSBridge.invoke("getBrandWCPayRequest", …)``): signed now with our merchant
        key over appId, timeStamp, nonceStr and package, one per line."""
        timestamp = str(int(time.time()))
        nonce = secrets.token_hex(16)
        package = f"prepay_id={prepay_id}"
        signature = self._client().sign([self._config.appid, timestamp, nonce, package])
        return {
            "appId": self._config.appid,
            "timeStamp": timestamp,
            "nonceStr": nonce,
            "package": package,
            "signType": "RSA",
            "paySign": signature,
        }

    # --- notifications --------------------------------------------------------------------

    def parse_notification(
        self, headers: Mapping[str, str], body: bytes
    ) -> list[base.ProviderEvent]:
        names = ("Signature", "Timestamp", "Nonce", "Serial", "Signature-Type")
        given = {f"Wechatpay-{n}": header(headers, f"Wechatpay-{n}").strip() for n in names}
        if not all(given[f"Wechatpay-{n}"] for n in names[:4]):
            raise base.InvalidNotification("wechatpay notification without its signature headers")
        given["Wechatpay-Signature-Type"] = given["Wechatpay-Signature-Type"] or SIGNATURE_TYPE
        if given["Wechatpay-Signature-Type"] != SIGNATURE_TYPE:
            raise base.InvalidNotification("wechatpay notification signed with another algorithm")
        timestamp = given["Wechatpay-Timestamp"]
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            raise base.InvalidNotification("wechatpay notification with a malformed timestamp")
        serial = given["Wechatpay-Serial"]
        if self._config.public_key_id is not None:
            # Public-key mode: only our key's id; never a certificate download for a stranger.
            if serial != self._config.public_key_id:
                raise base.InvalidNotification(f"wechatpay notification for key {serial!r}")
        elif not _SERIAL.fullmatch(serial):
            raise base.InvalidNotification("wechatpay notification with a malformed serial")
        client = self._client()
        rotated = False
        if self._config.public_key_id is None and not self._knows(client, serial):
            # Certificate mode, a serial we have not loaded: WeChat Pay may have rotated its
            # certificate. A separate client fetches the list (the SDK empties its list before
            # a download, so the shared client must not be the one to try).
            client = self._client(fresh=True)
            rotated = True
        try:
            result = client.callback(given, body)
        except requests.RequestException as exc:
            # Certificate mode, a new serial: the certificate download failed. Say "later".
            logger.warning("wechatpay: platform certificates could not be fetched: %s", exc)
            raise base.unavailable_error() from exc
        except Exception as exc:
            raise base.InvalidNotification(f"wechatpay notification refused: {exc}") from None
        if not isinstance(result, dict):
            raise base.InvalidNotification(
                "wechatpay notification signature or encryption is wrong"
            )
        if rotated:
            # The new certificate is in the directory now: later clients load it from there.
            _sdk.cache_clear()
        if abs(time.time() - int(timestamp)) > settings.SIGNATURE_TOLERANCE_SECONDS:
            raise base.InvalidNotification("wechatpay notification timestamp is out of its window")
        resource = result.get("resource")
        if not isinstance(resource, dict) or not result.get("id"):
            raise base.InvalidNotification("wechatpay notification without id or resource")
        if resource.get("mchid") not in (None, self._config.mchid):
            raise base.InvalidNotification(
                f"wechatpay notification for mchid {resource.get('mchid')!r}"
            )
        if resource.get("appid") not in (None, self._config.appid):
            raise base.InvalidNotification(
                f"wechatpay notification for appid {resource.get('appid')!r}"
            )
        return [self._event(result, resource)]

    @staticmethod
    def _knows(client: WeChatPay, serial: str) -> bool:
        loaded = getattr(client._core, "_certificates", [])
        return any(cert.serial_number == int(serial, 16) for cert in loaded)

    def _event(self, result: dict[str, Any], resource: dict[str, Any]) -> base.ProviderEvent:
        event_type = str(result.get("event_type", ""))
        amount_info = resource.get("amount") or {}
        currency = str(amount_info.get("currency") or CURRENCY).upper()
        failure = None
        if event_type.startswith("TRANSACTION."):
            state = str(resource.get("trade_state", ""))
            status = _TRADE_STATES.get(state)
            kind = (
                base.EVENT_OF_STATUS.get(status or "", base.IGNORED)
                if state != "REFUND"
                else base.IGNORED
            )
            amount = amount_info.get("total")
            if kind == base.FAILED:
                failure = state.lower()
        elif event_type.startswith("REFUND."):
            refund_status = str(resource.get("refund_status", ""))
            if event_type == "REFUND.SUCCESS" and refund_status in ("", "SUCCESS"):
                kind = base.REFUNDED
            elif event_type in ("REFUND.ABNORMAL", "REFUND.CLOSED"):
                kind = base.REFUND_FAILED
                failure = (refund_status or event_type.split(".")[1]).lower()
            else:
                kind = base.IGNORED
            amount = amount_info.get("refund")
        else:
            kind, amount = base.IGNORED, None
        when = resource.get("success_time") or result.get("create_time")
        try:
            occurred_at = datetime.fromisoformat(when) if isinstance(when, str) else None
        except ValueError:
            occurred_at = None
        return base.ProviderEvent(
            event_id=str(result["id"]),
            kind=kind,
            reference=resource.get("out_trade_no"),
            provider_ref=resource.get("transaction_id"),
            amount=amount if isinstance(amount, int) else None,
            currency=currency,
            merchant=resource.get("mchid"),
            occurred_at=occurred_at,
            failure_code=failure,
            raw=result,
            refund_reference=resource.get("out_refund_no"),
            provider_refund_ref=resource.get("refund_id"),
        )

    def ack(self, accepted: bool) -> base.Ack:
        if accepted:
            return base.Ack(200, "application/json", b'{"code":"SUCCESS","message":"OK"}')
        return base.Ack(
            400,
            "application/json",
            json.dumps({"code": "FAIL", "message": "verification failed"}).encode(),
        )

    # --- queries and refunds --------------------------------------------------------------

    def query(self, reference: str, provider_ref: str | None) -> base.ProviderPaymentStatus:
        check_reference(reference, _TRADE_NO)
        status, answer = self._call(self._client().query, out_trade_no=reference)
        if status == 404 or answer.get("code") == "ORDER_NOT_EXIST":
            # Native orders exist from create_payment on: no order, nothing the payer can pay.
            return base.ProviderPaymentStatus(
                "failed", None, None, CURRENCY, self._config.mchid, "order_not_exist"
            )
        if not 200 <= status < 300:
            raise self._refusal(status, answer)
        if answer.get("out_trade_no") not in (None, reference) or answer.get("mchid") not in (
            None,
            self._config.mchid,
        ):
            raise base.other_payment_error()
        state = str(answer.get("trade_state", ""))
        outcome = _TRADE_STATES.get(state, "unknown")
        amount_info = answer.get("amount") or {}
        total = amount_info.get("total")
        return base.ProviderPaymentStatus(
            outcome,  # type: ignore[arg-type]
            answer.get("transaction_id"),
            total if isinstance(total, int) else None,
            str(amount_info.get("currency") or CURRENCY).upper(),
            answer.get("mchid") or self._config.mchid,
            state.lower() if outcome == "failed" else None,
        )

    def make_refund(self, refund: base.RefundRequest) -> base.RefundResult:
        check_refund(refund, CURRENCY)
        check_reference(refund.reference, _TRADE_NO)
        check_reference(refund.refund_reference, _REFUND_NO)
        # The same out_refund_no never refunds twice: WeChat Pay answers with that refund.
        status, answer = self._call(
            self._client().refund,
            out_refund_no=refund.refund_reference,
            amount={"refund": refund.amount, "total": refund.total, "currency": CURRENCY},
            out_trade_no=refund.reference,
            notify_url=settings.WECHATPAY_REFUND_NOTIFY_URL.strip() or None,
        )
        if not 200 <= status < 300:
            raise self._refusal(status, answer)
        refund_status = answer.get("status")
        refund_id = answer.get("refund_id")
        if refund_status == "SUCCESS":
            return base.RefundResult("succeeded", refund_id)
        if refund_status in ("CLOSED", "ABNORMAL"):
            return base.RefundResult("failed", refund_id)
        return base.RefundResult("pending", refund_id)

    # --- the day's statement --------------------------------------------------------------

    def statement(self, day: date) -> list[base.StatementLine]:
        """WeChat Pay's ALL trade bill of ``day`` (Beijing): ``/v3/bill/tradebill`` names the
        download address and the bill's SHA-1; the bill comes gzip-compressed and must hash
        to that value once decompressed (else it is fetched again on the next run)."""
        client = self._client()
        status, answer = self._call(
            client.trade_bill, bill_date=day.isoformat(), bill_type="ALL", tar_type="GZIP"
        )
        if status == 400 and answer.get("code") == "NO_STATEMENT_EXIST":
            return []  # no trade that day
        if answer.get("code") == "STATEMENT_CREATING":
            raise base.unavailable_error()
        if not 200 <= status < 300:
            raise self._refusal(status, answer)
        url = str(answer.get("download_url") or "")
        if not url:
            raise malformed_statement_error("no download_url")
        try:
            code, content = client.download_bill(url)
        except requests.RequestException as exc:
            logger.warning("wechatpay: bill download failed: %s", exc)
            raise base.unavailable_error() from exc
        if not 200 <= code < 300:
            logger.warning("wechatpay: bill download answered HTTP %s", code)
            raise base.unavailable_error()
        data = content.encode() if isinstance(content, str) else bytes(content)
        if data[:2] == b"\x1f\x8b":
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError) as exc:
                raise malformed_statement_error("not readable gzip") from exc
        hash_type = str(answer.get("hash_type") or "SHA1").upper()
        if hash_type != "SHA1":
            raise malformed_statement_error(f"hash type {hash_type}")
        expected = str(answer.get("hash_value") or "").lower()
        if not hmac.compare_digest(hashlib.sha1(data).hexdigest(), expected):  # noqa: S324
            logger.error("wechatpay: the bill of %s does not hash to its hash_value", day)
            raise base.ProviderError(
                "statement_hash_mismatch",
                "the bill does not match its hash; it is fetched again on the next run",
                retryable=True,
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise malformed_statement_error("not UTF-8") from None
        return parse_trade_bill(text)
