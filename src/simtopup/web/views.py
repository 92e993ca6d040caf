"""The home page of the official site, and the health endpoints."""

from __future__ import annotations

import hmac
import ipaddress

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from simtopup.catalog.display import format_data, format_validity, plan_label
from simtopup.catalog.models import Plan
from simtopup.catalog.pricing import tariff_per_mb
from simtopup.core.http import client_ip
from simtopup.core.money import format_money
from simtopup.web.metrics import render_metrics


def plan_card(plan: Plan, payg_tariff: int) -> dict[str, object]:
    """What a plan card shows, in the current language."""
    card: dict[str, object] = {
        "code": plan.code,
        "kind": plan.kind,
        "kind_label": plan_label(plan),
        "name": plan.name,
        "price": format_money(plan.price, plan.currency),
    }
    if plan.is_payg:
        card["detail"] = _("%(credit)s of credit on the card, %(tariff)s per MB used") % {
            "credit": format_money(plan.price, plan.currency),
            "tariff": format_money(payg_tariff, plan.currency),
        }
    else:
        card["data"] = format_data(plan.data_bytes)
        card["validity"] = format_validity(plan.validity_hours)
    return card


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    plans = list(Plan.objects.filter(active=True))
    tariff = tariff_per_mb() if any(p.is_payg for p in plans) else 0
    return render(request, "web/home.html", {"plans": [plan_card(p, tariff) for p in plans]})


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request: HttpRequest) -> HttpResponse:
    try:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        return JsonResponse(
            {"status": "unavailable", "reason": f"database: {exc.__class__.__name__}"}, status=503
        )
    if pending:
        return JsonResponse(
            {"status": "unavailable", "reason": f"{len(pending)} migrations not applied"},
            status=503,
        )
    return JsonResponse({"status": "ready"})


def metrics_allowed(request: HttpRequest) -> bool:
    """``/metrics`` (order counts by channel, usage, backlog) is for the operator's
    monitoring: a bearer ``SIMTOPUP_METRICS_TOKEN``, or a client address in
    ``SIMTOPUP_METRICS_NETWORKS`` (loopback by default; behind a proxy, the address
    ``client_ip`` takes from the proxy's header)."""
    token = settings.METRICS_TOKEN
    if token:
        scheme, _sep, given = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode()):
            return True
    try:
        address = ipaddress.ip_address(client_ip(request) or "")
    except ValueError:
        return False
    return any(
        address in ipaddress.ip_network(network, strict=False)
        for network in settings.METRICS_NETWORKS
    )


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not metrics_allowed(request):
        response = HttpResponse("metrics: not allowed\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(render_metrics(), content_type="text/plain; version=0.0.4; charset=utf-8")
