"""The audit log: who did what to which object, when, from where, before → after and why.

Every staff action and every value-moving command writes one :class:`~.models.AuditEntry`
through :func:`simtopup.audit.log.record`, in the same transaction as its effect. The rows are
append-only: the database refuses UPDATE and DELETE (migration 0001).
"""
