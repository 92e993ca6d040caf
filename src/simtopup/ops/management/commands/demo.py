"""`simtopup demo`: idempotent demo data — plans, tariff, devices, a reseller with its API key
and a portal owner, an operator.

It prints what a newcomer needs in the first hour: the website, the operator login, the
reseller API key and portal login, and three demo cards of different kinds with the proof that
adds each to an account (a card number alone never binds a card); `-v 2` lists every card.
Passwords and PINs are derived from the secret key, so running it again prints the same ones;
a login that exists already keeps its password ("unless you changed it")."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import django_otp
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from stdnum import luhn
from stdnum.iso7064 import mod_97_10

from simtopup.audit.log import cli_actor
from simtopup.backoffice import enrolment
from simtopup.catalog.models import PaygTariff, Plan
from simtopup.devices.binding import hash_pin, pin_matches
from simtopup.devices.inventory import create_device
from simtopup.devices.models import Device
from simtopup.ledger.actions import open_account
from simtopup.ledger.models import AccountKind
from simtopup.ops.checks import installation_notes
from simtopup.resellers.actions import add_member, credit_float, hash_key
from simtopup.resellers.models import ApiKey, MemberRole, Reseller

GB = 1024**3
PORTAL_OWNER = "owner@demo-agent.example"
PLANS = [
    # code, kind, en, zh-Hans, zh-Hant, bytes, hours, price (fen)
    ("day-1g", "daily", "Daily pass 1 GB", "日租卡 1GB", "日租方案 1GB", 1 * GB, 24, 500),
    ("week-5g", "daily", "7-day pass 5 GB", "7天套餐 5GB", "7天方案 5GB", 5 * GB, 7 * 24, 2500),
    (
        "month-20g",
        "monthly",
        "Monthly pass 20 GB",
        "月套餐 20GB",
        "月租方案 20GB",
        20 * GB,
        30 * 24,
        5900,
    ),
    (
        "month-50g",
        "monthly",
        "Monthly pass 50 GB",
        "月套餐 50GB",
        "月租方案 50GB",
        50 * GB,
        30 * 24,
        9900,
    ),
    (
        "credit-20",
        "payg",
        "Pay-per-use credit ¥20",
        "按流量计费 充值¥20",
        "按流量計費 儲值¥20",
        0,
        0,
        2000,
    ),
    (
        "credit-50",
        "payg",
        "Pay-per-use credit ¥50",
        "按流量计费 充值¥50",
        "按流量計費 儲值¥50",
        0,
        0,
        5000,
    ),
    (
        "credit-100",
        "payg",
        "Pay-per-use credit ¥100",
        "按流量计费 充值¥100",
        "按流量計費 儲值¥100",
        0,
        0,
        10000,
    ),
]


def _derived(purpose: str, length: int = 24) -> str:
    return hmac.new(settings.SECRET_KEY.encode(), purpose.encode(), hashlib.sha256).hexdigest()[
        :length
    ]


def demo_iccid(n: int) -> str:
    body = f"898600{n:012d}"  # 18 digits + Luhn = 19
    return body + luhn.calc_check_digit(body)


def demo_eid(n: int) -> str:
    body = f"890490320000000000000{n:09d}"  # 30 digits
    return body + mod_97_10.calc_check_digits(body)


def demo_pin(n: int) -> str:
    """The demo card's binding PIN: 8 digits, as if printed on its packaging."""
    return f"{int(_derived(f'demo-pin-{n}', 16), 16) % 10**8:08d}"


def demo_imei(n: int) -> str:
    body = f"35209900{n:06d}"
    return body + luhn.calc_check_digit(body)


