"""Request and response schemas (OpenAPI). Unknown fields are refused."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from django.utils.translation import gettext as _
from ninja import Schema
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    field_validator,
)
from pydantic_core import PydanticCustomError

from simtopup.api.serializers import TOPUP_STATUS
from simtopup.catalog.models import PlanKind
from simtopup.devices.models import DeviceKind, DeviceStatus


def no_nul(value: Any) -> Any:
    """Refuse the NUL character, which no identifier, name or reference contains and which
    PostgreSQL cannot store in text (it would be a 500 there, and a different answer on
    SQLite)."""
    texts = value if isinstance(value, list | tuple) else [value]
    if any(isinstance(text, str) and "\x00" in text for text in texts):
        raise PydanticCustomError("null_character", _("Must not contain the NUL character."))
    return value


def no_nul_text(value: str) -> str:
    """:func:`no_nul` for one string (a usage batch runs it 2,000 times)."""
    if "\x00" in value:
        raise PydanticCustomError("null_character", _("Must not contain the NUL character."))
    return value


# A free-text query parameter, or any string field of a plain pydantic model.
Text = Annotated[str, AfterValidator(no_nul_text)]


def one_of(values: Iterable[str]) -> dict[str, Any]:
    """``json_schema_extra`` for a text field of a closed vocabulary derived from the domain's
    own definitions (not a TextChoices of its own): the OpenAPI lists the values as ``enum``
    while validation stays the domain's (its own problem code for a value it does not take).
    """
    return {"enum": list(dict.fromkeys(values))}


class Strict(Schema):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        return no_nul(value)


class MoneyOut(Schema):
    amount: str = Field(examples=["30.00"])
    currency: str = Field(examples=["CNY"])


class PlanOut(Schema):
    code: str
    name: str
    kind: PlanKind
    data_bytes: int
    validity_hours: int
    price: MoneyOut


class ResellerPlanOut(PlanOut):
    wholesale_price: MoneyOut


class TopupIn(Strict):
    device: str = Field(min_length=1, max_length=128, description="IMEI, ICCID, EID or serial")
    plan: str = Field(min_length=1, max_length=40)
    reference: str = Field(
        min_length=1, max_length=100, description="your own unique reference for this sale"
    )


class TopupOut(Schema):
    id: int
    status: str = Field(json_schema_extra=one_of(TOPUP_STATUS.values()))
    reference: str | None
    device: str = Field(description="masked device identifier")
    plan: str
    charged: MoneyOut
    float_balance: MoneyOut | None = Field(
        description=(
            "the reseller's float right after this sale was charged, as the ledger recorded it"
            " in the sale's own transaction: the same value on creation, replay, lookup and in"
            " lists (the float now is GET /reseller/v1/float); null only for sales recorded"
            " before the ledger kept balances"
        )
    )
    receipt_no: str | None
    created_at: str
    fulfilled_at: str | None
    failure_code: str | None


class TopupList(Schema):
    items: list[TopupOut]
    next_cursor: str | None


class FloatOut(Schema):
    balance: MoneyOut


class DeviceCheckOut(Schema):
    device: str = Field(description="masked identifier")
    kind: DeviceKind
    status: DeviceStatus
    rechargeable: bool
    remaining_bytes: int
    payg: bool


class ProblemFieldError(Schema):
    field: str = Field(description="the field, dotted for nested ones (`items.0.device`)")
    code: str = Field(description="stable, machine-readable")
    message: str = Field(description="human text in the request's language")


class Problem(Schema):
    """RFC 9457 problem details, sent as ``application/problem+json``."""

    type: str = Field(examples=["https://simtopup.dev/problems/check_digit_mismatch"])
    title: str
    status: int
    detail: str = Field(description="human text in the request's language")
    code: str = Field(
        description="stable, machine-readable: act on this, not on the texts",
        examples=["check_digit_mismatch"],
    )
    errors: list[ProblemFieldError] | None = Field(
        None, description="one entry per field that is missing or not valid"
    )
    request_id: str | None = Field(
        None,
        description="the request's id, also sent as the `X-Request-Id` response header",
        examples=["9f1c2b7e4a6d4e0f8b3a5c7d9e1f2a4b"],
    )


class UsageRecordIn(BaseModel):
    # A plain pydantic model, not a ninja Schema: a batch holds 1,000 of these and ninja's
    # per-object validator wrapper (for ORM attribute access) costs more than the rating.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: Text = Field(min_length=1, max_length=100)
    iccid: Text = Field(min_length=1, max_length=40)
    # Strict: a JSON string or boolean is not a byte count (lax pydantic would coerce them).
    bytes: StrictInt = Field(ge=0, le=10**15)
    started_at: AwareDatetime
    ended_at: AwareDatetime


class UsageBatchIn(BaseModel):
    # Plain pydantic too: ninja's Schema validates a model that refuses unknown fields twice
    # (once as given, once wrapped for attribute access), the whole batch included.
    model_config = ConfigDict(extra="forbid")

    records: list[UsageRecordIn]


class Rejected(Schema):
    id: str
    code: str


class UsageOut(Schema):
    accepted: int
    duplicates: int
    rejected: list[Rejected]


class AuthorizationOut(Schema):
    allowed: bool
    remaining_bytes: int
    reason: str
