"""A reseller by its agent code, a reseller's sale by the reseller's own reference: what
the public verification page (web/verify.py) and the console's desk look up."""

from __future__ import annotations

import unicodedata

from simtopup.orders.models import Order
from simtopup.resellers.models import Reseller

AGENT_CODE_MAX = 40


def normalise_agent_code(text: str) -> str:
    """``ag 7k3m-xq9p`` → ``AG7K3MXQ9P``: full-width characters, spaces and dashes forgiven."""
    text = unicodedata.normalize("NFKC", text)
    return "".join(ch for ch in text if not ch.isspace() and ch != "-").upper()


def reseller_by_agent_code(text: str) -> Reseller | None:
    code = normalise_agent_code(text[:AGENT_CODE_MAX])
    if not code:
        return None
    return Reseller.objects.filter(code__iexact=code).first()


def orders_by_reference(text: str, limit: int = 20) -> list[Order]:
    """Resellers' sales with this reference (unique per reseller, so one per reseller)."""
    reference = unicodedata.normalize("NFKC", text).strip()
    if not reference or len(reference) > 100:
        return []
    return list(
        Order.objects.filter(reseller__isnull=False, reference=reference).order_by("-pk")[:limit]
    )
