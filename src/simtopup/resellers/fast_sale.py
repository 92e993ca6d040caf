"""The reseller sale on PostgreSQL in one statement: :func:`simtopup.resellers.actions.sell_topup`
made fast for ``POST /reseller/v1/topups``, which resellers' shop systems call all day.

With the built-in network adapter, a top-up that will succeed runs as **one call of a
PL/pgSQL function in one autocommit statement**: key check, idempotency, device and plan
lookups, wholesale price, order, then for a bundle plan the bundle account, bundle and three
ledger transfers, for a credit (payg) plan the transfers to the card's credit (face value,
discount or surplus) and its balance, then the float's compare-and-swap and the stored
idempotent response — one round trip and one commit, where the general path needs about
twenty statements in two transactions.

The function only ever does the *successful* sale. Whenever anything is not plainly
fine — unknown or revoked key, suspended reseller, a key already used (replay, other body,
still running), unknown device or plan, a card that cannot be topped up, a reference
already used, a float too low, a lost race on a unique constraint — it writes nothing (it
returns ``'!<reason>'`` before its first write, or raises and the statement rolls back),
:func:`sell` logs and counts the reason (:func:`fallback`, ``FastSaleFallback``) and returns
None, and the caller goes on to the general path, which gives the exact answer, error codes
and all. So the general sale stays the single definition of every rule and error; this one
adds no behaviour, only speed, and ``tests/test_fast_sale_differential.py`` holds it to
that: generated sequences of sales through both paths, every row of every table compared.

The API only hooks it in (``api/fast_topup.py``: parse the request, call :func:`sell`,
answer). The SQL is (re)installed after every ``migrate`` (``post_migrate``, see
``resellers/apps.py``), so it always matches this file; its name carries a version so old
code never calls a newer signature. ``SIMTOPUP_FAST_TOPUP=0`` turns it off (SQLite never
uses it).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import iso4217
from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from simtopup.devices.identifiers import MAX_IDENTIFIER_LENGTH, normalise_digits
from simtopup.network.adapters import builtin_adapter_configured
from simtopup.resellers.actions import KEY_PREFIX, hash_key
from simtopup.resellers.models import FastSaleFallback

logger = logging.getLogger(__name__)

FUNCTION = "simtopup_reseller_topup_v3"
_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-/]*")
# Raised by the function to undo its writes and hand the sale to the general path.
FALLBACK_SQLSTATE = "STF01"
# Also handed on: PostgreSQL chose this statement as a deadlock's victim (40P01; e.g. two
# first sales of one new card, a bundle and a credit, each holding a row the other needs) or
# a serialization failure (40001). The statement wrote nothing; the general path answers.
RETRY_SQLSTATES = frozenset({"40P01", "40001"})


def _exponent_case() -> str:
    """``CASE`` over ISO 4217 currencies whose minor unit is not 2 decimals, from the same
    table :func:`simtopup.core.money.exponent` reads."""
    arms = [
        f"WHEN '{c.code}' THEN {int(c.exponent or 0)}"
        for c in iso4217.Currency
        if int(c.exponent or 0) != 2
    ]
    return "CASE p_currency " + " ".join(arms) + " ELSE 2 END"


def _operator_zone_literal() -> str:
    """``DISPLAY_TIME_ZONE`` as a SQL string literal (receipt numbers are dated in the
    operator's zone, like ``orders.actions.receipt_number``); an IANA name, checked, so it
    cannot break out of the literal."""
    name = settings.DISPLAY_TIME_ZONE
    ZoneInfo(name)  # an unknown zone fails the install, not a sale
    if not _ZONE_NAME.fullmatch(name):
        raise ValueError(f"DISPLAY_TIME_ZONE is not an IANA zone name: {name!r}")
    return f"'{name}'"


def sql(order_sequence: str) -> list[str]:
    """The helper functions and the top-up function, as ``CREATE OR REPLACE`` statements.
    ``order_sequence``: the orders id sequence, named once here rather than looked up
    (``pg_get_serial_sequence``) on every sale; every ``migrate`` installs this again."""
    return [
        # stdnum.luhn.calc_check_digit for decimal strings (receipt numbers).
        """
CREATE OR REPLACE FUNCTION simtopup_luhn_check_digit(p_number text) RETURNS int
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
  s int := 0;
  d int;
  dbl boolean := true;
BEGIN
  FOR i IN REVERSE length(p_number)..1 LOOP
    d := ascii(substr(p_number, i, 1)) - 48;
    IF dbl THEN
      d := d * 2;
      IF d > 9 THEN d := d - 9; END IF;
    END IF;
    s := s + d;
    dbl := NOT dbl;
  END LOOP;
  RETURN (10 - s % 10) % 10;
END $$""",
        # simtopup.core.money.exponent and to_decimal_string. Plain expressions and not
        # STRICT, so that PostgreSQL inlines them into the caller (a SQL function it cannot
        # inline is parsed and planned again on every call).
        f"""
CREATE OR REPLACE FUNCTION simtopup_currency_exponent(p_currency text) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT {_exponent_case()}
$$""",
        """
CREATE OR REPLACE FUNCTION simtopup_money(p_minor bigint, p_currency text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT round(
    p_minor::numeric / power(10::numeric, simtopup_currency_exponent(p_currency)),
    simtopup_currency_exponent(p_currency)
  )::text
$$""",
        # simtopup.devices.models.mask (inlined like the two above)
        """
CREATE OR REPLACE FUNCTION simtopup_mask(p_identifier text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN length(p_identifier) <= 8 THEN
      left(p_identifier, 2) || repeat('•', greatest(length(p_identifier) - 4, 1))
      || right(p_identifier, 2)
    ELSE
      left(p_identifier, 4) || repeat('•', length(p_identifier) - 8) || right(p_identifier, 4)
  END
$$""",
        f"""
CREATE OR REPLACE FUNCTION {FUNCTION}(
  p_key_hash text, p_idempotency_key text, p_request_hash text, p_path text,
  p_device text, p_digits text, p_plan text, p_reference text,
  p_now timestamptz, p_lease interval
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  r record;
  d record;
  pl record;
  v_scope text;
  v_amount bigint;
  v_clearing bigint;
  v_revenue bigint;
  v_issued bigint;
  v_discount bigint;
  v_order bigint;
  v_account bigint;
  v_bundle bigint;
  v_balance bigint;
  v_credit bigint;
  v_number text;
  v_receipt text;
  v_at text;
  v_body text;
BEGIN
  -- Reads only, up to the order id: any surprise returns '!<reason>' with nothing written
  -- (the general path answers; the reason is logged and counted).
  SELECT s.id, s.status, s.currency, s.discount_bps, s.float_account_id INTO r
    FROM resellers_apikey k JOIN resellers_reseller s ON s.id = k.reseller_id
   WHERE k.key_hash = p_key_hash AND k.revoked_at IS NULL;
  IF NOT FOUND THEN RETURN '!unknown_key'; END IF;
  IF r.status <> 'active' THEN RETURN '!reseller_suspended'; END IF;
  v_scope := 'reseller:' || r.id;
  IF p_idempotency_key IS NOT NULL AND EXISTS (
    SELECT 1 FROM api_idempotencyrecord WHERE scope = v_scope AND key = p_idempotency_key
  ) THEN
    RETURN '!idempotency_key_seen';
  END IF;
  -- devices.identifiers.find_device: an exact match in inventory, lowest id first.
  SELECT id, status, payg, credit_account_id,
         coalesce(nullif(iccid, ''), nullif(eid, ''), nullif(imei, ''), nullif(serial, ''),
                  'device ' || id) AS shown
    INTO d FROM devices_device
   WHERE serial = p_device
      OR (p_digits IS NOT NULL
          AND (imei = p_digits OR iccid = p_digits OR eid = p_digits OR serial = p_digits))
   ORDER BY id LIMIT 1;
  IF NOT FOUND THEN RETURN '!unknown_device'; END IF;
  IF d.status NOT IN ('in_stock', 'active') THEN RETURN '!device_not_rechargeable'; END IF;
  SELECT id, code, kind, data_bytes, validity_hours, price, currency INTO pl
    FROM catalog_plan WHERE code = p_plan AND active ORDER BY id LIMIT 1;
  IF NOT FOUND OR pl.currency <> r.currency OR pl.price <= 0 THEN RETURN '!unknown_plan'; END IF;
  -- resellers.actions.wholesale_price
  SELECT price INTO v_amount FROM resellers_resellerprice
   WHERE reseller_id = r.id AND plan_id = pl.id;
  IF NOT FOUND THEN
    v_amount := greatest(1, (pl.price * (10000 - r.discount_bps) + 5000) / 10000);
  END IF;
  IF (SELECT balance < v_amount AND NOT allow_negative
        FROM ledger_account WHERE id = r.float_account_id) THEN
    RETURN '!insufficient_float';
  END IF;
  IF EXISTS (SELECT 1 FROM orders_order WHERE reseller_id = r.id AND reference = p_reference)
  THEN
    RETURN '!duplicate_reference';
  END IF;
  SELECT id INTO v_clearing FROM ledger_account
   WHERE code = 'system:order_clearing:' || r.currency;
  SELECT id INTO v_revenue FROM ledger_account WHERE code = 'system:revenue:' || r.currency;
  SELECT id INTO v_issued FROM ledger_account WHERE code = 'system:data_issued:BYTES';
  IF v_clearing IS NULL OR v_revenue IS NULL OR v_issued IS NULL THEN
    RETURN '!system_account_missing';
  END IF;
  IF pl.kind = 'payg' THEN
    -- Credit lands on the card's credit account, which must hold the plan's currency.
    SELECT id INTO v_discount FROM ledger_account
     WHERE code = 'system:reseller_discount:' || r.currency;
    IF v_discount IS NULL OR NOT EXISTS (
      SELECT 1 FROM ledger_account
       WHERE id = d.credit_account_id AND unit = pl.currency AND NOT hot
    ) THEN
      RETURN '!credit_account_unusable';
    END IF;
  END IF;

  -- Writes. None of these tables has a foreign-key constraint left to check (core/integrity.py
  -- checks references as rows go in), so COMMIT, with the float locked, checks nothing.
  -- The lock order of every sale (orders/locking.py): the card's row first when this sale
  -- changes it, then a credit sale's two accounts in primary-key order; the float is
  -- debited last.
  IF d.status = 'in_stock' THEN
    UPDATE devices_device SET status = 'active', activated_at = p_now
     WHERE id = d.id AND status = 'in_stock';
  END IF;
  IF pl.kind = 'payg' AND NOT d.payg THEN
    UPDATE devices_device SET payg = true WHERE id = d.id AND NOT payg;
  END IF;
  -- orders.actions.receipt_number: R<yyyymmdd in the operator's zone>-<id, 8 digits at
  -- least>-<Luhn>
  v_order := nextval('{order_sequence}'::regclass);
  v_number := to_char(p_now AT TIME ZONE {_operator_zone_literal()}, 'YYYYMMDD')
              || CASE WHEN v_order < 10000000 THEN lpad(v_order::text, 8, '0')
                      ELSE v_order::text END;
  v_receipt := 'R' || left(v_number, 8) || '-' || substr(v_number, 9) || '-'
               || simtopup_luhn_check_digit(v_number);
  -- resellers.actions.place_reseller_topup (orders.actions.create_order) + orders.actions.complete:
  -- paid and fulfilled at once.
  INSERT INTO orders_order (
    id, channel, status, reference, amount, retail_amount, currency, receipt_no, attempts,
    failure_code, failure_detail, payment_method, created_at, paid_at, fulfilled_at,
    closed_at, device_id, plan_id, reseller_id
  ) VALUES (
    v_order, 'reseller', 'fulfilled', p_reference, v_amount, pl.price, pl.currency, v_receipt,
    0, '', '', '', p_now, p_now, p_now, p_now, d.id, pl.id, r.id
  );
  IF pl.kind = 'payg' THEN
    -- orders.actions.complete for credit: the card gets the plan's face value; a wholesale
    -- price below it is the operator's discount, one above it revenue.
    PERFORM 1 FROM ledger_account
      WHERE id IN (r.float_account_id, d.credit_account_id) ORDER BY id FOR UPDATE;
    UPDATE ledger_account SET balance = balance + pl.price WHERE id = d.credit_account_id
    RETURNING balance INTO v_credit;
  ELSE
    -- usage.bundles.open_bundle, its account opened with the granted bytes in it.
    INSERT INTO ledger_account (
      code, kind, unit, balance, allow_negative, hot, clearing, name, created_at
    ) VALUES (
      'bundle:order:' || v_order, 'bundle', 'BYTES', pl.data_bytes, false, false, false, '',
      p_now
    ) RETURNING id INTO v_account;
    INSERT INTO usage_bundle (
      granted_bytes, starts_at, expires_at, created_at, account_id, device_id, order_id, plan_id
    ) VALUES (
      pl.data_bytes, p_now, p_now + make_interval(hours => pl.validity_hours), p_now, v_account,
      d.id, v_order, pl.id
    ) RETURNING id INTO v_bundle;
  END IF;
  -- The float last: its row lock, which every sale of this reseller queues on, is held
  -- only until COMMIT (a credit sale locked it above). A floor refused here undoes
  -- everything above. Its RETURNING is the float this sale reports (and records).
  UPDATE ledger_account SET balance = balance - v_amount
   WHERE id = r.float_account_id AND (allow_negative OR balance >= v_amount)
  RETURNING balance INTO v_balance;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'float too low' USING ERRCODE = '{FALLBACK_SQLSTATE}';
  END IF;
  -- The transfers, each with the balances its bounded accounts held right after it
  -- (ledger.actions.balances_after: hot accounts NULL); in the general path's order.
  IF pl.kind = 'payg' THEN
    INSERT INTO ledger_transfer (
      amount, unit, kind, idempotency_key, memo, created_at, source_id, destination_id,
      source_balance, destination_balance
    )
    SELECT t.amount, pl.currency, t.kind, 'order:' || v_order || t.suffix, t.memo, p_now,
           t.source, t.destination, t.source_balance, t.destination_balance
      FROM (VALUES
        (least(v_amount, pl.price), 'credit_topup', ':credit', '', v_clearing,
         d.credit_account_id, NULL::bigint, v_credit - greatest(pl.price - v_amount, 0)),
        (v_amount - pl.price, 'revenue', ':revenue', '', v_clearing, v_revenue, NULL, NULL),
        (pl.price - v_amount, 'reseller_discount', ':discount', '', v_discount,
         d.credit_account_id, NULL, v_credit),
        (v_amount, 'order_payment', ':pay', 'order ' || v_order, r.float_account_id,
         v_clearing, v_balance, NULL)
      ) AS t (amount, kind, suffix, memo, source, destination, source_balance,
              destination_balance)
     WHERE t.amount > 0;
  ELSE
    INSERT INTO ledger_transfer (
      amount, unit, kind, idempotency_key, memo, created_at, source_id, destination_id,
      source_balance, destination_balance
    ) VALUES
      (v_amount, pl.currency, 'revenue', 'order:' || v_order || ':revenue', '', p_now,
       v_clearing, v_revenue, NULL, NULL),
      (pl.data_bytes, 'BYTES', 'bundle_grant', 'order:' || v_order || ':grant',
       'bundle ' || v_bundle || ' for order ' || v_order, p_now, v_issued, v_account, NULL,
       pl.data_bytes),
      (v_amount, pl.currency, 'order_payment', 'order:' || v_order || ':pay',
       'order ' || v_order, p_now, r.float_account_id, v_clearing, v_balance, NULL);
  END IF;
  -- resellers.bodies.topup_body: the API's answer, stored and replayed as it is.
  v_at := to_char(p_now AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"');
  v_body := json_build_object(
    'id', v_order,
    'status', 'fulfilled',
    'reference', p_reference,
    'device', simtopup_mask(d.shown),
    'plan', pl.code,
    'charged', json_build_object(
      'amount', simtopup_money(v_amount, pl.currency), 'currency', pl.currency),
    'float_balance', json_build_object(
      'amount', simtopup_money(v_balance, r.currency), 'currency', r.currency),
    'receipt_no', v_receipt,
    'created_at', v_at,
    'fulfilled_at', v_at,
    'failure_code', NULL
  )::text;
  -- core.idempotency.claim + store: the key and its response, in the sale's own transaction. A duplicate
  -- racing us makes this a unique violation: all is undone, the general path replays.
  IF p_idempotency_key IS NOT NULL THEN
    INSERT INTO api_idempotencyrecord (
      scope, key, method, path, request_hash, response_status, response_body, locked_until,
      created_at
    ) VALUES (
      v_scope, p_idempotency_key, 'POST', left(p_path, 255), p_request_hash, 201, v_body,
      p_now + p_lease, p_now
    );
  END IF;
  RETURN v_body;
END $$""",
    ]


def install(using: BaseDatabaseWrapper) -> None:
    """Create or replace the functions (PostgreSQL only; run after every migrate)."""
    if using.vendor != "postgresql":
        return
    with using.cursor() as cursor:
        cursor.execute("SELECT pg_get_serial_sequence('orders_order', 'id')")
        row = cursor.fetchone()
        if row is None or row[0] is None:
            raise RuntimeError("orders_order.id has no sequence: run the migrations first")
        for statement in sql(str(row[0]).replace("'", "''")):
            cursor.execute(statement)
        # Earlier versions of the function, which no code of this version calls.
        cursor.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p "
            "WHERE p.proname LIKE 'simtopup\\_reseller\\_topup\\_v%%' AND p.proname <> %s",
            [FUNCTION],
        )
        for (signature,) in cursor.fetchall():
            cursor.execute(f"DROP FUNCTION IF EXISTS {signature}")


def enabled() -> bool:
    """Whether sales may take this path: PostgreSQL, the setting on, and the built-in network
    adapter (which grants at once; another adapter fulfils later, through the general path)."""
    return (
        settings.FAST_TOPUP and connection.vendor == "postgresql" and builtin_adapter_configured()
    )


@dataclass(frozen=True)
class Sale:
    """One top-up as the reseller asked for it: its bearer key and the three fields,
    stripped as the API's schema strips them. With an ``idempotency_key``, ``fingerprint``
    is :func:`simtopup.core.idempotency.fingerprint` of the request and ``path`` its path,
    stored with the answer as the general path stores them."""

    api_key: str
    device: str
    plan: str
    reference: str
    idempotency_key: str | None = None
    fingerprint: str = ""
    path: str = ""


def sell(sale: Sale, now: datetime | None = None) -> str | None:
    """The whole sale in one statement: its answer (the API's 201 body, as JSON text, also
    stored under the idempotency key), or None: then nothing was written, the reason is
    logged and counted (:func:`fallback`), and the general path must answer."""
    answer, reason = _sell(sale, now or timezone.now())
    if answer is None:
        fallback(reason)
    return answer


def fallback(reason: str) -> None:
    """Log and count one hand-over to the general path (``/metrics``:
    ``simtopup_fast_path_fallbacks_total{reason=…}``). One autocommit upsert; a failure to
    count never stops the sale."""
    logger.info("fast top-up path: handed to the general path (%s)", reason)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {FastSaleFallback._meta.db_table} (reason, count, last_at) "
                "VALUES (%s, 1, %s) ON CONFLICT (reason) "
                "DO UPDATE SET count = excluded.count + "
                f"{FastSaleFallback._meta.db_table}.count, last_at = excluded.last_at",
                [reason[:40], timezone.now()],
            )
    except DatabaseError:
        logger.warning("fast top-up path: could not count a fallback (%s)", reason)


def _sell(sale: Sale, now: datetime) -> tuple[str | None, str]:
    if not sale.api_key.startswith(KEY_PREFIX) or len(sale.api_key) > 200:
        return None, "request_shape"
    if len(sale.device) > MAX_IDENTIFIER_LENGTH * 2:
        return None, "request_shape"
    digits = normalise_digits(sale.device)
    params = [
        hash_key(sale.api_key),
        sale.idempotency_key,
        sale.fingerprint if sale.idempotency_key is not None else "",
        sale.path,
        sale.device,
        digits if digits.isdigit() else None,
        sale.plan,
        sale.reference,
        now,
        timedelta(seconds=settings.IDEMPOTENCY_LEASE_SECONDS),
    ]
    try:
        if connection.in_atomic_block:
            # Inside a caller's transaction (ATOMIC_REQUESTS, tests): a savepoint, so a
            # refusal undoes only this.
            with transaction.atomic():
                row = _call(params)
        else:
            row = _call(params)  # autocommit: one statement, one transaction, one commit
    except IntegrityError:
        # A duplicate won a race on a unique key; the general path answers it.
        return None, "unique_race"
    except DatabaseError as exc:
        sqlstate = getattr(exc.__cause__, "sqlstate", None)
        if sqlstate == FALLBACK_SQLSTATE:
            return None, "float_race"
        if sqlstate in RETRY_SQLSTATES:
            return None, "lock_conflict"
        raise
    if row is None or row[0] is None:
        return None, "no_answer"
    if row[0].startswith("!"):
        return None, row[0][1:]
    return row[0], ""


def _call(params: list[Any]) -> tuple[Any, ...] | None:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {FUNCTION}({', '.join(['%s'] * len(params))})", params)
        return cursor.fetchone()
