"""Writing the audit log: :func:`record` and who the actor is.

``record`` must run inside the transaction of the effect it records, so that the row and the
effect commit together or not at all: an effect committed before its row could lose the row
in a crash, and a row written before an effect that then fails would record what never
happened. Called outside a transaction it refuses (a programming error), except for the
events that have no effect of their own besides being recorded (a failed login), which get
a transaction of their own.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models, transaction
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from simtopup.audit.models import MOVES_VALUE, Action, AuditEntry
from simtopup.core import requestid
from simtopup.core.errors import DomainError
from simtopup.core.http import client_ip

# Events that are their own effect: recorded in a transaction of their own if need be.
STANDALONE = frozenset({Action.STAFF_LOGIN, Action.STAFF_LOGIN_FAILED})
# Never written into before/after: only that they changed.
SECRET_FIELDS = frozenset(
    {"password", "pin_hash", "webhook_secret", "token_hash", "key_hash", "secret_hash"}
)
REDACTED = "[redacted]"
SYSTEM = "system"

type Subject = models.Model | tuple[str, str] | None


def record(
    action: Action | str,
    obj: Subject,
    *,
    actor: str,
    ip: str | None = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    reason: str = "",
    request_id: str = "",
) -> AuditEntry:
    """Write one audit row. ``obj``: the model instance acted on, or ``(object_type,
    object_id)``; ``reason`` is required when the action moves value (``reason_required``).
    ``request_id``: by default the id of the request being served (core/requestid.py)."""
    action = Action(action)
    reason = (reason or "").strip()
    if action in MOVES_VALUE and not reason:
        raise DomainError(
            "reason_required", _("Say why: anything that moves value needs a reason."), 422
        )
    if not actor:
        raise ValueError("an audit entry needs an actor")
    if not connection.in_atomic_block and action not in STANDALONE:
        raise RuntimeError(f"audit {action}: record it inside the transaction of its effect")
    object_type, object_id, object_repr = _subject(obj)
    with transaction.atomic():  # a savepoint inside the effect's transaction
        return AuditEntry.objects.create(
            actor=actor[:200],
            ip=(ip or "")[:45],
            action=action,
            object_type=object_type,
            object_id=object_id,
            object_repr=object_repr,
            before=_json(before),
            after=_json(after),
            reason=reason,
            request_id=(request_id or requestid.current())[:64],
        )


def _subject(obj: Subject) -> tuple[str, str, str]:
    if obj is None:
        return "", "", ""
    if isinstance(obj, tuple):
        return obj[0][:100], str(obj[1])[:64], ""
    meta = obj._meta
    return f"{meta.app_label}.{meta.model_name}", str(obj.pk or "")[:64], str(obj)[:200]


def _json(values: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if values is None:
        return None
    # Through the encoder and back, so what is stored is what a reader gets (decimals and
    # times as text), on SQLite as on PostgreSQL.
    safe: dict[str, Any] = json.loads(json.dumps(dict(values), cls=DjangoJSONEncoder))
    return safe


def snapshot(instance: models.Model, fields: Iterable[str] | None = None) -> dict[str, Any]:
    """The concrete field values of ``instance`` (foreign keys as ids), secrets redacted."""
    names = set(fields) if fields is not None else None
    out: dict[str, Any] = {}
    for field in instance._meta.concrete_fields:
        if names is not None and field.name not in names and field.attname not in names:
            continue
        value = field.value_from_object(instance)
        if field.name in SECRET_FIELDS:
            value = REDACTED if value else ""
        out[field.attname if field.is_relation else field.name] = value
    return json.loads(json.dumps(out, cls=DjangoJSONEncoder, default=str))


def changes(
    before: Mapping[str, Any], after: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Only what differs between two snapshots."""
    keys = [k for k in after if before.get(k) != after.get(k)] + [
        k for k in before if k not in after
    ]
    return {k: before.get(k) for k in keys}, {k: after.get(k) for k in keys}


def staff_actor(user: Any) -> str:
    return f"staff:{user.pk}:{user.get_username()}"


def from_request(request: HttpRequest) -> dict[str, Any]:
    """``actor``, ``ip`` and ``request_id`` of a signed-in staff member's request."""
    user = getattr(request, "user", None)
    actor = staff_actor(user) if user is not None and user.is_authenticated else "anonymous"
    return {
        "actor": actor,
        "ip": client_ip(request),
        "request_id": getattr(request, "request_id", "") or requestid.current(),
    }


def cli_actor() -> str:
    """Who ran a command: ``cli:`` and the operating-system user."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"
