"""The ledger's core invariants (docs/architecture.md: double entry, floors, a sound ledger), proved against an independent model.

A Jepsen-style bank test: a hypothesis state machine funds accounts, moves value between them
(including moves that would break a floor), posts multi-posting batches, replays idempotency
keys and posts malformed batches — and after every step the database must agree with a plain
in-memory model, every unit must sum to zero, and ``check-ledger`` must find nothing.

Each example runs inside its own savepoint, rolled back in ``teardown()``: every example
starts from the same clean ledger (hot system accounts included) while the whole test stays
inside the ``db`` fixture's transaction, which is far cheaper than flushing the database.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from simtopup.ledger.actions import (
    ONE_STATEMENT_FROM,
    InsufficientFunds,
    Leg,
    Posting,
    balance,
    lock_accounts,
    lock_balances,
    open_account,
    post,
    post_legs,
    system_account,
    transfer,
)
from simtopup.ledger.audit import audit
from simtopup.ledger.models import BYTES, Account, AccountKind, Transfer

CNY = "CNY"
UNITS = (CNY, BYTES)
# Hot system accounts the machine moves value through, per unit.
HOT_STEMS = {
    CNY: ("revenue", "float_funding", "adjustments"),
    BYTES: ("data_issued", "data_consumed", "adjustments"),
}
# Bounded accounts: (kind, allow_negative) per unit. Overage is bounded (cached, row-locked)
# but has no floor.
BOUNDED_KINDS = {
    CNY: ((AccountKind.DEVICE_CREDIT, False), (AccountKind.RESELLER_FLOAT, False)),
    BYTES: ((AccountKind.BUNDLE, False), (AccountKind.DEVICE_OVERAGE, True)),
}
REFUSAL_CODES = {
    AccountKind.DEVICE_CREDIT: "insufficient_balance",
    AccountKind.RESELLER_FLOAT: "insufficient_float",
    AccountKind.BUNDLE: "insufficient_funds",
}
# Small sums and huge ones (bytes of data, far beyond 32 bits).
AMOUNTS = st.one_of(st.integers(1, 10_000), st.integers(1, 2**40))


UNIT_TOTALS_SQL = """
SELECT unit, SUM(amount) FROM (
    SELECT unit, balance AS amount FROM ledger_account WHERE NOT hot
    UNION ALL
    SELECT t.unit, t.amount FROM ledger_transfer t
        JOIN ledger_account a ON a.id = t.destination_id WHERE a.hot
    UNION ALL
    SELECT t.unit, -t.amount FROM ledger_transfer t
        JOIN ledger_account a ON a.id = t.source_id WHERE a.hot
) AS balances GROUP BY unit
"""


@dataclass
class Modelled:
    """The model's view of one account: only ever updated from the model's own rules."""

    account: Account
    floor: bool  # may never go below zero
    balance: int = 0

    @property
    def code(self) -> str:
        return self.account.code

    @property
    def unit(self) -> str:
        return self.account.unit

    @property
    def hot(self) -> bool:
        return self.account.hot


@dataclass(frozen=True)
class Move:
    source: Modelled
    destination: Modelled
    amount: int
    key: str

    def posting(self) -> Posting:
        return Posting(self.source.account, self.destination.account, self.amount, "test", self.key)

    def row(self) -> tuple[int, int, int, str]:
        return (self.source.account.pk, self.destination.account.pk, self.amount, self.source.unit)


def post_locked(postings: list[Posting]) -> list[Transfer]:
    """Post as callers do: in one transaction, holding the row locks of the bounded accounts."""
    accounts = [a for p in postings for a in (p.source, p.destination)]
    with transaction.atomic():
        locked = lock_accounts(a.pk for a in accounts)
        assert set(locked) == {a.pk for a in accounts if not a.hot}  # hot: never row-locked
        return post(postings)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # One savepoint per example; teardown() rolls it back.
        self._example = transaction.atomic()
        self._example.__enter__()
        try:
            self._open_ledger()
        except BaseException as exc:
            self._example.__exit__(type(exc), exc, exc.__traceback__)
            raise

    def _open_ledger(self) -> None:
        self.accounts: dict[str, Modelled] = {}
        self.transfers: dict[str, tuple[int, int, int, str]] = {}
        self.serial = 0
        # Accounts the current step moved (or tried to move) value on.
        self.touched: set[str] = set()
        # Whatever already exists must stay exactly as it is.
        self.preexisting = {a.pk: (a.code, a.unit, a.balance) for a in Account.objects.all()}
        self.preexisting_transfers = {
            key: (source, destination, amount, unit)
            for key, source, destination, amount, unit in Transfer.objects.values_list(
                "idempotency_key", "source_id", "destination_id", "amount", "unit"
            )
        }
        for unit in UNITS:
            for stem in HOT_STEMS[unit]:
                account = system_account(stem, unit)
                assert system_account(stem, unit).pk == account.pk  # created once
                assert account.hot
                assert account.allow_negative
                assert account.balance == 0
                self.accounts[account.code] = Modelled(account, floor=False)
                self.touched.add(account.code)
            for kind, allow_negative in BOUNDED_KINDS[unit]:
                self._open(kind, unit, allow_negative=allow_negative)

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self._example.__exit__(None, None, None)

    # --- helpers ----------------------------------------------------------------------------

    def _open(self, kind: AccountKind, unit: str, allow_negative: bool) -> Modelled:
        self.serial += 1
        account = open_account(
            f"test:{kind}:{self.serial}:{unit}", kind, unit, allow_negative=allow_negative
        )
        assert not account.hot
        assert account.balance == 0
        modelled = Modelled(account, floor=not allow_negative)
        self.accounts[account.code] = modelled
        self.touched.add(account.code)
        return modelled

    def _key(self) -> str:
        self.serial += 1
        return f"test:{self.serial}"

    def _codes(self, unit: str, *, hot: bool | None = None, floor: bool | None = None) -> list[str]:
        return sorted(
            code
            for code, a in self.accounts.items()
            if a.unit == unit
            and (hot is None or a.hot == hot)
            and (floor is None or a.floor == floor)
        )

    def _draw(self, data: st.DataObject, codes: list[str], label: str) -> Modelled:
        code = data.draw(st.sampled_from(codes), label=label)
        self.touched.add(code)
        return self.accounts[code]

    def _draw_amount(self, data: st.DataObject, source: Modelled) -> int:
        """Often within the source's balance, often beyond it."""
        within = max(source.balance, 1)
        return data.draw(
            st.one_of(st.integers(1, within), st.integers(within, within + 10_000), AMOUNTS),
            label="amount",
        )

    def _draw_move(self, data: st.DataObject) -> Move:
        unit = data.draw(st.sampled_from(UNITS), label="unit")
        source = self._draw(data, self._codes(unit), "source")
        others = [c for c in self._codes(unit) if c != source.code]
        destination = self._draw(data, others, "destination")
        return Move(source, destination, self._draw_amount(data, source), self._key())

    def _draw_funding(self, data: st.DataObject) -> Move:
        """A move from a hot system account into a bounded account: never refused."""
        unit = data.draw(st.sampled_from(UNITS), label="unit")
        destination = self._draw(data, self._codes(unit, hot=False), "funded")
        source = self._draw(data, self._codes(unit, hot=True), "funder")
        return Move(source, destination, data.draw(AMOUNTS, label="amount"), self._key())

    def _refused_by(self, moves: list[Move]) -> set[str]:
        """The accounts whose floor the batch as a whole would break (model only)."""
        net: dict[str, int] = defaultdict(int)
        for m in moves:
            net[m.source.code] -= m.amount
            net[m.destination.code] += m.amount
        return {
            code
            for code, delta in net.items()
            if self.accounts[code].floor and self.accounts[code].balance + delta < 0
        }

    def _apply(self, moves: list[Move]) -> None:
        for m in moves:
            m.source.balance -= m.amount
            m.destination.balance += m.amount
            self.transfers[m.key] = m.row()

    def _attempt(self, moves: list[Move]) -> None:
        """Post a batch in its own transaction; the model predicts success or refusal."""
        refused_by = self._refused_by(moves)
        if refused_by:
            with pytest.raises(InsufficientFunds) as refused:
                post_locked([m.posting() for m in moves])
            # The transaction rolled back: the model changes nothing either.
            assert refused.value.account.code in refused_by
            assert refused.value.status == 402
            assert refused.value.code == REFUSAL_CODES[AccountKind(refused.value.account.kind)]
            return
        created = post_locked([m.posting() for m in moves])
        assert [
            (t.source_id, t.destination_id, t.amount, t.unit, t.idempotency_key) for t in created
        ] == [(*m.row(), m.key) for m in moves]
        self._apply(moves)

    # --- rules ------------------------------------------------------------------------------

    @precondition(lambda self: len(self.accounts) < 16)
    @rule(data=st.data())
    def open_another_account(self, data: st.DataObject) -> None:
        unit = data.draw(st.sampled_from(UNITS), label="unit")
        kind, allow_negative = data.draw(st.sampled_from(BOUNDED_KINDS[unit]), label="kind")
        self._open(kind, unit, allow_negative=allow_negative)

    @rule(data=st.data())
    def fund(self, data: st.DataObject) -> None:
        move = self._draw_funding(data)
        with transaction.atomic():
            created = transfer(
                move.source.account,
                move.destination.account,
                move.amount,
                kind="fund",
                key=move.key,
            )
        assert (created.source_id, created.destination_id, created.amount, created.unit) == (
            move.row()
        )
        self._apply([move])

    @rule(data=st.data())
    def transfer_between_accounts(self, data: st.DataObject) -> None:
        self._attempt([self._draw_move(data)])

    @rule(data=st.data(), size=st.integers(2, 5))
    def post_a_batch(self, data: st.DataObject, size: int) -> None:
        self._attempt([self._draw_move(data) for _ in range(size)])

    @rule(data=st.data(), size=st.integers(0, 4))
    def post_a_batch_that_breaks_a_floor(self, data: st.DataObject, size: int) -> None:
        moves = [self._draw_move(data) for _ in range(size)]
        unit = data.draw(st.sampled_from(UNITS), label="unit")
        victim = self._draw(data, self._codes(unit, floor=True), "victim")
        others = [c for c in self._codes(unit) if c != victim.code]
        destination = self._draw(data, others, "destination")
        net = sum(
            (m.amount if m.destination is victim else 0) - (m.amount if m.source is victim else 0)
            for m in moves
        )
        amount = max(victim.balance + net, 0) + data.draw(st.integers(1, 10_000), label="beyond")
        overdraw = Move(victim, destination, amount, self._key())
        moves.insert(data.draw(st.integers(0, len(moves)), label="position"), overdraw)
        assert victim.code in self._refused_by(moves)
        self._attempt(moves)

    @precondition(lambda self: self.transfers)
    @rule(data=st.data(), size=st.integers(0, 3))
    def replay_an_idempotency_key(self, data: st.DataObject, size: int) -> None:
        moves = [self._draw_funding(data) for _ in range(size)]
        replay = self._draw_funding(data)
        old_key = data.draw(st.sampled_from(sorted(self.transfers)), label="old key")
        replayed = Move(replay.source, replay.destination, replay.amount, old_key)
        moves.insert(data.draw(st.integers(0, len(moves)), label="position"), replayed)
        with pytest.raises(IntegrityError), transaction.atomic():
            post([m.posting() for m in moves])

    @rule(data=st.data(), size=st.integers(0, 3))
    def post_one_key_twice_in_a_batch(self, data: st.DataObject, size: int) -> None:
        moves = [self._draw_funding(data) for _ in range(size)]
        first, second = self._draw_funding(data), self._draw_funding(data)
        moves.append(first)
        twin = Move(second.source, second.destination, second.amount, first.key)
        moves.insert(data.draw(st.integers(0, len(moves)), label="position"), twin)
        with pytest.raises(IntegrityError), transaction.atomic():
            post([m.posting() for m in moves])

    @rule(
        data=st.data(),
        size=st.integers(0, 3),
        flaw=st.sampled_from(["zero", "negative", "unit mismatch", "same account"]),
    )
    def post_a_batch_with_a_malformed_posting(
        self, data: st.DataObject, size: int, flaw: str
    ) -> None:
        moves = [self._draw_funding(data) for _ in range(size)]
        postings = [m.posting() for m in moves]
        good = self._draw_funding(data)
        source, destination, amount = good.source, good.destination, good.amount
        if flaw == "zero":
            amount = 0
        elif flaw == "negative":
            amount = -amount
        elif flaw == "unit mismatch":
            other = BYTES if destination.unit == CNY else CNY
            destination = self._draw(data, self._codes(other), "foreign")
        else:
            destination = source
        bad = Posting(source.account, destination.account, amount, "test", self._key())
        postings.insert(data.draw(st.integers(0, len(postings)), label="position"), bad)
        with pytest.raises(ValueError), transaction.atomic():
            post(postings)

    # --- invariants -------------------------------------------------------------------------

    @invariant()
    def balances_agree_with_the_model(self) -> None:
        rows = {a.pk: a for a in Account.objects.all()}
        assert set(rows) == set(self.preexisting) | {m.account.pk for m in self.accounts.values()}
        for pk, before in self.preexisting.items():
            assert (rows[pk].code, rows[pk].unit, rows[pk].balance) == before
        for modelled in self.accounts.values():
            row = rows[modelled.account.pk]
            # Bounded accounts cache their balance; hot accounts never do.
            assert row.balance == (0 if row.hot else modelled.balance), row.code
            if modelled.floor:
                assert row.balance >= 0, row.code
        # What callers read. Accounts the step did not touch are pinned by the exact set of
        # transfers (exactly_the_accepted_transfers_exist), so asking only the touched ones
        # keeps the test fast.
        for code in sorted(self.touched):
            assert balance(self.accounts[code].account) == self.accounts[code].balance, code
        self.touched.clear()

    @invariant()
    def every_unit_sums_to_zero(self) -> None:
        model: dict[str, int] = defaultdict(int)
        for modelled in self.accounts.values():
            model[modelled.unit] += modelled.balance
        assert not any(model.values()), model
        # The database, summed independently of the ledger code: cached balances of bounded
        # accounts plus the transfers of hot accounts.
        with connection.cursor() as cursor:
            cursor.execute(UNIT_TOTALS_SQL)
            stored = dict(cursor.fetchall())
        assert not any(stored.values()), stored

    @invariant()
    def exactly_the_accepted_transfers_exist(self) -> None:
        stored = {
            key: (source, destination, amount, unit)
            for key, source, destination, amount, unit in Transfer.objects.values_list(
                "idempotency_key", "source_id", "destination_id", "amount", "unit"
            )
        }
        assert stored == self.preexisting_transfers | self.transfers

    @invariant()
    def check_ledger_is_clean(self) -> None:
        assert audit() == []


