"""The website (customer pages, reseller portal, installable app): namespace ``web``."""

from __future__ import annotations

from django.urls import path

from simtopup.web import (
    account,
    agent,  # reseller portal
    pwa,
    verify,
)
from simtopup.web import help as help_views
from simtopup.web.customer import alerts as customer_alerts
from simtopup.web.customer import devices as customer_devices
from simtopup.web.customer import orders as customer_orders
from simtopup.web.customer import topup as customer_topup

app_name = "web"

urlpatterns: list[object] = [
    # customer pages
    path("login", account.login, name="login"),
    path("login/code", account.login_code, name="login-code"),
    path("logout", account.logout, name="logout"),
    path("help", help_views.help_page, name="help"),
    path("verify/agent", verify.agent, name="verify-agent"),
    path("my/devices", customer_devices.device_list, name="devices"),
    path("my/devices/<int:device_id>", customer_devices.device_detail, name="device"),
    path("my/devices/<int:device_id>/name", customer_devices.device_rename, name="device-rename"),
    path("my/devices/<int:device_id>/remove", customer_devices.device_unbind, name="device-unbind"),
    path("my/devices/<int:device_id>/esim", customer_devices.esim, name="esim"),
    path("my/devices/<int:device_id>/credit", customer_devices.credit, name="credit"),
    path("my/devices/<int:device_id>/auto-topup", customer_devices.auto_topup, name="auto-topup"),
    path("my/devices/<int:device_id>/credit/add", customer_devices.add_credit, name="credit-add"),
    path("my/devices/<int:device_id>/alerts", customer_alerts.alert_settings, name="alerts"),
    path("topup", customer_topup.plans, name="topup"),
    path("topup/device", customer_topup.choose_device, name="topup-device"),
    path("topup/confirm", customer_topup.confirm, name="topup-confirm"),
    path("topup/retry/<int:order_id>", customer_topup.retry, name="topup-retry"),
    path("topup/wechat-openid", customer_topup.wechat_openid, name="topup-wechat-openid"),
    path("orders/<int:order_id>/status", customer_orders.status, name="order-status"),
    path(
        "orders/<int:order_id>/status.json",
        customer_orders.status_json,
        name="order-status-json",
    ),
    path("orders/<int:order_id>/receipt.pdf", customer_orders.receipt, name="receipt"),
    path("my/orders", customer_orders.history, name="history"),
    path("my/orders.csv", customer_orders.history_csv, name="history-csv"),
    # reseller portal
    path("agent/", agent.dashboard, name="agent-dashboard"),
    path("agent/login", agent.login, name="agent-login"),
    path("agent/logout", agent.logout, name="agent-logout"),
    path("agent/password", agent.password, name="agent-password"),
    path("agent/sell", agent.sell, name="agent-sell"),
    path("agent/sell/confirm", agent.sell_confirm, name="agent-sell-confirm"),
    path("agent/topups/<int:topup_id>", agent.topup, name="agent-topup"),
    path("agent/topups/<int:topup_id>/print", agent.topup_print, name="agent-topup-print"),
    path("agent/transactions", agent.transactions, name="agent-transactions"),
    path("agent/statement.csv", agent.statement_csv, name="agent-statement"),
    path("agent/statements", agent.statements, name="agent-statements"),
    path(
        "agent/statements/<str:code>/<int:year>-<int:month>.<str:fmt>",
        agent.monthly_statement,
        name="agent-monthly-statement",
    ),
    path("agent/keys", agent.keys, name="agent-keys"),
    path("agent/keys/<int:key_id>/revoke", agent.key_revoke, name="agent-key-revoke"),
    path("agent/webhook", agent.webhook, name="agent-webhook"),
    # installable app
    path("manifest.webmanifest", pwa.manifest, name="manifest"),
    path("sw.js", pwa.service_worker, name="sw"),
    path("offline", pwa.offline, name="offline"),
    path("push/key", pwa.push_key, name="push-key"),
    path("push/subscription", pwa.push_subscription, name="push-subscription"),
]
