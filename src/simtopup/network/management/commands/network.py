"""`simtopup network sync-catalogue [--margin-bps N]`: the wholesale provider's top-up packages
as plans (inactive until the operator turns them on); see network/catalogue.py."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from simtopup.network.adapters import AdapterError, get_adapter
from simtopup.network.catalogue import RateRequired, sync


class Command(BaseCommand):
    help = "The wholesale network provider (SIMTOPUP_NETWORK_ADAPTER)."

    def add_arguments(self, parser: Any) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        catalogue = sub.add_parser(
            "sync-catalogue",
            help="import the provider's top-up packages as plans (new ones inactive)",
        )
        catalogue.add_argument(
            "--margin-bps",
            type=int,
            default=2000,
            help="retail price = net price × rate × (1 + N / 10,000), rounded up"
            " (default 2000: +20 %%)",
        )
        catalogue.add_argument(
            "--currency",
            default=None,
            help="the plans' currency (default SIMTOPUP_CURRENCY)",
        )
        catalogue.add_argument(
            "--rate",
            default=None,
            help="units of the plans' currency per unit of the provider's, e.g. 7.2 (CNY per"
            " USD); required when the two currencies differ",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        margin = options["margin_bps"]
        if not 0 <= margin <= 100_000:
            raise CommandError("--margin-bps: 0 to 100000")
        currency = (options["currency"] or settings.CURRENCY).upper()
        rate = None
        if options["rate"] is not None:
            try:
                rate = Decimal(options["rate"])
            except InvalidOperation:
                rate = None
            if rate is None or not rate.is_finite() or rate <= 0:
                raise CommandError("--rate: a positive number, e.g. 7.2")
        adapter = get_adapter()
        provider = getattr(adapter, "provider", None)
        packages = getattr(adapter, "packages", None)
        if provider is None or packages is None:
            raise CommandError(
                f"SIMTOPUP_NETWORK_ADAPTER={settings.NETWORK_ADAPTER} has no catalogue to sync"
            )
        try:
            listed = packages()
        except AdapterError as exc:
            raise CommandError(f"{provider}: {exc}") from exc
        try:
            result = sync(provider, listed, margin, currency=currency, rate=rate)
        except RateRequired as exc:
            raise CommandError(
                f"{provider} prices in {exc}: give --rate ({currency} per unit of it)"
                f" or --currency {exc}"
            ) from exc
        self.stdout.write(json.dumps({"provider": provider, **result.as_dict()}, indent=2))
