from django.contrib import admin
from django.urls import include, path

from simtopup.api.urls import api_urlpatterns
from simtopup.web import verify as web_verify
from simtopup.web import views as web_views

urlpatterns = [
    path("", web_views.home, name="home"),
    path("healthz", web_views.healthz, name="healthz"),
    path("readyz", web_views.readyz, name="readyz"),
    path("metrics", web_views.metrics, name="metrics"),
    path("verify/receipt", web_verify.receipt_form, name="verify-receipt-form"),
    path("verify/receipt/<str:receipt_no>", web_verify.receipt, name="verify-receipt"),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("simtopup.web.urls")),
    path("", include("simtopup.payments.urls")),
    *api_urlpatterns,
]