class Command(BaseCommand):
    help = "Load demo data (idempotent): plans, tariff, devices, a demo reseller and an operator login."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--devices", type=int, default=20)

    @transaction.atomic
    def handle(self, *args: Any, devices: int = 20, **options: Any) -> None:
        for order, (code, kind, en, hans, hant, size, hours, price) in enumerate(PLANS):
            Plan.objects.update_or_create(
                code=code,
                defaults={
                    "kind": kind,
                    "name_en": en,
                    "name_zh_hans": hans,
                    "name_zh_hant": hant,
                    "data_bytes": size,
                    "validity_hours": hours,
                    "price": price,
                    "currency": settings.CURRENCY,
                    "active": True,
                    "sort_order": order,
                },
            )
        if not PaygTariff.objects.exists():
            PaygTariff.objects.create(
                currency=settings.CURRENCY,
                price_per_mb=settings.DEFAULT_PAYG_TARIFF_PER_MB,
                effective_from=datetime(2026, 1, 1, tzinfo=UTC),
            )
        cards: list[tuple[Device, str]] = []
        for n in range(1, devices + 1):
            iccid = demo_iccid(n)
            pin = demo_pin(n)
            device = Device.objects.filter(iccid=iccid).first()
            if device is None:
                # Every fourth card a hotspot, every fourth a physical SIM, the rest eSIMs.
                if n % 4 == 2:
                    device = create_device(kind="sim", iccid=iccid, pin=pin)
                elif n % 4 == 0:
                    device = create_device(
                        kind="hotspot",
                        imei=demo_imei(n),
                        iccid=iccid,
                        serial=f"HS-{n:06d}",
                        pin=pin,
                    )
                else:
                    device = create_device(
                        kind="esim",
                        iccid=iccid,
                        eid=demo_eid(n),
                        activation_code=(
                            f"LPA:1$smdp.example.net${_derived(f'match{n}', 16).upper()}"
                        ),
                        pin=pin,
                    )
            elif not pin_matches(device.pin_hash, pin):
                # Made before cards had PINs, or under another secret key.
                device.pin_hash = hash_pin(pin)
                device.save(update_fields=["pin_hash"])
            cards.append((device, pin))
        reseller = Reseller.objects.filter(name="Demo Agent").first()
        if reseller is None:
            account = open_account(
                "reseller:AGDEMO0001:float:" + settings.CURRENCY,
                AccountKind.RESELLER_FLOAT,
                settings.CURRENCY,
            )
            reseller = Reseller.objects.create(
                name="Demo Agent",
                code="AGDEMO0001",
                currency=settings.CURRENCY,
                discount_bps=800,
                float_account=account,
            )
            credit_float(reseller, 100000, "demo float")
        api_key = "sk_demo_" + _derived("demo-reseller-key", 40)
        ApiKey.objects.get_or_create(
            key_hash=hash_key(api_key),
            defaults={"reseller": reseller, "name": "demo", "prefix": api_key[:10]},
        )
        operator_password, operator_created = _login(
            "operator", "operator-password", is_staff=True, is_superuser=True
        )
        owner_password, owner_created = _portal_owner(reseller)
        operator_link = _operator_link()
        self._report(
            api_key,
            operator_password,
            operator_created,
            owner_password,
            owner_created,
            operator_link,
        )
        self._report_cards(cards, all_cards=int(options.get("verbosity", 1)) >= 2)
        for note in installation_notes():
            self.stdout.write(f"  {note}")

    def _report(
        self,
        api_key: str,
        operator_password: str,
        operator_created: bool,
        owner_password: str,
        owner_created: bool,
        operator_link: str,
    ) -> None:
        site = settings.SITE_URL
        self.stdout.write("Demo data ready.")
        self.stdout.write(f"  website:          {site}/")
        self.stdout.write(
            f"  operator console: {site}/admin/  user: operator"
            f"  password: {operator_password}{_unless_changed(operator_created)}"
        )
        if operator_link:
            # The password alone enrols no second factor (SIMTOPUP_STAFF_ENROL_AT_LOGIN off):
            # the operator's authenticator app through a one-time enrolment link.
            self.stdout.write(
                "    second factor: open this one-time enrolment link and scan its QR code"
                f" with an authenticator app: {operator_link}"
            )
        else:
            self.stdout.write(
                "    second factor: the code of the authenticator app enrolled"
                " (a lost phone: `simtopup staff link --email operator`)"
            )
        self.stdout.write(f"  demo reseller API key: {api_key}")
        self.stdout.write(
            f"    try: curl -H 'Authorization: Bearer {api_key}' {site}/reseller/v1/plans"
        )
        self.stdout.write(
            f"  reseller portal:  {site}/agent/login  user: {PORTAL_OWNER}"
            f"  password: {owner_password}{_unless_changed(owner_created)}"
        )
        self.stdout.write(
            "  customers: log in on the website with any phone number or email (the one-time"
            " code is printed in the server's output); payments go through the sandbox"
            f" gateway; API docs: {site}/api/docs"
        )

    def _report_cards(self, cards: list[tuple[Device, str]], *, all_cards: bool) -> None:
        if not cards:
            return
        self.stdout.write(
            "  demo cards: add one on the website (My devices) or with POST /api/v1/devices"
            ' {"device": ID, "proof": PIN}; an eSIM\'s activation code is a proof too'
        )
        if all_cards:
            for device, pin in cards:
                extra = (
                    f"  or activation code {device.activation_code}"
                    if device.activation_code
                    else ""
                )
                self.stdout.write(f"    {device.kind:<8} ICCID {device.iccid}  PIN {pin}{extra}")
            return
        for kind in ("esim", "sim", "hotspot"):
            found = next(((d, pin) for d, pin in cards if d.kind == kind), None)
            if found is None:
                continue
            device, pin = found
            if device.kind == "hotspot" and device.imei:
                self.stdout.write(
                    f"    {device.kind:<8} IMEI {device.imei}  PIN {pin}"
                    f"  (its serial {device.serial} works as the ID too)"
                )
            elif device.activation_code:
                self.stdout.write(
                    f"    {device.kind:<8} ICCID {device.iccid}  PIN {pin}"
                    f"  or activation code {device.activation_code}"
                )
            else:
                self.stdout.write(f"    {device.kind:<8} ICCID {device.iccid}  PIN {pin}")
        self.stdout.write(f"    ({len(cards)} demo cards in all: `simtopup demo -v 2` lists them)")


def _unless_changed(created: bool) -> str:
    return "" if created else " (unless you changed it)"


def _login(username: str, purpose: str, **flags: bool) -> tuple[str, bool]:
    """A login with a password derived from the secret key, set only when it is created."""
    password = _derived(purpose, 16)
    user, created = get_user_model().objects.get_or_create(username=username, defaults=flags)
    if created:
        user.set_password(password)
        user.save(update_fields=["password"])
    return password, created


def _operator_link() -> str:
    """A one-time enrolment link for the demo's operator while they have no authenticator
    yet (each run makes a new one, the earlier ones stop working); empty once enrolled."""
    operator = get_user_model().objects.get(username="operator")
    if django_otp.user_has_device(operator, confirmed=True):
        return ""
    _invite, url = enrolment.new_link(operator, actor=cli_actor())
    return url


def _portal_owner(reseller: Reseller) -> tuple[str, bool]:
    """The demo reseller's portal owner, made once through the portal's own way of adding a
    member; its password is then the derived demo one, kept (no forced change) so that the
    printed password goes on working."""
    password = _derived("reseller-owner-password", 16)
    if get_user_model().objects.filter(username__iexact=PORTAL_OWNER).exists():
        return password, False
    member, _temporary = add_member(reseller, PORTAL_OWNER, MemberRole.OWNER)
    member.user.set_password(password)
    member.user.save(update_fields=["password"])
    member.must_change_password = False
    member.save(update_fields=["must_change_password"])
    return password, True