@pytest.mark.slow
# A failure is shrunk for up to 5 minutes; let that finish so it reports the minimal example.
@pytest.mark.timeout(900)
def test_the_ledger_agrees_with_an_independent_model(db: None) -> None:
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=50,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


# --- unit tests -----------------------------------------------------------------------------


@pytest.fixture
def card(db: None) -> Account:
    return open_account("test:card:CNY", AccountKind.DEVICE_CREDIT, CNY)


@pytest.fixture
def revenue(db: None) -> Account:
    return system_account("revenue", CNY)


def fund(account: Account, amount: int, key: str = "fund") -> Transfer:
    with transaction.atomic():
        return transfer(
            system_account("adjustments", account.unit), account, amount, kind="fund", key=key
        )


@pytest.mark.parametrize("amount", [0, -1, -(2**40)])
def test_a_transfer_of_zero_or_less_is_refused(
    card: Account, revenue: Account, amount: int
) -> None:
    fund(card, 500)
    with pytest.raises(ValueError, match="positive"), transaction.atomic():
        transfer(card, revenue, amount, kind="test", key="k")
    assert balance(card) == 500
    assert Transfer.objects.filter(idempotency_key="k").count() == 0


def test_a_transfer_between_units_is_refused(card: Account) -> None:
    fund(card, 500)
    data = system_account("data_issued", BYTES)
    bundle = open_account("test:bundle", AccountKind.BUNDLE, BYTES)
    for source, destination in ((card, data), (data, card), (card, bundle)):
        with pytest.raises(ValueError, match="unit mismatch"), transaction.atomic():
            transfer(source, destination, 100, kind="test", key="k")
    assert balance(card) == 500
    assert balance(bundle) == 0
    assert not Transfer.objects.filter(idempotency_key="k").exists()


