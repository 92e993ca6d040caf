"""`simtopup reseller create|credit|suspend|reinstate|list|key`."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from simtopup.core.errors import DomainError
from simtopup.core.money import money, to_minor
from simtopup.ledger.actions import balance
from simtopup.resellers.actions import (
    create_api_key,
    create_reseller,
    credit_float,
    reinstate,
    revoke_api_key,
    suspend,
)
from simtopup.resellers.models import Reseller


class Command(BaseCommand):
    help = "Manage authorised resellers."

    def add_arguments(self, parser: Any) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser(
            "create", help="create a reseller; prints its id and API key (shown once)"
        )
        create.add_argument("--name", required=True)
        create.add_argument(
            "--float", dest="float_amount", default="0", help="initial float, e.g. 1000.00"
        )
        create.add_argument("--currency", default="CNY")
        create.add_argument(
            "--discount", default="0", help="discount off retail, e.g. 0.08 for 8 %%"
        )
        create.add_argument("--webhook-url", default="")
        credit = sub.add_parser("credit", help="add float through the ledger")
        credit.add_argument("id", type=int)
        credit.add_argument("amount")
        credit.add_argument("--reason", required=True)
        for name in ("suspend", "reinstate"):
            p = sub.add_parser(name)
            p.add_argument("id", type=int)
        sub.add_parser("list")
        key = sub.add_parser("key", help="create or revoke API keys")
        key.add_argument("key_action", choices=["create", "revoke"])
        key.add_argument("id", type=int, help="reseller id (create) or key id (revoke)")
        key.add_argument("--name", default="")

    def _reseller(self, pk: int) -> Reseller:
        reseller = Reseller.objects.select_related("float_account").filter(pk=pk).first()
        if reseller is None:
            raise CommandError(f"no reseller with id {pk}")
        return reseller

    def handle(self, *args: Any, action: str, **o: Any) -> None:
        try:
            getattr(self, f"do_{action}")(**o)
        except DomainError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None

    def do_create(
        self, name: str, float_amount: str, currency: str, discount: str, webhook_url: str, **_: Any
    ) -> None:
        currency = currency.upper()
        initial = to_minor(float_amount, currency, allow_zero=True)
        try:
            fraction = float(discount)
        except ValueError:
            raise CommandError("--discount must be a fraction such as 0.08") from None
        if not 0 <= fraction < 1:
            raise CommandError("--discount must be at least 0 and below 1")
        reseller, key = create_reseller(
            name, currency=currency, discount_bps=round(fraction * 10000), initial_float=initial
        )
        if webhook_url:
            import secrets

            Reseller.objects.filter(pk=reseller.pk).update(
                webhook_url=webhook_url, webhook_secret=secrets.token_hex(24)
            )
            reseller.refresh_from_db()
        out = {"id": reseller.pk, "code": reseller.code, "api_key": key}
        if reseller.webhook_secret:
            out["webhook_secret"] = reseller.webhook_secret
        self.stdout.write(json.dumps(out))

    def do_credit(self, id: int, amount: str, reason: str, **_: Any) -> None:
        reseller = self._reseller(id)
        credit_float(reseller, to_minor(amount, reseller.currency), reason)
        self.stdout.write(
            json.dumps(
                {
                    "id": reseller.pk,
                    "float": money(balance(reseller.float_account), reseller.currency),
                }
            )
        )

    def do_suspend(self, id: int, **_: Any) -> None:
        changed = suspend(self._reseller(id))
        self.stdout.write(json.dumps({"id": id, "status": "suspended", "changed": changed}))

    def do_reinstate(self, id: int, **_: Any) -> None:
        changed = reinstate(self._reseller(id))
        self.stdout.write(json.dumps({"id": id, "status": "active", "changed": changed}))

    def do_list(self, **_: Any) -> None:
        for r in Reseller.objects.select_related("float_account").order_by("pk"):
            self.stdout.write(
                json.dumps(
                    {
                        "id": r.pk,
                        "name": r.name,
                        "code": r.code,
                        "status": r.status,
                        "float": money(balance(r.float_account), r.currency),
                    },
                    ensure_ascii=False,
                )
            )

    def do_key(self, key_action: str, id: int, name: str, **_: Any) -> None:
        if key_action == "create":
            api_key, key = create_api_key(self._reseller(id), name)
            self.stdout.write(json.dumps({"key_id": api_key.pk, "api_key": key}))
        else:
            if not revoke_api_key(id):
                raise CommandError(f"no active API key with id {id}")
            self.stdout.write(json.dumps({"key_id": id, "revoked": True}))
