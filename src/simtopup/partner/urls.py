"""``/partner/`` (included at the root URLconf): Airalo's v2 paths, and their 404 for any
other path under the prefix."""

from django.urls import path, re_path

from simtopup.partner import responses, views

app_name = "partner"

urlpatterns = [
    path("v2/token", views.token, name="token"),
    path("v2/packages", views.packages, name="packages"),
    path("v2/orders/topups", views.submit_topup, name="topup"),
    path("v2/sims/<str:iccid>/topups", views.sim_topups, name="sim-topups"),
    path("v2/sims/<str:iccid>/usage", views.sim_usage, name="sim-usage"),
    path("v2/sims/<str:iccid>/packages", views.sim_packages, name="sim-packages"),
    re_path(r"^.*$", responses.unknown_path),
]
