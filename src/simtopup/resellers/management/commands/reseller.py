"""`simtopup reseller create|credit|deposit|suspend|reinstate|list|key|oauth|staff`.

Every command that changes something writes one audit row (actor ``cli:<os user>``) in the
same transaction as its change (audit/log.py).
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from simtopup.audit.log import cli_actor, record
from simtopup.audit.models import Action
from simtopup.core.errors import DomainError
from simtopup.core.money import money, to_decimal_string, to_minor
from simtopup.ledger.actions import balance
from simtopup.resellers.actions import (
    add_member,
    create_api_key,
    create_reseller,
    credit_float,
    record_deposit,
    reinstate,
    reset_member_password,
    revoke_api_key,
    set_webhook,
    suspend,
    validate_webhook_url,
)
from simtopup.resellers.models import MemberRole, PartnerCredential, Reseller, ResellerMember
from simtopup.resellers.partner_access import create_credential, revoke_credential


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
        create.add_argument(
            "--webhook-url",
            default="",
            help="where top-up events are sent: https, on a public address"
            " (SIMTOPUP_WEBHOOK_ALLOW_PRIVATE=1 also allows http and private addresses)",
        )
        credit = sub.add_parser("credit", help="add float through the ledger")
        credit.add_argument("id", type=int)
        credit.add_argument("amount")
        credit.add_argument("--reason", required=True)
        deposit = sub.add_parser(
            "deposit",
            help="record a reseller's bank deposit and credit its float by it "
            "(once per bank reference)",
        )
        deposit.add_argument("--agent-code", required=True, help="the reseller's agent code")
        deposit.add_argument("--amount", required=True, help="e.g. 1000.00")
        deposit.add_argument("--bank-reference", required=True, help="the bank's reference")
        deposit.add_argument(
            "--received-on", required=True, help="the day the bank received it, YYYY-MM-DD"
        )
        deposit.add_argument("--reason", required=True)
        for name in ("suspend", "reinstate"):
            p = sub.add_parser(name)
            p.add_argument("id", type=int)
        sub.add_parser("list")
        key = sub.add_parser("key", help="create or revoke API keys")
        key.add_argument("key_action", choices=["create", "revoke"])
        key.add_argument("id", type=int, help="reseller id (create) or key id (revoke)")
        key.add_argument("--name", default="")
        oauth = sub.add_parser(
            "oauth",
            help="client credentials of the Airalo-compatible partner API (/partner/v2/): "
            "create one (prints client_id and client_secret, the secret shown once), "
            "revoke one, list them",
        )
        oauth.add_argument("oauth_action", choices=["create", "revoke", "list"])
        oauth.add_argument(
            "target", nargs="?", default="", help="reseller id (create, list) or client_id (revoke)"
        )
        staff = sub.add_parser(
            "staff",
            help="reseller portal logins: add one (prints a temporary password, shown once), "
            "reset a forgotten password, list them",
        )
        staff.add_argument("staff_action", choices=["add", "password", "list"])
        staff.add_argument(
            "id", nargs="?", type=int, help="reseller id (add, list; list without: everyone)"
        )
        staff.add_argument("--email", default="", help="the person's email (their user name)")
        staff.add_argument("--role", default=MemberRole.CLERK, choices=MemberRole.values)

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
        # The webhook rule (https, public addresses) before anything is made.
        webhook_url = validate_webhook_url(webhook_url)
        with transaction.atomic():
            reseller, key = create_reseller(
                name, currency=currency, discount_bps=round(fraction * 10000), initial_float=initial
            )
            if webhook_url:
                set_webhook(reseller, webhook_url)
            record(
                Action.RESELLER_CREATE,
                reseller,
                actor=cli_actor(),
                after={
                    "name": reseller.name,
                    "code": reseller.code,
                    "currency": currency,
                    "discount_bps": reseller.discount_bps,
                    "float": to_decimal_string(initial, currency),
                    "webhook_url": webhook_url,
                },
            )
        out = {"id": reseller.pk, "code": reseller.code, "api_key": key}
        if reseller.webhook_secret:
            out["webhook_secret"] = reseller.webhook_secret
        self.stdout.write(json.dumps(out))

    def do_credit(self, id: int, amount: str, reason: str, **_: Any) -> None:
        reseller = self._reseller(id)
        minor = to_minor(amount, reseller.currency)
        with transaction.atomic():
            before = balance(reseller.float_account)
            transfer = credit_float(reseller, minor, reason)
            record(
                Action.RESELLER_CREDIT,
                reseller,
                actor=cli_actor(),
                before={"float": to_decimal_string(before, reseller.currency)},
                after={
                    "float": to_decimal_string(balance(reseller.float_account), reseller.currency),
                    "credited": to_decimal_string(minor, reseller.currency),
                    "transfer": transfer.pk,
                },
                reason=reason,
            )
        self.stdout.write(
            json.dumps(
                {
                    "id": reseller.pk,
                    "float": money(balance(reseller.float_account), reseller.currency),
                }
            )
        )

    def do_deposit(
        self,
        agent_code: str,
        amount: str,
        bank_reference: str,
        received_on: str,
        reason: str,
        **_: Any,
    ) -> None:
        reseller = (
            Reseller.objects.select_related("float_account")
            .filter(code=agent_code.strip().upper())
            .first()
        )
        if reseller is None:
            raise CommandError(f"no reseller with agent code {agent_code!r}")
        try:
            day = date.fromisoformat(received_on.strip())
        except ValueError:
            raise CommandError("--received-on must be a date such as 2026-12-03") from None
        minor = to_minor(amount, reseller.currency)
        deposit = record_deposit(
            reseller, minor, bank_reference, day, actor=cli_actor(), reason=reason
        )
        self.stdout.write(
            json.dumps(
                {
                    "id": reseller.pk,
                    "code": reseller.code,
                    "deposit": deposit.pk,
                    "bank_reference": deposit.bank_reference,
                    "deposited": money(minor, reseller.currency),
                    "float": money(balance(reseller.float_account), reseller.currency),
                },
                ensure_ascii=False,
            )
        )

    def do_suspend(self, id: int, **_: Any) -> None:
        reseller = self._reseller(id)
        with transaction.atomic():
            changed = suspend(reseller)
            if changed:
                record(
                    Action.RESELLER_SUSPEND,
                    reseller,
                    actor=cli_actor(),
                    before={"status": "active"},
                    after={"status": "suspended"},
                )
        self.stdout.write(json.dumps({"id": id, "status": "suspended", "changed": changed}))

    def do_reinstate(self, id: int, **_: Any) -> None:
        reseller = self._reseller(id)
        with transaction.atomic():
            changed = reinstate(reseller)
            if changed:
                record(
                    Action.RESELLER_REINSTATE,
                    reseller,
                    actor=cli_actor(),
                    before={"status": "suspended"},
                    after={"status": "active"},
                )
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
            reseller = self._reseller(id)
            with transaction.atomic():
                api_key, key = create_api_key(reseller, name)
                record(
                    Action.API_KEY_CREATE,
                    api_key,
                    actor=cli_actor(),
                    after={"reseller_id": reseller.pk, "name": name, "prefix": api_key.prefix},
                )
            self.stdout.write(json.dumps({"key_id": api_key.pk, "api_key": key}))
        else:
            with transaction.atomic():
                revoked = revoke_api_key(id)
                if revoked:
                    record(
                        Action.API_KEY_REVOKE,
                        ("resellers.apikey", str(id)),
                        actor=cli_actor(),
                        before={"revoked": False},
                        after={"revoked": True},
                    )
            if not revoked:
                raise CommandError(f"no active API key with id {id}")
            self.stdout.write(json.dumps({"key_id": id, "revoked": True}))

    def do_oauth(self, oauth_action: str, target: str, **_: Any) -> None:
        actor = _actor()
        if oauth_action == "revoke":
            with transaction.atomic():
                revoked = bool(target) and revoke_credential(target, actor)
                if revoked:
                    record(
                        Action.PARTNER_CREDENTIAL_REVOKE,
                        ("resellers.partnercredential", target),
                        actor=actor,
                        before={"revoked": False},
                        after={"revoked": True},
                    )
            if not revoked:
                raise CommandError(f"no active partner credential with client_id {target!r}")
            self.stdout.write(json.dumps({"client_id": target, "revoked": True}))
            return
        if oauth_action == "list":
            rows = PartnerCredential.objects.order_by("pk")
            if target:
                rows = rows.filter(reseller_id=_reseller_id(target))
            for c in rows:
                self.stdout.write(
                    json.dumps(
                        {
                            "reseller_id": c.reseller_id,
                            "client_id": c.client_id,
                            "created_at": c.created_at.isoformat(),
                            "created_by": c.created_by,
                            "revoked_at": c.revoked_at.isoformat() if c.revoked_at else None,
                            "revoked_by": c.revoked_by or None,
                        }
                    )
                )
            return
        if not target:
            raise CommandError("give the reseller id")
        reseller = self._reseller(_reseller_id(target))
        with transaction.atomic():
            made = create_credential(reseller, actor)
            record(
                Action.PARTNER_CREDENTIAL_CREATE,
                ("resellers.partnercredential", made.client_id),
                actor=actor,
                after={"reseller_id": reseller.pk, "client_id": made.client_id},
            )
        self.stdout.write(
            json.dumps({"client_id": made.client_id, "client_secret": made.client_secret})
        )

    def do_staff(self, staff_action: str, id: int | None, email: str, role: str, **_: Any) -> None:
        from urllib.parse import urljoin

        from django.conf import settings
        from django.urls import reverse

        login_url = urljoin(settings.SITE_URL, reverse("web:agent-login"))
        if staff_action == "list":
            members = ResellerMember.objects.select_related("user").order_by("reseller_id", "pk")
            if id is not None:
                members = members.filter(reseller_id=id)
            for m in members:
                self.stdout.write(
                    json.dumps(
                        {
                            "reseller_id": m.reseller_id,
                            "email": m.user.username,
                            "role": m.role,
                            "active": m.user.is_active,
                            "last_login": m.user.last_login.isoformat()
                            if m.user.last_login
                            else None,
                        }
                    )
                )
            return
        if not email:
            raise CommandError("--email is required")
        if staff_action == "add":
            if id is None:
                raise CommandError("give the reseller id")
            reseller = self._reseller(id)
            with transaction.atomic():
                member, password = add_member(reseller, email, role)
                record(
                    Action.RESELLER_STAFF_ADD,
                    member,
                    actor=cli_actor(),
                    after={"reseller_id": reseller.pk, "email": member.user.username, "role": role},
                )
        else:
            found = (
                ResellerMember.objects.select_related("user")
                .filter(user__username__iexact=email.strip())
                .first()
            )
            if found is None:
                raise CommandError(f"no reseller staff member {email}")
            with transaction.atomic():
                member, password = found, reset_member_password(found)
                record(
                    Action.RESELLER_STAFF_PASSWORD,
                    member,
                    actor=cli_actor(),
                    after={"email": member.user.username, "password": "[redacted]"},
                )
        self.stdout.write(
            json.dumps(
                {
                    "reseller_id": member.reseller_id,
                    "email": member.user.username,
                    "role": member.role,
                    "temporary_password": password,
                    "login_url": login_url,
                    "note": "shown once; a new password must be chosen at the first login",
                }
            )
        )


def _reseller_id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise CommandError(f"a reseller id is a number, not {text!r}") from None


def _actor() -> str:
    """Who ran the command, for the audit: the operating-system user."""
    return cli_actor()
