"""Chaos: a minute of real load through ``simtopup serve`` — reseller top-ups on shared cards,
customer orders paid through the sandbox gateway, signed usage batches — while a web worker
and the background worker are killed with SIGKILL and PostgreSQL is restarted and crashed;
then every sale, payment and usage record is accounted for (tests/chaos.py says what must
hold). PostgreSQL only: the database it restarts is a private cluster (tests/pgcluster.py),
never the server the suite runs on. ``bench/soak.py`` runs the same for as long as asked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.chaos import Chaos, ClusterDatabase, Fault, Shape
from tests.pgcluster import throwaway_cluster

LOAD_SECONDS = 60
FAULTS = [
    Fault(6, "web_worker"),
    Fault(18, "pg_restart"),  # fast shutdown, 3 s down
    Fault(32, "worker"),
    Fault(40, "pg_crash"),  # SIGKILL to the postmaster, crash recovery
]


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_every_sale_payment_and_usage_record_survives_killed_processes_and_database_restarts(
    tmp_path: Path,
) -> None:
    with throwaway_cluster() as pg, Chaos(tmp_path, ClusterDatabase(pg), Shape(), print) as chaos:
        chaos.setup()
        chaos.run(LOAD_SECONDS, FAULTS)
        chaos.finish()
        counts = chaos.counts()
        print(json.dumps(counts, indent=1, default=str))
        problems = chaos.problems
        report = "\n".join(
            f"[{name}] {line}" for name, lines in problems.items() for line in lines[:25]
        )
        # The run did what it says: enough of every kind, every fault, in-load audits.
        assert counts["topups"]["201"] >= 50, counts
        assert counts["orders_paid"] >= 3, counts
        assert counts["usage_records"] >= 1000, counts
        assert [w.split()[0] for w in counts["windows"]] == [f.kind for f in FAULTS], counts
        assert counts["ledger_runs"].get("clean", 0) >= 2, counts
        assert not problems, f"{report}\n--- serve (tail) ---\n{chaos.serve.tail()}"
