from typing import Any

from django.urls import path
from ninja import NinjaAPI
from ninja.openapi.schema import OpenAPISchema

from simtopup.api import app, network, problems, reseller
from simtopup.api.parser import StrictJSONParser


class SimtopupAPI(NinjaAPI):
    def get_openapi_schema(
        self, *, path_prefix: str | None = None, path_params: dict[str, Any] | None = None
    ) -> OpenAPISchema:
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        problems.document(schema)  # errors are application/problem+json; 503 everywhere
        return schema


api = SimtopupAPI(
    title="simtopup API",
    version="1",
    description="Top up prepaid eSIM data cards and hotspot devices: app, reseller and network APIs.",
    urls_namespace="api",
    docs_url="api/docs",
    openapi_url="api/openapi.json",
    parser=StrictJSONParser(),
)
problems.install(api)
api.add_router("api/v1/", app.router)
api.add_router("reseller/v1/", reseller.router)
api.add_router("network/v1/", network.router)

api_urlpatterns = [path("", api.urls)]