def test_a_transfer_needs_two_accounts(card: Account) -> None:
    fund(card, 500)
    with pytest.raises(ValueError, match="two different accounts"), transaction.atomic():
        transfer(card, card, 100, kind="test", key="k")
    assert balance(card) == 500


def test_post_refuses_to_run_outside_a_transaction(transactional_db: None) -> None:
    card = open_account("test:card:CNY", AccountKind.DEVICE_CREDIT, CNY)
    revenue = system_account("revenue", CNY)
    assert not connection.in_atomic_block
    with pytest.raises(RuntimeError, match=r"inside transaction\.atomic"):
        post([Posting(revenue, card, 100, "test", "k")])
    assert not Transfer.objects.exists()
    card.refresh_from_db()
    assert card.balance == 0


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        (AccountKind.DEVICE_CREDIT, "insufficient_balance"),
        (AccountKind.RESELLER_FLOAT, "insufficient_float"),
        (AccountKind.BUNDLE, "insufficient_funds"),
    ],
)
def test_a_floor_refuses_the_whole_batch(db: None, kind: AccountKind, code: str) -> None:
    unit = BYTES if kind == AccountKind.BUNDLE else CNY
    poor = open_account("test:poor", kind, unit)
    rich = open_account("test:rich", kind, unit)
    sink = system_account("adjustments", unit)
    fund(poor, 100, "fund-poor")
    fund(rich, 1000, "fund-rich")
    batch = [
        Posting(rich, sink, 600, "test", "a"),  # fine on its own
        Posting(sink, poor, 50, "test", "b"),  # poor now holds 150 within the batch …
        Posting(poor, sink, 151, "test", "c"),  # … and this takes 151
    ]
    with pytest.raises(InsufficientFunds) as refused:
        post_locked(batch)
    assert refused.value.account.pk == poor.pk
    assert (refused.value.code, refused.value.status) == (code, 402)
    assert (balance(poor), balance(rich), balance(sink)) == (100, 1000, -1100)
    assert not Transfer.objects.filter(idempotency_key__in=["a", "b", "c"]).exists()
    # The same batch with exactly enough passes: floors apply to the batch as a whole.
    batch[2] = Posting(poor, sink, 150, "test", "c")
    post_locked(batch)
    assert (balance(poor), balance(rich), balance(sink)) == (0, 400, -400)
    assert audit() == []


