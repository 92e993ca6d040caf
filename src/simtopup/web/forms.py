"""Forms of the customer pages: they check the shape of what was typed; the domain functions
decide the rest (identifiers, ownership, prices) and their errors land next to the field."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from django import forms
from django.utils.translation import gettext_lazy as _

from simtopup.catalog.models import Plan
from simtopup.devices.identifiers import MAX_IDENTIFIER_LENGTH
from simtopup.devices.models import Device
from simtopup.orders.customer import BALANCE
from simtopup.payments.providers.base import ALIPAY, CARD, WECHAT_PAY

GB = 1024**3
MB = 1024**2


def payment_labels() -> dict[str, str]:
    return {
        CARD: str(_("Card")),
        ALIPAY: str(_("Alipay")),
        WECHAT_PAY: str(_("WeChat Pay")),
        BALANCE: str(_("The card's credit")),
    }


class BindForm(forms.Form):
    device = forms.CharField(
        label=_("Device ID / serial number"),
        max_length=MAX_IDENTIFIER_LENGTH * 2,
        help_text=_(
            "Printed on the back of the card or under the hotspot's battery: the ICCID "
            "(19–20 digits starting 89), the IMEI (15 digits), the EID (32 digits) or the "
            "serial number. Spaces and dashes do not matter."
        ),
        error_messages={"required": _("Enter the device ID printed on the card.")},
        widget=forms.TextInput(
            attrs={"autocomplete": "off", "autocapitalize": "characters", "spellcheck": "false"}
        ),
    )
    proof = forms.CharField(
        label=_("Binding PIN or activation code"),
        max_length=255,
        help_text=_(
            "The binding PIN is printed on the card's packaging, next to the device ID (under "
            "the scratch-off panel if it has one). For an eSIM you may instead enter its "
            "activation code (LPA:1$…) or the code's last part."
        ),
        error_messages={
            "required": _(
                "Enter the binding PIN printed with the card (for an eSIM, its activation "
                "code also works)."
            )
        },
        widget=forms.TextInput(
            attrs={"autocomplete": "off", "autocapitalize": "characters", "spellcheck": "false"}
        ),
    )
    nickname = forms.CharField(
        label=_("Nickname"),
        max_length=60,
        required=False,
        help_text=_("For example “Mum's hotspot”."),
    )


class RenameForm(forms.Form):
    nickname = forms.CharField(label=_("Nickname"), max_length=60, required=False)


class DeviceChoiceForm(forms.Form):
    """Top up, step 2: one of my cards, or any card by its device ID."""

    plan = forms.CharField(widget=forms.HiddenInput, max_length=40)
    mine = forms.TypedChoiceField(
        label=_("My cards"), required=False, coerce=int, empty_value=None, widget=forms.RadioSelect
    )
    device = forms.CharField(
        label=_("Device ID / serial number"),
        required=False,
        max_length=MAX_IDENTIFIER_LENGTH * 2,
        help_text=BindForm.base_fields["device"].help_text,
        widget=forms.TextInput(
            attrs={"autocomplete": "off", "autocapitalize": "characters", "spellcheck": "false"}
        ),
    )

    def __init__(self, *args: object, devices: Iterable[Device] = (), **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        choices = [
            (d.pk, f"{d.nickname} · {d.masked}" if d.nickname else d.masked) for d in devices
        ]
        field = self.fields["mine"]
        assert isinstance(field, forms.TypedChoiceField)
        field.choices = choices
        if not choices:
            del self.fields["mine"]
            self.fields["device"].required = True
            self.fields["device"].error_messages["required"] = str(
                _("Enter the device ID printed on the card.")
            )

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        if "mine" in self.fields and not data.get("mine") and not data.get("device"):
            raise forms.ValidationError(
                _("Choose one of your cards or enter a device ID."), code="required"
            )
        return data


class PayForm(forms.Form):
    """The confirmation page: the signed confirmation and how to pay."""

    confirmation = forms.CharField(widget=forms.HiddenInput, max_length=1000)
    payment_method = forms.ChoiceField(label=_("Payment method"), widget=forms.RadioSelect)

    def __init__(self, *args: object, methods: Iterable[str] = (), **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        labels = payment_labels()
        field = self.fields["payment_method"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [(m, labels[m]) for m in methods]
        field.error_messages["required"] = str(_("Choose a payment method."))


class AutoTopupForm(forms.Form):
    enabled = forms.BooleanField(label=_("Automatic top-up on"), required=False)
    threshold = forms.DecimalField(
        label=_("When remaining data drops below"),
        min_value=Decimal(0),
        max_digits=10,
        decimal_places=1,
        error_messages={"required": _("Enter an amount of data.")},
    )
    unit = forms.ChoiceField(label=_("Unit"), choices=[("MB", "MB"), ("GB", "GB")])
    plan = forms.ChoiceField(label=_("Buy this plan with the card's credit"))

    def __init__(self, *args: object, plans: Iterable[Plan] = (), **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        field = self.fields["plan"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [(p.code, p.name) for p in plans]

    def threshold_bytes(self) -> int:
        amount: Decimal = self.cleaned_data["threshold"]
        scale = GB if self.cleaned_data["unit"] == "GB" else MB
        return int(amount * scale)
