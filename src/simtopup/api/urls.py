import json
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path
from ninja import NinjaAPI, Swagger
from ninja.openapi.schema import OpenAPISchema

from simtopup.api import app, network, problems, reseller
from simtopup.api.parser import StrictJSONParser


class OwnSwagger(Swagger):
    """Swagger UI served from django-ninja's bundled static files, its scripts carrying the
    request's CSP nonce: ninja's default falls back to a CDN, which our policy refuses."""

    def render_page(self, request: HttpRequest, api: NinjaAPI, **kwargs: Any) -> HttpResponse:
        self.settings["url"] = self.get_openapi_url(api, kwargs)
        context = {"swagger_settings": json.dumps(self.settings), "api": api}
        return render(request, "api/docs.html", context)


IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": (
        "Makes the request safe to retry. The same key with the same body returns the first"
        " response (header `Idempotent-Replayed: true`); while the first is still running,"
        " 409 `request_in_progress` with `Retry-After`; the same key with another body, 422"
        " `idempotency_key_reused`. Keys are kept at least 24 h, scoped to the caller."
    ),
}


def idempotent_operation_ids(api: NinjaAPI) -> set[str]:
    """The operations whose view runs its action through ``run_once``: found from the views'
    own code, so a new idempotent endpoint is documented without a list to keep."""
    found = set()
    for bound in api._get_bound_routers():  # ninja's own walk, as its schema generator does
        for path_view in bound.path_operations.values():
            for operation in path_view.operations:
                if "run_once" in operation.view_func.__code__.co_names:
                    found.add(operation.operation_id or api.get_openapi_operation_id(operation))
    return found


def declare_idempotency_key(api: NinjaAPI, schema: dict[str, Any]) -> None:
    ids = idempotent_operation_ids(api)
    for operations in schema["paths"].values():
        for operation in operations.values():
            if operation.get("operationId") in ids:
                operation.setdefault("parameters", []).append(dict(IDEMPOTENCY_KEY))


class SimtopupAPI(NinjaAPI):
    def get_openapi_schema(
        self, *, path_prefix: str | None = None, path_params: dict[str, Any] | None = None
    ) -> OpenAPISchema:
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        problems.document(schema)  # errors are application/problem+json; 503 everywhere
        declare_idempotency_key(self, schema)
        return schema


api = SimtopupAPI(
    title="simtopup API",
    version="1",
    description="Top up prepaid eSIM data cards and hotspot devices: app, reseller and network APIs.",
    urls_namespace="api",
    docs_url="api/docs",
    docs=OwnSwagger(),
    openapi_url="api/openapi.json",
    parser=StrictJSONParser(),
)
problems.install(api)
api.add_router("api/v1/", app.router)
api.add_router("reseller/v1/", reseller.router)
api.add_router("network/v1/", network.router)

api_urlpatterns = [path("", api.urls)]
