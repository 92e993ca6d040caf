"""Message templates, translated: rendered in the customer's language at send time."""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _


@dataclass(frozen=True)
class Template:
    subject: str | Promise
    body: str | Promise  # %(name)s placeholders, filled from the context


TEMPLATES: dict[str, Template] = {
    "login_code": Template(
        _("Your simtopup one-time code"),
        _(
            "Your simtopup one-time code is %(code)s. It is valid for %(minutes)s minutes. "
            "Never share it with anyone, not even customer service."
        ),
    ),
    "topup_credited": Template(
        _("Top-up credited"),
        _("Your top-up of %(plan)s for card %(device)s (%(amount)s) has been credited."),
    ),
    "payment_failed": Template(
        _("Payment failed"),
        _("The payment of %(amount)s for card %(device)s did not go through; nothing was charged."),
    ),
    "refund_issued": Template(
        _("Refund issued"),
        _("We refunded %(amount)s for your order for card %(device)s."),
    ),
    "auto_topup_placed": Template(
        _("Automatic top-up done"),
        _(
            "Data on card %(device)s ran low, so we topped it up automatically with %(plan)s "
            "(%(amount)s) from its credit."
        ),
    ),
    "auto_topup_failed": Template(
        _("Automatic top-up failed"),
        _(
            "Data on card %(device)s ran low, but the automatic top-up with %(plan)s failed: "
            "%(reason)s"
        ),
    ),
    "data_low": Template(
        _("Data running low"),
        _("Card %(device)s has used %(percent)s%% of its data; %(remaining)s left."),
    ),
    "data_expiring": Template(
        _("Plan expiring soon"),
        _("The plan %(plan)s on card %(device)s expires at %(expires_at)s."),
    ),
}
