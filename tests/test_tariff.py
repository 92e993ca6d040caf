"""Pay-per-use usage is charged at the tariff in force when the usage started."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.utils import timezone

from simtopup.catalog.models import PaygTariff
from simtopup.ledger.audit import audit
from simtopup.usage.models import UsageRecord
from simtopup.usage.rating import MB, UsageIn, ingest
from tests.support import Actors, post_json


def test_usage_is_charged_at_the_tariff_in_force_when_it_started(actors: Actors, alice) -> None:
    response = post_json(
        alice,
        "/reseller/v1/topups",
        {"device": actors.device.iccid, "plan": "credit-50", "reference": "c"},
    )
    assert response.status_code == 201
    change = timezone.now() - timedelta(hours=1)
    PaygTariff.objects.create(currency="CNY", price_per_mb=25, effective_from=change)  # was 10
    before = change - timedelta(minutes=5)
    after = change + timedelta(minutes=5)
    result = ingest(
        [
            UsageIn(
                "old-tariff", actors.device.iccid, 3 * MB, before, before + timedelta(minutes=1)
            ),
            UsageIn("new-tariff", actors.device.iccid, 3 * MB, after, after + timedelta(minutes=1)),
        ]
    )
    assert (result.accepted, result.duplicates, result.rejected) == (2, 0, [])
    charged = dict(UsageRecord.objects.values_list("record_id", "charged"))
    assert charged == {"old-tariff": 3 * 10, "new-tariff": 3 * 25}
    actors.device.credit_account.refresh_from_db()
    assert actors.device.credit_account.balance == 5000 - 30 - 75
    assert audit() == []


def test_usage_before_any_tariff_uses_the_configured_default(
    actors: Actors, alice, settings
) -> None:
    settings.DEFAULT_PAYG_TARIFF_PER_MB = 7
    post_json(
        alice,
        "/reseller/v1/topups",
        {"device": actors.device.iccid, "plan": "credit-50", "reference": "c"},
    )
    long_ago = datetime(2025, 6, 1, tzinfo=UTC)  # before the actors' tariff (2026-01-01)
    ingest(
        [UsageIn("ancient", actors.device.iccid, MB + 1, long_ago, long_ago + timedelta(minutes=1))]
    )
    assert UsageRecord.objects.get(record_id="ancient").charged == 2 * 7
