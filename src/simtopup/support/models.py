"""Customer service: messages people send through the help page's contact form, and the
thread of replies the desk sends back (support/actions.py)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from simtopup.accounts.models import Customer


class ReplyChannel(models.TextChoices):
    PHONE = "phone", pgettext_lazy("choice", "phone")
    EMAIL = "email", pgettext_lazy("choice", "email")


class TicketStatus(models.TextChoices):
    """Where a ticket stands: ``new`` until the desk answers, ``waiting`` on the customer
    after a reply that asks something, ``solved`` when nothing is left to do."""

    NEW = "new", pgettext_lazy("choice", "new")
    WAITING = "waiting", pgettext_lazy("choice", "waiting on customer")
    SOLVED = "solved", pgettext_lazy("choice", "solved")


class SupportTicket(models.Model):
    """One message to customer service, with where to reply (a phone number or an email)."""

    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created"))
    # The logged-in customer who wrote it, if any (visitors may write too).
    customer = models.ForeignKey(
        Customer,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("customer"),
    )
    name = models.CharField(max_length=100, blank=True, verbose_name=_("name"))
    reply_channel = models.CharField(
        max_length=5, choices=ReplyChannel.choices, verbose_name=_("reply by")
    )
    # E.164 phone or lower-cased email
    reply_to = models.CharField(max_length=254, verbose_name=_("reply to"))
    # as typed: not necessarily ours
    device = models.CharField(max_length=64, blank=True, verbose_name=_("data card"))
    message = models.TextField(verbose_name=_("message"))
    language = models.CharField(max_length=10, default="zh-hans", verbose_name=_("language"))
    ip = models.GenericIPAddressField(null=True, blank=True, verbose_name=_("IP address"))
    status = models.CharField(
        max_length=10,
        choices=TicketStatus.choices,
        default=TicketStatus.NEW,
        verbose_name=_("status"),
    )
    # When the operator was emailed about it (null: not configured, or the email failed).
    notified_at = models.DateTimeField(null=True, blank=True, verbose_name=_("notified"))

    class Meta:
        verbose_name = _("support ticket")
        verbose_name_plural = _("support tickets")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "-created_at"])]

    def __str__(self) -> str:
        return f"ticket #{self.pk}"


class Delivery(models.TextChoices):
    PENDING = "pending", pgettext_lazy("choice", "pending")
    DELIVERED = "delivered", pgettext_lazy("choice", "delivered")
    FAILED = "failed", pgettext_lazy("choice", "failed")


class TicketMessage(models.Model):
    """One message of a ticket's thread after the customer's first one (which stays on the
    ticket): a reply by a staff member, sent to ``reply_to`` by email or SMS after the commit,
    its delivery recorded; or a later message from the customer (``staff`` null)."""

    ticket = models.ForeignKey(SupportTicket, on_delete=models.CASCADE, related_name="messages")
    at = models.DateTimeField()
    # The staff member who wrote it; null: the customer wrote it.
    staff = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    # The staff member's user name as it was (kept if the account goes).
    author = models.CharField(max_length=150, blank=True)
    body = models.TextField()
    channel = models.CharField(max_length=5, choices=ReplyChannel.choices)
    delivery = models.CharField(max_length=10, choices=Delivery.choices, default=Delivery.PENDING)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["ticket", "at"])]

    def __str__(self) -> str:
        return f"message {self.pk} of ticket #{self.ticket_id}"

    @property
    def from_customer(self) -> bool:
        return not self.author and self.staff_id is None
