"""The small landing page and the health endpoints (the real website comes later)."""

from __future__ import annotations

from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from simtopup.web.metrics import render_metrics


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "web/home.html")


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


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    return HttpResponse(render_metrics(), content_type="text/plain; version=0.0.4; charset=utf-8")
