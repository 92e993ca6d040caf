"""The task bell: on PostgreSQL an idle worker wakes the moment a task is queued.

The worker polls its queue when idle (``--poll``, 0.2 s). A customer's payment crosses the
queue twice before the card is credited (the gateway's notification, then the fulfilment),
so polling alone adds up to two poll intervals to "paid → credited" — most of it under
load, when the queue is looked at least often. On PostgreSQL a trigger on the queue's table
sends ``NOTIFY simtopup_tasks`` whenever a row becomes READY (an enqueue, a retry, a
requeue); the notification is delivered when that transaction commits, so a woken worker
always finds the task. The worker waits on a connection of its own that LISTENs, with the
poll interval as the longest wait (scheduled tasks, ``run_after`` in the future, still need
the poll to come due).

The bell only ever shortens a wait. Any trouble with its connection (a database restart, a
cut connection) closes it and the worker falls back to plain polling, reconnecting at the
next wait; SQLite has no bell and always polls.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

logger = logging.getLogger("simtopup.worker")

CHANNEL = "simtopup_tasks"

INSTALL_SQL = """
CREATE OR REPLACE FUNCTION simtopup_task_ready_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  -- The payload names the queue; identical notifications of one transaction are folded
  -- into one by PostgreSQL, so a batch of enqueues rings once per queue.
  PERFORM pg_notify('simtopup_tasks', NEW.queue_name);
  RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER simtopup_task_ready
  AFTER INSERT OR UPDATE OF status ON {table}
  FOR EACH ROW WHEN (NEW.status = 'READY')
  EXECUTE FUNCTION simtopup_task_ready_notify();
"""


def install(connection: BaseDatabaseWrapper) -> None:
    """(Re)install the queue trigger; after every ``migrate`` (ops/apps.py)."""
    from django_tasks_db.models import DBTaskResult

    table = DBTaskResult._meta.db_table
    if connection.vendor != "postgresql" or table not in connection.introspection.table_names():
        return
    with connection.cursor() as cursor:
        cursor.execute(INSTALL_SQL.format(table=connection.ops.quote_name(table)))


class TaskBell:
    """Waits until a task is queued on one of this worker's queues, or ``timeout`` passes."""

    def __init__(self, *, ignore: frozenset[str] = frozenset(), alias: str = "default") -> None:
        self.ignore = ignore  # queues another loop serves (the main loop leaves webhooks)
        self.alias = alias
        self.enabled = connections[alias].vendor == "postgresql"
        self.conn: Any = None

    def _listen(self) -> Any:
        import psycopg

        params = dict(connections[self.alias].get_connection_params())
        params.pop("cursor_factory", None)
        params.pop("context", None)
        conn = psycopg.connect(**params, autocommit=True)
        conn.execute(f"LISTEN {CHANNEL}")
        return conn

    def wait(self, timeout: float) -> bool:
        """True when woken by a queued task, False when the time ran out (or no bell)."""
        if not self.enabled:
            time.sleep(timeout)
            return False
        deadline = time.monotonic() + timeout
        try:
            if self.conn is None:
                self.conn = self._listen()
            while (left := deadline - time.monotonic()) > 0:
                notes = list(self.conn.notifies(timeout=left, stop_after=1))
                if not notes:
                    return False
                if notes[0].payload not in self.ignore:
                    # What rang while we were busy is answered by the one queue pass to come.
                    for _ in self.conn.notifies(timeout=0):
                        pass
                    return True
            return False
        except Exception as exc:  # a lost connection: poll this time, reconnect next time
            logger.info("task bell: %s; polling until it reconnects", type(exc).__name__)
            self.close()
            time.sleep(max(0.0, deadline - time.monotonic()))
            return False

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception as exc:  # already broken: nothing left to close
                logger.debug("task bell: closing: %s", exc)
            self.conn = None
