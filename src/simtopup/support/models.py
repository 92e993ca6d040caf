"""Customer service: messages people send through the help page's contact form."""

from __future__ import annotations

from django.db import models

from simtopup.accounts.models import Customer


class ReplyChannel(models.TextChoices):
    PHONE = "phone", "phone"
    EMAIL = "email", "email"


class TicketStatus(models.TextChoices):
    OPEN = "open", "open"
    CLOSED = "closed", "closed"


class SupportTicket(models.Model):
    """One message to customer service, with where to reply (a phone number or an email)."""

    created_at = models.DateTimeField(auto_now_add=True)
    # The logged-in customer who wrote it, if any (visitors may write too).
    customer = models.ForeignKey(
        Customer, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    name = models.CharField(max_length=100, blank=True)
    reply_channel = models.CharField(max_length=5, choices=ReplyChannel.choices)
    reply_to = models.CharField(max_length=254)  # E.164 phone or lower-cased email
    device = models.CharField(max_length=64, blank=True)  # as typed: not necessarily ours
    message = models.TextField()
    language = models.CharField(max_length=10, default="zh-hans")
    ip = models.GenericIPAddressField(null=True, blank=True)
    status = models.CharField(
        max_length=10, choices=TicketStatus.choices, default=TicketStatus.OPEN
    )
    # When the operator was emailed about it (null: not configured, or the email failed).
    notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "-created_at"])]

    def __str__(self) -> str:
        return f"ticket #{self.pk}"
