"""App API — /api/v1: receipts."""

from __future__ import annotations

import logging
from typing import Literal

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from ninja import Query, Router

from simtopup.api.auth import AppBearer
from simtopup.api.schemas import Problem
from simtopup.core.errors import DomainError
from simtopup.orders.models import Order
from simtopup.orders.receipts import normalise_language, render_receipt_pdf

logger = logging.getLogger(__name__)

router = Router(auth=AppBearer(), tags=["app: receipts"])

PDF_RESPONSE = {
    "responses": {
        200: {
            "description": "The receipt, a one-page PDF with an embedded font, "
            "as an attachment named `receipt-<receipt_no>.pdf`.",
            "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
        }
    }
}


@router.get(
    "/orders/{int:order_id}/receipt.pdf",
    response={200: None, 401: Problem, 404: Problem, 409: Problem, 422: Problem, 503: Problem},
    summary="PDF receipt of a fulfilled order",
    description=(
        "In the customer's language (or `lang`) and time zone, with a QR code linking to the "
        "public receipt verification page. Only the customer who placed the order can "
        "download it (otherwise 404 `not_found`); an order without a receipt yet (not "
        "fulfilled) → 409 `receipt_not_available`."
    ),
    openapi_extra=PDF_RESPONSE,
)
def receipt_pdf(
    request: HttpRequest,
    order_id: int,
    lang: Literal["zh-hans", "zh-hant", "en"] | None = Query(None),
) -> HttpResponse:
    customer = request.auth.customer  # type: ignore[attr-defined]
    order = (
        Order.objects.select_related("plan", "device", "reseller")
        .filter(pk=order_id, customer=customer)
        .first()
    )
    if order is None:
        raise DomainError("not_found", _("There is no such order."), 404)
    if not order.receipt_no or order.fulfilled_at is None:
        raise DomainError(
            "receipt_not_available",
            _("This order has no receipt yet: receipts are issued once a top-up is credited."),
            409,
        )
    try:
        pdf = render_receipt_pdf(
            order, normalise_language(lang or customer.language), customer.time_zone
        )
    except ImproperlyConfigured:
        # No usable font on this server: the operator's problem, said plainly (and logged).
        logger.exception("cannot render the receipt of order %s", order.pk)
        raise DomainError(
            "receipt_unavailable",
            _("Receipts cannot be produced right now. Please try again later."),
            503,
        ) from None
    response = HttpResponse(pdf, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="receipt-{order.receipt_no}.pdf"'
    response["Cache-Control"] = "private, no-store"
    return response
