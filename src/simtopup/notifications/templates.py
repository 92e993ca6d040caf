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
    # Customer service sending a receipt again (orders/service.py).
    "receipt_resent": Template(
        _("Your receipt"),
        _(
            "Your receipt %(receipt_no)s: %(plan)s for card %(device)s, %(amount)s. "
            "View or check it: %(link)s"
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

# Alerts (usage/alerts.py). %(auto)s is empty or a sentence about automatic top-up, %(link)s
# the one-tap top-up.
TEMPLATES.update(
    {
        "alert_used_80": Template(
            _("80% of your data used"),
            _(
                "Card %(device)s has used 80%% of %(plan)s; %(remaining)s left.%(auto)s "
                "Top up: %(link)s"
            ),
        ),
        "alert_used_100": Template(
            _("Your data is used up"),
            _("Card %(device)s has used all the data of %(plan)s.%(auto)s Top up: %(link)s"),
        ),
        "alert_expires_3d": Template(
            _("Your plan expires in 3 days"),
            _(
                "%(plan)s on card %(device)s expires at %(expires_at)s; %(remaining)s left."
                "%(auto)s Top up: %(link)s"
            ),
        ),
        "alert_expires_1d": Template(
            _("Your plan expires tomorrow"),
            _(
                "%(plan)s on card %(device)s expires at %(expires_at)s; %(remaining)s left."
                "%(auto)s Top up: %(link)s"
            ),
        ),
        "alert_expired": Template(
            _("Your plan has expired"),
            _("%(plan)s on card %(device)s expired at %(expires_at)s.%(auto)s Top up: %(link)s"),
        ),
        "alert_credit_low": Template(
            _("Credit running low"),
            _(
                "The credit on card %(device)s is %(credit)s, below %(threshold)s.%(auto)s "
                "Add credit: %(link)s"
            ),
        ),
        "alert_credit_exhausted": Template(
            _("Credit used up"),
            _(
                "The credit on card %(device)s (%(credit)s) no longer pays for data.%(auto)s "
                "Add credit: %(link)s"
            ),
        ),
    }
)
