"""The payer's openid inside WeChat's browser, for WeChat Pay JSAPI.

JSAPI charges a payer known by their openid for our app id (``WECHATPAY_APPID``, an official
account). WeChat gives it through its web OAuth with ``scope=snsapi_base``: the browser is
sent to :func:`authorize_url`, WeChat sends it back to our redirect URI with a ``code`` at
once (no prompt for this scope), and :func:`openid_for` exchanges the code for the openid
(``/sns/oauth2/access_token`` with the AppSecret, ``WECHAT_OAUTH_SECRET``). The redirect
URI's domain must be the official account's "网页授权域名".
"""

from __future__ import annotations

import json
import logging
import re
from urllib.error import URLError
from urllib.parse import urlencode
from urllib.request import urlopen

from django.conf import settings

from simtopup.payments.providers import base

logger = logging.getLogger(__name__)

AUTHORIZE = "https://open.weixin.qq.com/connect/oauth2/authorize"
API = "https://api.weixin.qq.com"
_OPENID = re.compile(r"[0-9A-Za-z_-]{6,64}")


def enabled() -> bool:
    """JSAPI can be offered: the app id and its AppSecret are set."""
    return bool(settings.WECHATPAY_APPID.strip() and settings.WECHAT_OAUTH_SECRET.strip())


def authorize_url(redirect_uri: str, state: str) -> str:
    """Where the browser goes for the silent snsapi_base grant."""
    query = urlencode(
        {
            "appid": settings.WECHATPAY_APPID.strip(),
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": "snsapi_base",
            "state": state,
        }
    )
    return f"{AUTHORIZE}?{query}#wechat_redirect"


def openid_for(code: str) -> str:
    """The openid the ``code`` WeChat handed back stands for; ProviderError if WeChat
    refuses it (used, expired, forged) or cannot be reached."""
    if not (0 < len(code) <= 128 and code.isascii() and code.isprintable()):
        raise base.refused_error()
    api = (settings.WECHAT_OAUTH_API.strip() or API).rstrip("/")
    query = urlencode(
        {
            "appid": settings.WECHATPAY_APPID.strip(),
            "secret": settings.WECHAT_OAUTH_SECRET.strip(),
            "code": code,
            "grant_type": "authorization_code",
        }
    )
    try:
        with urlopen(  # noqa: S310 (an https URL from settings)
            f"{api}/sns/oauth2/access_token?{query}", timeout=settings.WECHATPAY_TIMEOUT_SECONDS
        ) as response:
            answer = json.loads(response.read().decode("utf-8"))
    except (URLError, TimeoutError, OSError, ValueError) as exc:
        logger.warning("wechat oauth: the code could not be exchanged: %s", exc)
        raise base.unavailable_error() from exc
    if not isinstance(answer, dict):
        raise base.unavailable_error()
    openid = answer.get("openid")
    if answer.get("errcode") or not isinstance(openid, str) or not _OPENID.fullmatch(openid):
        logger.warning(
            "wechat oauth: refused: %s %s", answer.get("errcode"), answer.get("errmsg", "")
        )
        raise base.refused_error()
    return openid
