from django.contrib import admin
from django.urls import include, path

from simtopup.api import upstream_webhooks
from simtopup.api.urls import api_urlpatterns
from simtopup.backoffice.dashboard import dashboard_view
from simtopup.web import verify as web_verify
from simtopup.web import views as web_views
from simtopup.web.payment_return import payment_return
from simtopup.web.session import keeping_the_customer

urlpatterns = [
    path("", web_views.home, name="home"),
    path("healthz", web_views.healthz, name="healthz"),
    path("readyz", web_views.readyz, name="readyz"),
    path("metrics", web_views.metrics, name="metrics"),
    path("verify/receipt", web_verify.receipt_form, name="verify-receipt-form"),
    path("verify/receipt/<str:receipt_no>", web_verify.receipt, name="verify-receipt"),
    # The console's own log-out view, wrapped so that a customer login in the same browser
    # stays (web/session.py); its URL name stays admin:logout.
    path(
        "admin/logout/",
        admin.site.admin_view(keeping_the_customer(admin.site.logout)),
        name="admin-logout",
    ),
    # The console's dashboard (backoffice/dashboard.py), behind the console's own login.
    path("admin/dashboard/", admin.site.admin_view(dashboard_view), name="admin-dashboard"),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    # The Airalo-compatible partner API, in Airalo's shapes (partner/, docs/api.md).
    path("partner/", include("simtopup.partner.urls")),
    path("", include("simtopup.web.urls")),
    path("", include("simtopup.payments.urls")),
    # The return URL of every payment (payments/actions.py): a page, so the website's.
    path("payments/return/<str:reference>", payment_return, name="payment-return"),
    # The wholesale network provider's webhooks (api/upstream_webhooks.py).
    path(
        "network/upstream/<str:provider>/webhook",
        upstream_webhooks.receive,
        name="upstream-webhook",
    ),
    *api_urlpatterns,
]

# A crash in any middleware layer or view: a problem document under the API prefixes, a page
# elsewhere, 503 when the database is out of reach (simtopup/errors.py). Plain 404/405 answers
# under the API prefixes become problems in api.middleware.ProblemMiddleware.
handler500 = "simtopup.errors.server_error"
