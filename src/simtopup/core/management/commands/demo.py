"""`simtopup demo`: idempotent demo data — plans, tariff, devices, a reseller, an operator.

Each demo card gets a binding PIN (derived from the secret key, so running the command again
prints the same PINs) and the command prints every card's device ID with the proof that adds
it to an account: a card number alone never binds a card."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from stdnum import luhn
from stdnum.iso7064 import mod_97_10

from simtopup.catalog.models import PaygTariff, Plan
from simtopup.core.checks import installation_notes
from simtopup.devices.binding import hash_pin, pin_matches
from simtopup.devices.inventory import create_device
from simtopup.devices.models import Device
from simtopup.ledger.actions import open_account
from simtopup.ledger.models import AccountKind
from simtopup.resellers.actions import credit_float, hash_key
from simtopup.resellers.models import ApiKey, Reseller

GB = 1024**3
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
                if n % 4 == 0:
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
        User = get_user_model()
        password = _derived("operator-password", 16)
        user, created = User.objects.get_or_create(
            username="operator", defaults={"is_staff": True, "is_superuser": True}
        )
        if created:
            user.set_password(password)
            user.save(update_fields=["password"])
        self.stdout.write("Demo data ready.")
        note = "" if created else " (unless you changed it)"
        self.stdout.write(
            f"  operator console: {settings.SITE_URL}/admin/  user: operator  password: {password}{note}"
        )
        self.stdout.write(f"  demo reseller API key: {api_key}")
        self.stdout.write(
            f"  try: curl -H 'Authorization: Bearer {api_key}' {settings.SITE_URL}/reseller/v1/plans"
        )
        self.stdout.write(
            "  customers: log in on the website or POST /api/v1/auth/code with any phone number"
            " or email; the one-time code is printed in the server's output; payments go"
            f" through the sandbox gateway (API docs: {settings.SITE_URL}/api/docs)"
        )
        if cards:
            self.stdout.write(
                "  demo cards: add one to an account on the website (My devices) or with"
                ' POST /api/v1/devices {"device": ICCID, "proof": PIN}; the PIN is what is'
                " printed with a card (an eSIM's activation code works too)"
            )
        for device, pin in cards:
            extra = (
                f"  or activation code {device.activation_code}" if device.activation_code else ""
            )
            self.stdout.write(f"    {device.kind:<8} ICCID {device.iccid}  PIN {pin}{extra}")
        for note in installation_notes():
            self.stdout.write(f"  {note}")
