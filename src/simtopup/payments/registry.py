"""Which provider serves which payment method (settings), and the provider objects.

``SIMTOPUP_PAYMENT_PROVIDER`` names the provider of every method; ``SIMTOPUP_PAYMENT_ROUTES``
overrides it per method (``card=stripe,alipay=alipay,wechat_pay=wechatpay``). Provider
classes are imported lazily, so a provider without credentials never breaks the others.
"""

from __future__ import annotations

from django.conf import settings
from django.utils.module_loading import import_string
from django.utils.translation import gettext_lazy as _

from simtopup.core.errors import field_error
from simtopup.payments.providers.base import METHODS, Provider

PROVIDER_CLASSES = {
    "sandbox": "simtopup.payments.providers.sandbox.SandboxProvider",
    "stripe": "simtopup.payments.providers.stripe.StripeProvider",
    "alipay": "simtopup.payments.providers.alipay.AlipayProvider",
    "wechatpay": "simtopup.payments.providers.wechatpay.WechatPayProvider",
}


def route(method: str) -> str:
    """The provider name serving ``method``."""
    return settings.PAYMENT_ROUTES.get(method, settings.PAYMENT_PROVIDER)


def enabled_providers() -> set[str]:
    return {route(method) for method in METHODS}


def is_enabled(name: str) -> bool:
    return name in enabled_providers()


def provider_class(name: str) -> type[Provider]:
    """A provider's class by name (its capability flags and statement zone, without the
    credentials its constructor checks)."""
    path = PROVIDER_CLASSES.get(name)
    if path is None:
        raise LookupError(f"unknown payment provider {name!r}")
    cls: type[Provider] = import_string(path)
    return cls


def get_provider(name: str) -> Provider:
    """A provider object by name (enabled or not: payments made through a provider that has
    since been switched off still need their refunds and queries)."""
    path = PROVIDER_CLASSES.get(name)
    if path is None:
        raise LookupError(f"unknown payment provider {name!r}")
    cls = import_string(path)
    provider: Provider = cls()
    return provider


def provider_for(method: str) -> Provider:
    """The provider that takes payments by ``method`` now; a 422 if none can."""
    provider = get_provider(route(method)) if method in METHODS else None
    if provider is None or method not in provider.methods:
        raise field_error(
            "payment_method_unavailable",
            _("This payment method is not available."),
            "payment_method",
        )
    return provider