def test_an_idempotency_key_moves_value_once(card: Account) -> None:
    fund(card, 500, key="once")
    with pytest.raises(IntegrityError), transaction.atomic():
        fund(card, 500, key="once")
    assert balance(card) == 500
    assert Transfer.objects.filter(idempotency_key="once").count() == 1
    assert audit() == []


def test_an_account_without_a_floor_may_go_negative(db: None) -> None:
    overage = open_account("test:overage", AccountKind.DEVICE_OVERAGE, BYTES, allow_negative=True)
    with transaction.atomic():
        transfer(overage, system_account("data_consumed", BYTES), 2**33, kind="t", key="k")
    assert balance(overage) == -(2**33)
    assert audit() == []


def test_system_accounts_are_known_by_name(db: None) -> None:
    with pytest.raises(ValueError, match="unknown system account"):
        system_account("petty_cash", CNY)
    clearing = system_account("order_clearing", CNY)
    assert (clearing.code, clearing.hot, clearing.clearing) == (
        "system:order_clearing:CNY",
        True,
        True,
    )
    assert system_account("order_clearing", CNY).pk == clearing.pk


def test_transfers_cannot_be_updated(card: Account) -> None:
    row = fund(card, 500)
    attempts = [
        lambda: Transfer.objects.filter(pk=row.pk).update(amount=1),
        lambda: Transfer.objects.filter(pk=row.pk).update(memo="edited"),
        lambda: Transfer(
            pk=row.pk,
            source_id=row.source_id,
            destination_id=row.destination_id,
            amount=1,
            unit=row.unit,
            kind=row.kind,
            idempotency_key=row.idempotency_key,
        ).save(force_update=True),
    ]
    for attempt in attempts:
        with pytest.raises(DatabaseError, match="immutable"), transaction.atomic():
            attempt()
    with (
        pytest.raises(DatabaseError, match="immutable"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE ledger_transfer SET amount = 1 WHERE id = %s", [row.pk])
    stored = Transfer.objects.get(pk=row.pk)
    assert (stored.amount, stored.memo) == (500, "")
    assert audit() == []


def test_transfers_cannot_be_deleted_on_postgresql(card: Account) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite allows DELETE so that Django's test flush can empty the table")
    row = fund(card, 500)
    with pytest.raises(DatabaseError, match="immutable"), transaction.atomic():
        Transfer.objects.filter(pk=row.pk).delete()
    with (
        pytest.raises(DatabaseError, match="immutable"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM ledger_transfer WHERE id = %s", [row.pk])
    assert Transfer.objects.filter(pk=row.pk).exists()
    assert audit() == []


def test_the_database_refuses_non_positive_and_self_transfers(
    card: Account, revenue: Account
) -> None:
    # Transfer.objects.create() bypasses post(): the CHECK constraints are the last line.
    for source, destination, amount in ((revenue, card, 0), (revenue, card, -5), (card, card, 5)):
        with pytest.raises(IntegrityError), transaction.atomic():
            Transfer.objects.create(
                source=source,
                destination=destination,
                amount=amount,
                unit=CNY,
                kind="raw",
                idempotency_key="raw",
            )
    assert not Transfer.objects.exists()


# --- the batch path (post_legs): the same rules as post -------------------------------------


def legs_posted(legs: list[Leg], hot: list[Account]) -> int:
    """post_legs as usage rating calls it: bounded accounts locked first, one transaction."""
    with transaction.atomic():
        held = lock_balances([leg.source for leg in legs] + [leg.destination for leg in legs])
        return post_legs(legs, held, hot)


def test_post_legs_moves_value_and_records_each_leg(card: Account) -> None:
    fund(card, 500)
    other = open_account("test:card2:CNY", AccountKind.DEVICE_CREDIT, CNY)
    sink = system_account("revenue", CNY)
    legs = [
        Leg(card.pk, other.pk, 200, CNY, "test", "l1"),
        Leg(card.pk, sink.pk, 300, CNY, "t", "l2"),
    ]
    assert legs_posted(legs, [sink]) == 2
    assert (balance(card), balance(other), balance(sink)) == (0, 200, 300)
    assert Transfer.objects.get(idempotency_key="l2").source_balance == 0  # balance after it
    assert audit() == []


@pytest.mark.parametrize("amount", [0, -1])
def test_post_legs_refuses_a_non_positive_amount(card: Account, amount: int) -> None:
    fund(card, 500)
    sink = system_account("revenue", CNY)
    with pytest.raises(ValueError, match="positive"):
        legs_posted([Leg(card.pk, sink.pk, amount, CNY, "test", "k")], [sink])
    assert balance(card) == 500
    assert not Transfer.objects.filter(idempotency_key="k").exists()


def test_post_legs_needs_two_accounts(card: Account) -> None:
    fund(card, 500)
    with pytest.raises(ValueError, match="two different accounts"):
        legs_posted([Leg(card.pk, card.pk, 100, CNY, "test", "k")], [])
    assert balance(card) == 500


@pytest.mark.parametrize(
    "case", ["sink not named hot", "bounded account named hot", "leg in another unit", "two units"]
)
def test_post_legs_refuses_accounts_neither_locked_nor_hot_nor_in_the_unit(
    card: Account, case: str
) -> None:
    fund(card, 500)
    sink = system_account("revenue", CNY)
    other = open_account("test:card2:CNY", AccountKind.DEVICE_CREDIT, CNY)
    bundle = open_account("test:bundle", AccountKind.BUNDLE, BYTES)
    leg, locked, hot = {
        "sink not named hot": (Leg(card.pk, sink.pk, 100, CNY, "t", "k"), [card], []),
        # Not hot, so it had to be locked: naming it hot does not make it so.
        "bounded account named hot": (Leg(card.pk, other.pk, 100, CNY, "t", "k"), [card], [other]),
        "leg in another unit": (Leg(card.pk, sink.pk, 100, BYTES, "t", "k"), [card], [sink]),
        "two units": (Leg(card.pk, bundle.pk, 100, CNY, "t", "k"), [card, bundle], []),
    }[case]
    with transaction.atomic():
        held = lock_balances(account.pk for account in locked)
        with pytest.raises(ValueError, match="not locked, hot or in"):
            post_legs([leg], held, hot)
    assert (balance(card), balance(other), balance(bundle), balance(sink)) == (500, 0, 0, 0)
    assert not Transfer.objects.filter(idempotency_key="k").exists()


def test_post_legs_refuses_to_run_outside_a_transaction(transactional_db: None) -> None:
    card = open_account("test:card:CNY", AccountKind.DEVICE_CREDIT, CNY)
    sink = system_account("revenue", CNY)
    with pytest.raises(RuntimeError, match=r"inside transaction\.atomic"):
        post_legs([Leg(sink.pk, card.pk, 100, CNY, "t", "k")], {}, [sink])
    assert not Transfer.objects.exists()


@pytest.mark.parametrize("accounts", [ONE_STATEMENT_FROM, ONE_STATEMENT_FROM + 2])
def test_post_legs_floor_refuses_the_whole_batch_and_exactly_enough_passes(
    db: None, accounts: int
) -> None:
    """Both ways of moving balances: one UPDATE per account (few), one statement (many, the
    floor then being the database's CHECK)."""
    sink = system_account("revenue", CNY)
    cards = [
        open_account(f"test:many:{n}", AccountKind.DEVICE_CREDIT, CNY) for n in range(accounts)
    ]
    for n, account in enumerate(cards):
        fund(account, 100, key=f"fund-{n}")
    poor = cards[accounts // 2]
    legs = [Leg(account.pk, sink.pk, 100, CNY, "t", f"k-{n}") for n, account in enumerate(cards)]
    legs.append(Leg(poor.pk, sink.pk, 1, CNY, "t", "one-too-many"))
    with pytest.raises(InsufficientFunds) as refused:
        legs_posted(legs, [sink])
    assert refused.value.account.id == poor.pk
    assert refused.value.code == "insufficient_balance"
    assert [balance(account) for account in cards] == [100] * accounts
    assert not Transfer.objects.filter(kind="t").exists()
    # Exactly the balance, to zero, is allowed (the floor is balance >= 0, not > 0).
    assert legs_posted(legs[:-1], [sink]) == accounts
    assert [balance(account) for account in cards] == [0] * accounts
    assert balance(sink) == 100 * accounts
    assert audit() == []
