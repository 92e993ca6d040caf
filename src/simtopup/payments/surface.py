"""Where the payer is, and the payment methods that suit it, in the order they are offered.

``surface_of`` reads the browser's User-Agent: WeChat's own browser (``MicroMessenger``), a
phone's browser, or anything else (a desktop). ``methods_for`` orders the methods a provider
serves for that surface, the first one preselected:

- inside WeChat: WeChat Pay (JSAPI, when the payer's openid is known), then the bank card.
  Alipay is not offered: WeChat's browser does not open Alipay's pages.
- a phone's browser: Alipay (WAP), WeChat Pay (H5) — each opens its app on this phone —
  then the bank card.
- a desktop: Alipay and WeChat Pay as QR codes for the phone to scan, then the bank card.

The card's credit comes last, and only when it covers the price.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from simtopup.orders.customer import BALANCE
from simtopup.payments.providers.base import (
    ALIPAY,
    CARD,
    DESKTOP,
    PHONE,
    WECHAT,
    WECHAT_PAY,
)

# Phones and tablets used as phones: the markers their browsers send. iPadOS's Safari says
# "Macintosh" and is a desktop here (its QR codes are scanned with a phone).
_MOBILE = re.compile(
    r"Mobi|Android|iPhone|iPod|Windows Phone|HarmonyOS|OpenHarmony|BlackBerry|Opera Mini",
    re.IGNORECASE,
)
_WECHAT = re.compile(r"MicroMessenger", re.IGNORECASE)
# WeChat for Windows / macOS also says MicroMessenger: a desktop (WeChat Pay JSAPI works
# there too, but the payer is on a computer).
_WECHAT_DESKTOP = re.compile(r"WindowsWechat|MacWechat", re.IGNORECASE)

_ORDER = {
    WECHAT: (WECHAT_PAY, CARD),
    PHONE: (ALIPAY, WECHAT_PAY, CARD),
    DESKTOP: (ALIPAY, WECHAT_PAY, CARD),
}


def surface_of(user_agent: str | None) -> str:
    """``wechat``, ``phone`` or ``desktop`` for a User-Agent header (desktop when absent)."""
    text = (user_agent or "")[:512]
    if _WECHAT.search(text) and not _WECHAT_DESKTOP.search(text):
        return WECHAT
    if _MOBILE.search(text):
        return PHONE
    return DESKTOP


def methods_for(
    surface: str,
    served: Iterable[str],
    *,
    credit: int | None = None,
    price: int = 0,
    wechat_openid: bool = False,
) -> list[str]:
    """The methods to offer, the preselected one first: those in ``served`` (a provider
    takes them now) in the surface's order, then the card's credit when ``credit`` (its
    balance, None: not the payer's to use) covers ``price``. Inside WeChat, WeChat Pay needs
    the payer's openid (``wechat_openid``)."""
    available = set(served)
    methods = [m for m in _ORDER.get(surface, _ORDER[DESKTOP]) if m in available]
    if surface == WECHAT and not wechat_openid and WECHAT_PAY in methods:
        methods.remove(WECHAT_PAY)
    if credit is not None and credit >= price > 0:
        methods.append(BALANCE)
    return methods
