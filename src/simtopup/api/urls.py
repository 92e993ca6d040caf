from django.urls import path
from ninja import NinjaAPI

from simtopup.api import app, network, problems, reseller
from simtopup.api.parser import StrictJSONParser

api = NinjaAPI(
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
