"""The Airalo-compatible partner API, ``/partner/v2/`` (docs/api.md).

A door like api/ and web/: it speaks the subset of Airalo's Partner API v2 that a reseller
uses to sell top-ups, in Airalo's request and response shapes (``{"data", "meta"}``, their
error bodies and codes), so that a client built on Airalo's official SDK switches by
changing its base URL. It parses, authorises and calls the reseller domain: a top-up here is
``resellers.actions.sell_topup``, the sale ``POST /reseller/v1/topups`` makes.
"""
