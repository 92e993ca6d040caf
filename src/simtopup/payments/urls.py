from django.urls import path

from simtopup.payments import views

urlpatterns = [
    path("payments/webhooks/<str:provider>", views.webhook, name="payment-webhook"),
    path("sandbox/checkout/<str:payment_id>", views.sandbox_checkout, name="sandbox-checkout"),
]
