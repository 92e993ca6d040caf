"""Rows of the rules every door shares (core/idempotency.py)."""

from __future__ import annotations

from django.db import models


class IdempotencyRecord(models.Model):
    """A one-time key of a request (API ``Idempotency-Key``, the website's "Pay" button) and,
    once it ran, its answer. The table kept its first name, ``api_idempotencyrecord``, from
    when the model lived in the api app (the PostgreSQL fast path writes it by name)."""

    # Who sent the key: "reseller:12", "customer:5" — keys are scoped to the caller.
    scope = models.CharField(max_length=60)
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    # Null while the first request runs; set, with the body, in the action's transaction.
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True)
    locked_until = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "api_idempotencyrecord"
        constraints = [
            models.UniqueConstraint(fields=["scope", "key"], name="api_idempotency_once")
        ]
        indexes = [models.Index(fields=["created_at"], name="api_idempot_created_d9784e_idx")]

    def __str__(self) -> str:
        return f"{self.scope} {self.key}"
