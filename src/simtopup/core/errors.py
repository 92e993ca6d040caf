"""Errors the caller can act on, each with a stable machine-readable code.

Domain functions raise :class:`DomainError` (or a subclass); the API turns it into an
RFC 9457 problem document with the same ``code``; the website shows ``message`` on the form.
System failures (a gateway timeout, a database outage) are ordinary exceptions and never
carry a user-facing code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.utils.functional import Promise

if TYPE_CHECKING:
    from django import forms


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


def show_error(
    form: forms.Form,
    exc: DomainError,
    fields: Mapping[str, str | None] | None = None,
    default: str | None = None,
) -> None:
    """Put a domain error next to the field it concerns (or at the top of the form).

    ``fields`` maps the domain's field names to the form's (``None``: the top of the form);
    an error that names no field goes next to ``default`` (if given) or to the top."""
    fields = fields or {}
    placed = False
    for error in exc.errors:
        name = fields.get(error.field, error.field)
        if name is not None and name in form.fields:
            form.add_error(name, str(error.message))
            placed = True
    if not placed:
        form.add_error(default if default in form.fields else None, str(exc.message))
