"""Alipay direct (支付宝开放平台, RSA2) through ``python-alipay-sdk``.

Settings (environment variables, ``SIMTOPUP_`` prefix, ``*_FILE`` variants for the keys):

- ``ALIPAY_APP_ID`` (required): the app's id at the Alipay open platform.
- ``ALIPAY_APP_PRIVATE_KEY`` (required): the app's RSA private key (PEM, or the bare base64
  that Alipay's key tool prints); ``ALIPAY_PUBLIC_KEY`` (required): *Alipay's* public key as
  shown in the app's settings (public-key mode, not certificate mode).
- ``ALIPAY_SELLER_ID``: the seller's user id (2088…); notifications for another seller are
  refused when set.
- ``ALIPAY_SANDBOX`` (false): use Alipay's sandbox gateway; ``ALIPAY_GATEWAY`` overrides the
  gateway URL altogether.
- ``ALIPAY_PAYMENT_MODE`` (``page``): ``page`` (alipay.trade.page.pay, the desktop cashier),
  ``wap`` (alipay.trade.wap.pay, a mobile browser) — both redirect the payer to the gateway
  with a signed query string — or ``qr`` (alipay.trade.precreate: a QR code to scan). It is
  the flow for payments that do not say where the payer is; one that does gets the flow of
  its surface: ``wap`` in a phone's browser or WeChat's, ``qr`` on a desktop (never a QR
  code on the screen of the phone that would have to scan it).
- ``ALIPAY_NOTIFY_MAX_AGE_SECONDS`` (93600 = 26 h): notifications whose ``notify_time`` is
  older are refused. Alipay retries an unanswered notification about eight times over
  25 hours (4 m, 10 m, 10 m, 1 h, 2 h, 6 h, 15 h); 26 h lets the last retry in, with room
  for clock skew, and refuses older replays. Replays inside the window change nothing either:
  each ``notify_id`` is stored once.
- ``ALIPAY_TIMEOUT_SECONDS`` (15), ``ALIPAY_VERBOSE`` (false: the SDK's debug logging).

The statement of a day (:meth:`AlipayProvider.statement`) is Alipay's trade bill of that
Beijing day (``alipay.data.dataservice.bill.downloadurl.query``, ``bill_type=trade``): a ZIP
of GBK CSV files, of which the 业务明细 (business details) is read. Alipay makes it the next
morning (before 9:00 Beijing time, it says).

The asynchronous notification is a form post signed with Alipay's key over the sorted
``k=v&…`` string of every field but ``sign`` and ``sign_type``; it is answered ``success``
(anything else makes Alipay retry). Alipay's own timestamps are Beijing time.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
import zipfile
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import parse_qsl
from urllib.request import urlopen

from alipay import AliPay  # type: ignore[import-untyped]
from alipay.exceptions import AliPayValidationError  # type: ignore[import-untyped]
from alipay.utils import AliPayConfig  # type: ignore[import-untyped]
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from simtopup.core.errors import DomainError
from simtopup.core.money import to_decimal_string, to_minor
from simtopup.payments.providers import base
from simtopup.payments.providers._common import (
    BEIJING,
    check_payment_request,
    check_reference,
    check_refund,
    gateway_url,
    malformed_statement_error,
    private_key_pem,
    public_key_pem,
    require,
    yuan_to_fen,
)

logger = logging.getLogger(__name__)

CURRENCY = "CNY"  # Alipay direct settles in yuan only
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# Answers that mean "try again later" (Alipay's docs: retry with the same request numbers).
_RETRYABLE = {"20000", "ACQ.SYSTEM_ERROR", "aop.ACQ.SYSTEM_ERROR", "isp.unknow-error"}
_RETRYABLE_LATER = {"ACQ.SELLER_BALANCE_NOT_ENOUGH", "ACQ.REFUND_FEE_ERROR"}
# A trade's status at Alipay, as ours (ProviderPaymentStatus.status).
_TRADE_STATUSES = {
    "TRADE_SUCCESS": "succeeded",
    "TRADE_FINISHED": "succeeded",
    "TRADE_CLOSED": "failed",
    "WAIT_BUYER_PAY": "pending",
}
_MODES = {
    "page": ("alipay.trade.page.pay", "FAST_INSTANT_TRADE_PAY"),
    "wap": ("alipay.trade.wap.pay", "QUICK_WAP_WAY"),
    "qr": ("alipay.trade.precreate", "FACE_TO_FACE_PAYMENT"),
}

# The flow for where the payer is (PaymentRequest.surface).
_SURFACE_MODES = {base.PHONE: "wap", base.WECHAT: "wap", base.DESKTOP: "qr"}


def _beijing_text(moment: datetime) -> str:
    return moment.astimezone(BEIJING).strftime(_TIME_FORMAT)


def _parse_beijing(text: str) -> datetime:
    """``2026-11-26 16:10:00`` or, in refund notices, ``2026-11-26 16:10:00.123``."""
    seconds, _, fraction = text.partition(".")
    moment = datetime.strptime(seconds, _TIME_FORMAT)
    if fraction:
        if not (fraction.isdigit() and len(fraction) <= 6):
            raise ValueError(f"bad fraction of a second: {text!r}")
        moment = moment.replace(microsecond=int(fraction.ljust(6, "0")))
    return moment.replace(tzinfo=BEIJING).astimezone(UTC)


class _Client(AliPay):
    """The SDK's client with three fixes: Beijing-time request timestamps (the SDK uses the
    server's local time, UTC under Django), a configurable gateway, and transport and
    gateway errors turned into :class:`ProviderError` (the SDK raises bare exceptions)."""

    def __init__(self, *args: Any, gateway: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if gateway:
            self._gateway = gateway

    @property
    def gateway(self) -> str:
        return str(self._gateway)

    def build_body(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        data: dict[str, Any] = super().build_body(*args, **kwargs)
        data["timestamp"] = _beijing_text(datetime.now(UTC))
        return data

    def verified_sync_response(self, data: dict[str, Any], response_type: str) -> dict[str, Any]:
        url = self._gateway + "?" + self.sign_data(data)
        try:
            with urlopen(url, timeout=self._config.timeout) as response:  # noqa: S310
                raw = response.read().decode("utf-8")
        except HTTPError as exc:
            logger.warning("alipay: gateway answered HTTP %s", exc.code)
            if exc.code >= 500 or exc.code == 429:
                raise base.unavailable_error() from exc
            raise base.refused_error() from exc
        except (URLError, TimeoutError, OSError) as exc:
            logger.warning("alipay: gateway unreachable: %s", exc)
            raise base.unavailable_error() from exc
        try:
            document = json.loads(raw)
        except ValueError as exc:
            logger.warning("alipay: gateway answered something other than JSON")
            raise base.unavailable_error() from exc
        if not isinstance(document, dict):
            raise base.unavailable_error()
        if "error_response" in document or "sign" not in document:
            # Refusals of the request itself (bad app id, bad signature …) come unsigned.
            answer = document.get(response_type) or document.get("error_response") or {}
            raise _refusal(answer if isinstance(answer, dict) else {})
        try:
            result: dict[str, Any] = self._verify_and_return_sync_response(raw, response_type)
        except (AliPayValidationError, ValueError) as exc:
            logger.error("alipay: the gateway's answer does not carry Alipay's signature")
            raise base.unsigned_answer_error() from exc
        return result


@lru_cache(maxsize=8)
def _client(
    app_id: str,
    private_key: str,
    public_key: str,
    sandbox: bool,
    verbose: bool,
    timeout: int,
    gateway: str,
) -> _Client:
    """One SDK client per configuration (loading its keys takes tens of milliseconds, and
    providers are built per use). The client holds no per-request state."""
    try:
        return _Client(
            appid=app_id,
            app_private_key_string=private_key,
            alipay_public_key_string=public_key,
            sign_type="RSA2",
            debug=sandbox,
            verbose=verbose,
            config=AliPayConfig(timeout=timeout),
            gateway=gateway,
        )
    except ValueError as exc:
        raise ImproperlyConfigured(f"Alipay keys cannot be loaded: {exc}") from None


def _refusal(answer: Mapping[str, Any]) -> base.ProviderError:
    code = str(answer.get("code", ""))
    sub_code = str(answer.get("sub_code", ""))
    logger.warning(
        "alipay: refused: code %s sub_code %s (%s)", code, sub_code, answer.get("sub_msg", "")
    )
    if code in _RETRYABLE or sub_code in _RETRYABLE or sub_code in _RETRYABLE_LATER:
        return base.unavailable_error()
    if code in ("40001", "40002", "40006"):  # missing/invalid arguments, no permission
        return base.misconfigured_error()
    return base.refused_error()


def _succeeded(answer: Mapping[str, Any]) -> bool:
    return str(answer.get("code")) == "10000"


# The bill's answers that mean "no bill for that day": no trade, nothing to list.
_NO_BILL = {"isp.bill_not_exist", "isp.bill_not_exists", "NO_BILL_DATA", "BILL_NOT_EXIST"}
# The 业务明细 file's columns read here (headers as Alipay writes them, parentheses either
# full-width or not).
_COLUMNS = {
    "trade_no": "支付宝交易号",
    "out_trade_no": "商户订单号",
    "kind": "业务类型",
    "finished": "完成时间",
    "order_amount": "订单金额(元)",
    "received": "商家实收(元)",
    "request_no": "退款批次号/请求号",
}


def _member_name(info: zipfile.ZipInfo) -> str:
    """A ZIP member's name: Alipay writes GBK names without the UTF-8 flag, which Python
    reads as code page 437."""
    if info.flag_bits & 0x800:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("gb18030")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return info.filename


def parse_trade_bill(archive: bytes) -> list[base.StatementLine]:
    """The lines of Alipay's trade bill ZIP: its 业务明细 CSV (not the 汇总 summary), GBK,
    ``#`` comment lines above and below the table, cells padded with tabs or spaces.
    业务类型 交易 is a payment (订单金额 is what was asked for), 退款 a refund (商家实收, negative,
    is what went back; 退款批次号/请求号 is our out_request_no)."""
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as bill:
            members = [
                info
                for info in bill.infolist()
                if _member_name(info).endswith(".csv") and "汇总" not in _member_name(info)
            ]
            details = [i for i in members if "业务明细" in _member_name(i)] or members
            if not details:
                raise malformed_statement_error("no 业务明细 CSV in the ZIP")
            raw = bill.read(details[0])
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise malformed_statement_error(f"not a readable ZIP ({exc})") from None
    text = raw.decode("gb18030", errors="strict") if raw else ""
    rows = [
        [cell.strip() for cell in row]
        for row in csv.reader(io.StringIO(text))
        if row and not row[0].lstrip().startswith("#")
    ]
    if not rows:
        return []
    header = [h.replace("（", "(").replace("）", ")") for h in rows[0]]
    try:
        column = {key: header.index(name) for key, name in _COLUMNS.items()}
    except ValueError as exc:
        raise malformed_statement_error(f"a column is missing ({exc})") from None
    lines: list[base.StatementLine] = []
    for row in rows[1:]:
        if len(row) < len(header):
            raise malformed_statement_error(f"a short row ({len(row)} cells)")
        kind = row[column["kind"]]
        try:
            at = _parse_beijing(row[column["finished"]]) if row[column["finished"]] else None
        except ValueError:
            raise malformed_statement_error(f"time {row[column['finished']]!r}") from None
        if kind == "交易":
            lines.append(
                base.StatementLine(
                    kind=base.STATEMENT_PAYMENT,
                    reference=row[column["out_trade_no"]],
                    provider_ref=row[column["trade_no"]],
                    amount=yuan_to_fen(row[column["order_amount"]]),
                    currency=CURRENCY,
                    at=at,
                )
            )
        elif kind == "退款":
            amount = yuan_to_fen(row[column["received"]]) or yuan_to_fen(
                row[column["order_amount"]]
            )
            lines.append(
                base.StatementLine(
                    kind=base.STATEMENT_REFUND,
                    reference=row[column["request_no"]],
                    provider_ref=row[column["trade_no"]],
                    amount=amount,
                    currency=CURRENCY,
                    at=at,
                    payment_reference=row[column["out_trade_no"]],
                )
            )
    return lines


class AlipayProvider(base.Provider):
    name = "alipay"
    methods = frozenset({base.ALIPAY})
    supports_partial_refund = True
    statement_zone = BEIJING
    statement_ready_after = timedelta(hours=10)

    def __init__(self) -> None:
        self._app_id = require("ALIPAY_APP_ID")
        self._seller_id = settings.ALIPAY_SELLER_ID.strip()
        self._mode = settings.ALIPAY_PAYMENT_MODE.strip().lower()
        if self._mode not in _MODES:
            raise ImproperlyConfigured(
                "SIMTOPUP_ALIPAY_PAYMENT_MODE must be one of page, wap, qr; "
                f"not {settings.ALIPAY_PAYMENT_MODE!r}."
            )
        self._client = _client(
            self._app_id,
            private_key_pem("ALIPAY_APP_PRIVATE_KEY"),
            public_key_pem("ALIPAY_PUBLIC_KEY"),
            settings.ALIPAY_SANDBOX,
            settings.ALIPAY_VERBOSE,
            settings.ALIPAY_TIMEOUT_SECONDS,
            gateway_url("ALIPAY_GATEWAY"),
        )

    @property
    def merchant(self) -> str | None:
        return self._app_id

    # --- payments -------------------------------------------------------------------------

    def create_payment(self, request: base.PaymentRequest) -> base.CreatedPayment:
        check_payment_request(request, self.methods, yuan_only=True)
        check_reference(request.reference)
        mode = _SURFACE_MODES.get(request.surface or "", self._mode)
        api, product = _MODES[mode]
        biz: dict[str, Any] = {
            "out_trade_no": request.reference,
            "total_amount": to_decimal_string(request.amount, CURRENCY),
            "subject": request.description[:256],
            "product_code": product,
        }
        if request.expires_at is not None:
            biz["time_expire"] = _beijing_text(request.expires_at)
        if mode == "qr":
            answer = self._client.server_api(api, biz, notify_url=request.notify_url)
            if not _succeeded(answer) or not answer.get("qr_code"):
                raise _refusal(answer)
            return base.CreatedPayment(None, base.NextAction("qr", qr_data=str(answer["qr_code"])))
        if mode == "wap":
            biz["quit_url"] = request.return_url
        query = self._client.client_api(
            api, biz, return_url=request.return_url, notify_url=request.notify_url
        )
        return base.CreatedPayment(
            None, base.NextAction("redirect", url=f"{self._client.gateway}?{query}")
        )

    # --- notifications --------------------------------------------------------------------

    def parse_notification(
        self, headers: Mapping[str, str], body: bytes
    ) -> list[base.ProviderEvent]:
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            raise base.InvalidNotification("alipay notification is not a UTF-8 form") from None
        data = dict(pairs)
        if len(data) != len(pairs):
            raise base.InvalidNotification("alipay notification repeats a field")
        signature = data.pop("sign", "")
        sign_type = data.pop("sign_type", "RSA2")
        if not signature or sign_type != "RSA2":
            raise base.InvalidNotification("alipay notification is not signed with RSA2")
        try:
            authentic = self._client.verify(dict(data), signature)
        except Exception:  # malformed base64 and the like
            authentic = False
        if not authentic:
            raise base.InvalidNotification("alipay notification signature does not verify")
        if data.get("app_id") != self._app_id:
            raise base.InvalidNotification(f"alipay notification for app {data.get('app_id')!r}")
        if self._seller_id and data.get("seller_id") != self._seller_id:
            raise base.InvalidNotification(
                f"alipay notification for seller {data.get('seller_id')!r}"
            )
        try:
            sent_at = _parse_beijing(data.get("notify_time", ""))
        except ValueError:
            raise base.InvalidNotification(
                "alipay notification without a valid notify_time"
            ) from None
        age = time.time() - sent_at.timestamp()
        if age > settings.ALIPAY_NOTIFY_MAX_AGE_SECONDS:
            raise base.InvalidNotification("alipay notification is too old")
        if age < -settings.SIGNATURE_TOLERANCE_SECONDS:
            raise base.InvalidNotification("alipay notification is from the future")
        if not data.get("notify_id"):
            raise base.InvalidNotification("alipay notification without notify_id")
        return [self._event(data, sent_at)]

    def _event(self, data: dict[str, str], sent_at: datetime) -> base.ProviderEvent:
        status = data.get("trade_status", "")
        refunded = bool(data.get("gmt_refund") or data.get("refund_fee"))
        try:
            if refunded:
                # A refund's notice: TRADE_SUCCESS after a partial refund, TRADE_CLOSED after a
                # full one — never a failed payment.
                kind = base.REFUNDED
                amount: int | None = to_minor(data.get("refund_fee", ""), CURRENCY)
                when = data.get("gmt_refund")
            else:
                kind = base.EVENT_OF_STATUS.get(_TRADE_STATUSES.get(status, ""), base.IGNORED)
                amount = (
                    to_minor(data["total_amount"], CURRENCY) if data.get("total_amount") else None
                )
                when = data.get("gmt_payment") if kind == base.SUCCEEDED else data.get("gmt_close")
            occurred_at = _parse_beijing(when) if when else sent_at
        except (DomainError, ValueError):
            raise base.InvalidNotification(
                "alipay notification with malformed amounts or times"
            ) from None
        return base.ProviderEvent(
            event_id=data["notify_id"],
            kind=kind,
            reference=data.get("out_trade_no") or None,
            provider_ref=data.get("trade_no") or None,
            amount=amount,
            currency=CURRENCY,
            merchant=data.get("app_id"),
            occurred_at=occurred_at,
            failure_code="trade_closed" if kind == base.FAILED else None,
            raw=data,
            # A refund notice names the refund by our out_request_no (as out_biz_no).
            refund_reference=(data.get("out_biz_no") or None) if kind == base.REFUNDED else None,
        )

    def ack(self, accepted: bool) -> base.Ack:
        if accepted:
            return base.Ack(200, "text/plain", b"success")
        return base.Ack(400, "text/plain", b"fail")

    # --- queries and refunds --------------------------------------------------------------

    def query(self, reference: str, provider_ref: str | None) -> base.ProviderPaymentStatus:
        check_reference(reference)
        biz = {"out_trade_no": reference}
        if provider_ref:
            biz["trade_no"] = provider_ref
        answer = self._client.server_api("alipay.trade.query", biz)
        if not _succeeded(answer):
            if answer.get("sub_code") == "ACQ.TRADE_NOT_EXIST":
                # The trade exists at Alipay only once the payer opened the cashier page.
                return base.ProviderPaymentStatus("pending", None, None, CURRENCY, self._app_id)
            raise _refusal(answer)
        if answer.get("out_trade_no") not in (None, reference):
            raise base.other_payment_error()
        status = _TRADE_STATUSES.get(str(answer.get("trade_status")), "unknown")
        try:
            amount = to_minor(str(answer["total_amount"]), CURRENCY)
        except (KeyError, DomainError):
            amount = None
        return base.ProviderPaymentStatus(
            status,  # type: ignore[arg-type]
            answer.get("trade_no"),
            amount,
            CURRENCY,
            self._app_id,
            "trade_closed" if status == "failed" else None,
        )

    def make_refund(self, refund: base.RefundRequest) -> base.RefundResult:
        check_refund(refund, CURRENCY)
        check_reference(refund.reference)
        check_reference(refund.refund_reference)
        provider_ref = refund.provider_ref
        biz = {
            "out_trade_no": refund.reference,
            "refund_amount": to_decimal_string(refund.amount, CURRENCY),
            # Alipay's idempotency key: the same out_request_no never refunds twice.
            "out_request_no": refund.refund_reference,
        }
        if provider_ref:
            biz["trade_no"] = provider_ref
        answer = self._client.server_api("alipay.trade.refund", biz)
        if not _succeeded(answer):
            raise _refusal(answer)
        if answer.get("fund_change") == "Y":
            return base.RefundResult("succeeded", answer.get("trade_no") or provider_ref)
        # "N": no money moved by *this* call — a repeat of an earlier request, or still being
        # processed. Alipay's advice: ask the refund query.
        check = self._client.server_api(
            "alipay.trade.fastpay.refund.query",
            {"out_trade_no": refund.reference, "out_request_no": refund.refund_reference},
        )
        if _succeeded(check) and (
            check.get("refund_status") == "REFUND_SUCCESS"
            or (not check.get("refund_status") and check.get("refund_amount"))
        ):
            return base.RefundResult("succeeded", answer.get("trade_no") or provider_ref)
        return base.RefundResult("pending", answer.get("trade_no") or provider_ref)

    # --- the day's statement --------------------------------------------------------------

    def statement(self, day: date) -> list[base.StatementLine]:
        """Alipay's trade bill of ``day`` (Beijing): the download address (valid 30 s) from
        ``alipay.data.dataservice.bill.downloadurl.query``, then the ZIP it points to."""
        answer = self._client.server_api(
            "alipay.data.dataservice.bill.downloadurl.query",
            {"bill_type": "trade", "bill_date": day.isoformat()},
        )
        if not _succeeded(answer):
            if str(answer.get("sub_code", "")) in _NO_BILL:
                return []
            raise _refusal(answer)
        url = str(answer.get("bill_download_url") or "")
        if not url.startswith(("https://", "http://")):
            raise malformed_statement_error("no bill_download_url")
        try:
            with urlopen(url, timeout=self._client._config.timeout) as response:  # noqa: S310
                archive = response.read()
        except HTTPError as exc:
            logger.warning("alipay: bill download answered HTTP %s", exc.code)
            raise base.unavailable_error() from exc
        except (URLError, TimeoutError, OSError) as exc:
            logger.warning("alipay: bill download failed: %s", exc)
            raise base.unavailable_error() from exc
        return parse_trade_bill(archive)
