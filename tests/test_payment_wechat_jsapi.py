"""WeChat Pay inside WeChat's browser (JSAPI) on the website, against local fakes of WeChat's
web OAuth (``/sns/oauth2/access_token``) and of WeChat Pay's APIv3 gateway: the confirmation
first sends the browser for the silent snsapi_base grant, the code comes back as the payer's
openid, WeChat Pay is then offered first and preselected, paying places a JSAPI order for
that openid, and the status page carries the payment sheet's parameters signed with our
merchant key — never a QR code."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from simtopup.orders.models import Order, OrderStatus
from simtopup.payments.models import Payment
from tests.payment_keys import KeyPair
from tests.payments_support import sandbox_direct
from tests.support import Actors
from tests.test_payment_surface import WECHAT_IPHONE, confirmation, offered
from tests.test_provider_wechatpay import (
    APPID,
    FakeWechatGateway,
    gateway,
    merchant_keys,
    platform_keys,
)
from tests.web_support import browser, query_of, text

pytestmark = pytest.mark.usefixtures("sandbox_direct")
__all__ = ["gateway", "merchant_keys", "platform_keys", "sandbox_direct"]

SECRET = "0123456789abcdef0123456789abcdef"
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
PREPAY_ID = "wx05001234567890abcdef1234567890"


class FakeWechatOAuth:
    """api.weixin.qq.com's code exchange on loopback: one code, once."""

    def __init__(self) -> None:
        self.codes = {"CODE-1": OPENID}
        self.requests: list[dict[str, list[str]]] = []
        oauth = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                oauth.requests.append(query)
                openid = None
                if (
                    url.path == "/sns/oauth2/access_token"
                    and query.get("appid") == [APPID]
                    and query.get("secret") == [SECRET]
                    and query.get("grant_type") == ["authorization_code"]
                ):
                    openid = oauth.codes.pop(query.get("code", [""])[0], None)
                answer: dict[str, Any] = (
                    {
                        "access_token": "AT",
                        "expires_in": 7200,
                        "openid": openid,
                        "scope": "snsapi_base",
                    }
                    if openid
                    else {"errcode": 40029, "errmsg": "invalid code"}
                )
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def oauth(settings: Any, gateway: FakeWechatGateway) -> Iterator[FakeWechatOAuth]:
    fake = FakeWechatOAuth()
    settings.PAYMENT_ROUTES = {"wechat_pay": "wechatpay"}
    settings.WECHAT_OAUTH_SECRET = SECRET
    settings.WECHAT_OAUTH_API = fake.url
    settings.SITE_URL = "https://shop.example"
    gateway.routes[("POST", "/v3/pay/transactions/jsapi")] = (200, {"prepay_id": PREPAY_ID})
    yield fake
    fake.close()


WECHAT = {"User-Agent": WECHAT_IPHONE}


def test_inside_wechat_it_gets_the_openid_and_pays_through_jsapi(
    actors: Actors, oauth: FakeWechatOAuth, gateway: FakeWechatGateway, merchant_keys: KeyPair
) -> None:
    client = browser(language="zh-hans")
    token = confirmation(client, actors.device.iccid)
    confirm_path = f"/topup/confirm?c={token}"

    # First the silent grant: WeChat's authorize page, back to us with our state.
    asked = client.get(confirm_path, headers=WECHAT)
    assert asked.status_code == 302
    authorize = urlsplit(asked["Location"])
    assert (authorize.netloc, authorize.path) == ("open.weixin.qq.com", "/connect/oauth2/authorize")
    assert authorize.fragment == "wechat_redirect"
    grant = parse_qs(authorize.query)
    assert grant["appid"] == [APPID]
    assert grant["scope"] == ["snsapi_base"]
    assert grant["redirect_uri"] == ["https://shop.example/topup/wechat-openid"]
    state = grant["state"][0]

    back = client.get(f"/topup/wechat-openid?code=CODE-1&state={state}", headers=WECHAT)
    assert back.status_code == 302
    assert back["Location"] == confirm_path
    assert [q["code"] for q in oauth.requests] == [["CODE-1"]]

    page = client.get(confirm_path, headers=WECHAT)
    assert page.status_code == 200
    assert offered(page) == [("wechat_pay", True), ("card", False)]

    paid = client.post(
        "/topup/confirm", {"confirmation": token, "payment_method": "wechat_pay"}, headers=WECHAT
    )
    assert paid.status_code == 302
    order = Order.objects.get()
    payment = Payment.objects.get(order=order)
    assert (payment.provider, payment.provider_ref) == ("wechatpay", PREPAY_ID)
    assert payment.qr_data == ""
    assert payment.checkout_url == ""
    [sent] = gateway.requests
    assert sent["path"] == "/v3/pay/transactions/jsapi"
    assert sent["json"]["payer"] == {"openid": OPENID}
    assert sent["json"]["amount"]["total"] == 500

    assert paid["Location"].startswith(f"/orders/{order.pk}/status")
    status = client.get(paid["Location"], headers=WECHAT)
    body = text(status)
    assert order.status == OrderStatus.AWAITING_PAYMENT
    assert "使用微信支付" in body
    assert "<svg" not in body  # no QR code on the phone that would have to scan it
    parameters = json.loads(
        body.split('<script id="wechat-jsapi" type="application/json">')[1].split("</script>")[0]
    )
    assert parameters["appId"] == APPID
    assert parameters["package"] == f"prepay_id={PREPAY_ID}"
    message = (
        f"{APPID}\n{parameters['timeStamp']}\n{parameters['nonceStr']}\n{parameters['package']}\n"
    )
    assert merchant_keys.verify_sha256(message.encode(), parameters["paySign"])
    assert "web/wechat_pay.js" in body


def test_a_refused_code_leaves_the_card_and_does_not_ask_again(
    actors: Actors, oauth: FakeWechatOAuth
) -> None:
    client = browser()
    token = confirmation(client, actors.device.iccid)
    asked = client.get(f"/topup/confirm?c={token}", headers=WECHAT)
    state = query_of(asked["Location"].split("#")[0], "state")
    back = client.get(f"/topup/wechat-openid?code=USED&state={state}", headers=WECHAT)
    assert back.status_code == 302
    page = client.get(back["Location"], headers=WECHAT)
    assert page.status_code == 200  # not sent to WeChat again
    assert offered(page) == [("card", True)]


def test_a_state_that_is_not_ours_is_ignored(actors: Actors, oauth: FakeWechatOAuth) -> None:
    client = browser()
    token = confirmation(client, actors.device.iccid)
    client.get(f"/topup/confirm?c={token}", headers=WECHAT)
    back = client.get("/topup/wechat-openid?code=CODE-1&state=forged", headers=WECHAT)
    assert back.status_code == 302
    assert oauth.requests == []  # the code was never exchanged
    page = client.get(back["Location"], headers=WECHAT)
    assert offered(page) == [("card", True)]


def test_without_the_app_secret_inside_wechat_the_card_is_offered(
    actors: Actors, oauth: FakeWechatOAuth, settings: Any
) -> None:
    settings.WECHAT_OAUTH_SECRET = ""
    client = browser()
    token = confirmation(client, actors.device.iccid)
    page = client.get(f"/topup/confirm?c={token}", headers=WECHAT)
    assert page.status_code == 200
    assert offered(page) == [("card", True)]
