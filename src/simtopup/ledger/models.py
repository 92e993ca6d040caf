"""Double-entry ledger: accounts and immutable transfers.

Every movement of value is one :class:`Transfer` of a positive ``amount`` from ``source`` to
``destination``, both in the transfer's ``unit`` (an ISO 4217 currency, or ``BYTES``).
Balances start at zero, so per unit the balances always sum to zero.

Two kinds of account:

* bounded accounts (card credit, reseller floats, data bundles) keep a cached ``balance``
  updated in the transfer's transaction, under a row lock taken in primary-key order, and
  may never go below zero (a compare-and-swap update plus a CHECK constraint);
* hot system accounts (revenue, clearing, issuance) are never row-locked: their balance is
  the sum of their transfers, so concurrent top-ups do not queue on one row.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

BYTES = "BYTES"


class AccountKind(models.TextChoices):
    DEVICE_CREDIT = "device_credit", pgettext_lazy("choice", "device credit")
    DEVICE_OVERAGE = "device_overage", pgettext_lazy("choice", "device overage")
    BUNDLE = "bundle", pgettext_lazy("choice", "data bundle")
    RESELLER_FLOAT = "reseller_float", pgettext_lazy("choice", "reseller float")
    SYSTEM = "system", pgettext_lazy("choice", "system")


class Account(models.Model):
    # Unique by a constraint, not unique=True, so PostgreSQL keeps one index on it (no
    # second pattern-ops index for LIKE that nothing uses): every top-up inserts an account.
    code = models.CharField(max_length=100, verbose_name=_("code"))
    kind = models.CharField(max_length=20, choices=AccountKind.choices, verbose_name=_("kind"))
    unit = models.CharField(max_length=8, verbose_name=_("unit"))
    # Cached balance of bounded accounts; always 0 for hot accounts (derived from transfers).
    balance = models.BigIntegerField(default=0, verbose_name=_("balance"))
    # May this account go below zero? Only system accounts and overage may.
    allow_negative = models.BooleanField(default=False, verbose_name=_("may go negative"))
    # Hot accounts are not row-locked and keep no cached balance.
    hot = models.BooleanField(default=False, verbose_name=_("hot (busy) account"))
    # A clearing account must return to zero once everything has settled.
    clearing = models.BooleanField(default=False, verbose_name=_("clearing account"))
    name = models.CharField(max_length=200, blank=True, verbose_name=_("name"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created"))

    class Meta:
        verbose_name = _("ledger account")
        verbose_name_plural = _("ledger accounts")
        constraints = [
            models.UniqueConstraint(fields=["code"], name="ledger_account_code_once"),
            models.CheckConstraint(
                condition=Q(allow_negative=True) | Q(balance__gte=0),
                name="ledger_account_floor",
            ),
            models.CheckConstraint(
                condition=Q(hot=False) | Q(balance=0), name="ledger_hot_account_uncached"
            ),
        ]

    def __str__(self) -> str:
        return self.code


class Transfer(models.Model):
    """One immutable movement of value. Never updated or deleted (a database trigger
    refuses both); corrections are new transfers."""

    # Indexed by (source, id) and (destination, id) below; no separate single-column index.
    # No foreign-key constraint either: its check row-locks (KEY SHARE) the referenced
    # account, and every transfer references a hot system account that must never be
    # locked (concurrent lockers of one row make PostgreSQL build multixacts). Migration
    # 0004 installs the equivalent without locks: accounts can never be deleted or renumbered,
    # and a statement-level trigger refuses a transfer naming an account that does not exist.
    source = models.ForeignKey(
        Account,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
        verbose_name=_("from account"),
    )
    destination = models.ForeignKey(
        Account,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
        verbose_name=_("to account"),
    )
    amount = models.BigIntegerField(verbose_name=_("amount (in its unit)"))
    unit = models.CharField(max_length=8, verbose_name=_("unit"))
    kind = models.CharField(max_length=40, verbose_name=_("kind"))
    # Exactly-once: a retried operation posts the same key and is refused the second time.
    # unique: see Meta
    idempotency_key = models.CharField(max_length=200, verbose_name=_("idempotency key"))
    memo = models.CharField(max_length=300, blank=True, verbose_name=_("memo"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created"))
    # The balance each bounded account held right after this transfer, as the balance's
    # compare-and-swap returned it in the transfer's own transaction (a running balance the
    # ledger really held, for statements and for the float a sale reports). NULL for hot
    # system accounts (no cached balance) and for transfers recorded before ledger 0006.
    source_balance = models.BigIntegerField(
        null=True, blank=True, verbose_name=_("balance after (from account)")
    )
    destination_balance = models.BigIntegerField(
        null=True, blank=True, verbose_name=_("balance after (to account)")
    )

    class Meta:
        verbose_name = _("transfer")
        verbose_name_plural = _("transfers")
        constraints = [
            models.UniqueConstraint(fields=["idempotency_key"], name="ledger_transfer_key_once"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="ledger_transfer_positive"),
            models.CheckConstraint(
                condition=~Q(source=models.F("destination")), name="ledger_transfer_two_accounts"
            ),
        ]
        indexes = [
            models.Index(fields=["source", "id"]),
            models.Index(fields=["destination", "id"]),
        ]

    def __str__(self) -> str:
        return f"{self.source_id}→{self.destination_id} {self.amount} {self.unit}"


class LedgerAudit(models.Model):
    """The outcome of one audit the worker ran on its schedule (``check-ledger``'s checks in
    one snapshot), kept so that the web processes can report the latest in ``/metrics``.
    Only the newest rows are kept (:data:`simtopup.ledger.audit.KEPT_AUDITS`)."""

    # When the audit's snapshot was taken (its start).
    checked_at = models.DateTimeField(verbose_name=_("checked"))
    ok = models.BooleanField(verbose_name=_("balanced"))
    violations_count = models.PositiveIntegerField(verbose_name=_("problems found"))
    # The first violation lines (at most simtopup.ledger.audit.KEPT_LINES of them).
    violations = models.JSONField(default=list, blank=True, verbose_name=_("problems"))
    accounts = models.BigIntegerField(verbose_name=_("accounts checked"))
    transfers = models.BigIntegerField(verbose_name=_("transfers checked"))
    duration_ms = models.PositiveIntegerField(verbose_name=_("duration (ms)"))

    class Meta:
        verbose_name = _("ledger audit")
        verbose_name_plural = _("ledger audits")

    def __str__(self) -> str:
        return f"{self.checked_at:%Y-%m-%d %H:%M:%S} {self.violations_count} violation(s)"
