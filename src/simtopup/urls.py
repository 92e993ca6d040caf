from django.contrib import admin
from django.urls import path

from simtopup.api.urls import api_urlpatterns
from simtopup.web import views as web_views

urlpatterns = [
    path("", web_views.home, name="home"),
    path("healthz", web_views.healthz, name="healthz"),
    path("readyz", web_views.readyz, name="readyz"),
    path("metrics", web_views.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    *api_urlpatterns,
]
