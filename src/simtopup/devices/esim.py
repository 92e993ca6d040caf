"""eSIM activation: the LPA activation code (GSMA SGP.22 ``LPA:1$<SM-DP+>$<matching id>``)
and a QR code of it that a phone's camera scans to install the profile."""

from __future__ import annotations

import io
from dataclasses import dataclass

import segno
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from simtopup.core.errors import DomainError
from simtopup.devices.models import Device, DeviceKind


@dataclass(frozen=True)
class Activation:
    activation_code: str
    qr_svg: str


def qr_code(activation_code: str) -> segno.QRCode:
    """The QR code phones expect for eSIM: a regular (not micro) QR, error level M."""
    return segno.make(activation_code, error="m", micro=False, boost_error=False)


def qr_svg(activation_code: str) -> str:
    """A standalone SVG document (with its namespace; no XML declaration, so it can also be
    inlined in HTML), black on white with the 4-module quiet zone scanners need."""
    buffer = io.BytesIO()
    qr_code(activation_code).save(
        buffer,
        kind="svg",
        xmldecl=False,
        svgns=True,
        nl=False,
        scale=4,
        border=4,
        dark="#000",
        light="#fff",
        title=str(_("eSIM activation code")),
    )
    return buffer.getvalue().decode()


def activation_code_of(device: Device) -> str:
    if device.kind != DeviceKind.ESIM:
        raise DomainError(
            "not_an_esim", _("This card is not an eSIM; it has no activation code."), 409
        )
    if not device.activation_code:
        raise DomainError(
            "no_activation_code",
            _("This eSIM has no activation code on file. Please contact customer service."),
            409,
        )
    return device.activation_code


def activate(device: Device) -> Activation:
    """The activation code and its QR code; records the first time it was shown (the moment
    the customer could install the profile), once."""
    code = activation_code_of(device)
    now = timezone.now()
    if Device.objects.filter(pk=device.pk, esim_activated_at__isnull=True).update(
        esim_activated_at=now
    ):
        device.esim_activated_at = now
    return Activation(code, qr_svg(code))
