"""Errors the caller can act on, each with a stable machine-readable code.

Domain functions raise :class:`DomainError` (or a subclass); the API turns it into an
RFC 9457 problem document with the same ``code``; the website shows ``message`` on the form.
System failures (a gateway timeout, a database outage) are ordinary exceptions and never
carry a user-facing code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.utils.functional import Promise


@dataclass
class FieldError:
    field: str
    code: str
    message: str | Promise


@dataclass
class DomainError(Exception):
    code: str
    message: str | Promise
    status: int = 422
    errors: list[FieldError] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def field_error(
    code: str,
    message: str | Promise,
    field: str,
    status: int = 422,
    headers: dict[str, str] | None = None,
) -> DomainError:
    """A refusal of one input field: the problem and the field carry the same code and
    message (the API lists it under ``errors``, the website shows it next to the field)."""
    return DomainError(
        code, message, status, errors=[FieldError(field, code, message)], headers=headers or {}
    )
