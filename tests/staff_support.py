"""Staff members for tests of the console: made in a role with an authenticator, and a
browser logged in as one with both factors."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from simtopup.backoffice.roles import give_role

PASSWORD = "pw-staff-Rz4k"


def make_staff(name: str, role: str, password: str = PASSWORD) -> User:
    user = User.objects.create_user(name, f"{name}@example.com", password, is_staff=True)
    give_role(user, role)
    return user


def add_authenticator(user: User) -> TOTPDevice:
    """A confirmed authenticator app (TOTP) for ``user``."""
    return TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)


def code_of(device: TOTPDevice) -> str:
    """The code the authenticator app shows now (django_otp's own TOTP, not ours)."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    return f"{totp.token():0{device.digits}d}"


def verify_console(client: Client, user: User) -> Client:
    """Log ``client`` in to the console as ``user`` with both factors: Django's session login
    plus the verified device django_otp keeps in the session (what the login view does after
    a right password and code)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first() or add_authenticator(user)
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


def console_client(user: User, **defaults: str) -> Client:
    """A browser logged in to the console as ``user`` with both factors."""
    return verify_console(Client(**defaults), user)
