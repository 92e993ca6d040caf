from __future__ import annotations

from typing import Any

from django.test import Client

from simtopup.catalog.models import PlanKind
from simtopup.devices.models import DeviceKind, DeviceStatus
from simtopup.orders.models import OrderStatus
from tests.support import Actors, post_json


def test_healthz(db: None) -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_when_migrated(db: None) -> None:
    response = Client().get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_openapi_describes_the_reseller_and_network_apis(db: None) -> None:
    spec = Client().get("/api/openapi.json").json()
    for path in [
        "/reseller/v1/plans",
        "/reseller/v1/devices/{identifier}",
        "/reseller/v1/topups",
        "/reseller/v1/topups/{topup_id}",
        "/reseller/v1/float",
        "/network/v1/usage",
        "/network/v1/devices/{iccid}/authorization",
    ]:
        assert path in spec["paths"], path
    topup = spec["paths"]["/reseller/v1/topups"]["post"]
    assert {"201", "402", "422"} <= set(topup["responses"])
    assert Client().get("/api/docs").status_code == 200


def test_api_docs_load_swagger_ui_from_our_static_files_with_the_nonce(db: None) -> None:
    response = Client().get("/api/docs")
    assert response.status_code == 200
    policy = response.headers["Content-Security-Policy"]
    nonce = policy.split("'nonce-", 1)[1].split("'", 1)[0]
    body = response.content.decode()
    assert "cdn" not in body.lower()
    assert "https://" not in body
    assert f'src="/static/ninja/swagger-ui-bundle.js" nonce="{nonce}"' in body
    assert f'src="/static/ninja/swagger-ui-init.js" nonce="{nonce}"' in body
    assert Client().get("/static/ninja/swagger-ui-bundle.js").status_code == 200


def test_closed_vocabularies_are_enums_with_the_domains_values(db: None) -> None:
    schemas = Client().get("/api/openapi.json").json()["components"]["schemas"]

    def values(schema: str, field: str) -> list[str]:
        prop = schemas[schema]["properties"][field]
        if "$ref" in prop:
            prop = schemas[prop["$ref"].rsplit("/", 1)[1]]
        return list(prop["enum"])

    assert values("OrderIn", "payment_method") == ["card", "alipay", "wechat_pay", "balance"]
    assert values("PaymentOut", "method") == ["card", "alipay", "wechat_pay", "balance"]
    assert values("OrderOut", "status") == list(OrderStatus.values)
    assert values("PlanOut", "kind") == list(PlanKind.values)
    assert values("DeviceOut", "kind") == list(DeviceKind.values)
    assert values("DeviceCheckOut", "kind") == list(DeviceKind.values)
    assert values("DeviceOut", "status") == list(DeviceStatus.values)
    assert values("TopupOut", "status") == ["processing", "fulfilled", "failed"]


def test_every_idempotent_post_declares_the_idempotency_key_header(db: None) -> None:
    spec = Client().get("/api/openapi.json").json()
    declared = {
        (path, method)
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        for parameter in operation.get("parameters", [])
        if parameter["name"] == "Idempotency-Key" and parameter["in"] == "header"
    }
    assert declared == {
        ("/api/v1/quotes", "post"),
        ("/api/v1/orders", "post"),
        ("/reseller/v1/topups", "post"),
    }


def test_metrics_count_orders(actors: Actors, alice) -> None:
    post_json(
        alice,
        "/reseller/v1/topups",
        {"device": actors.device.iccid, "plan": "day-1g", "reference": "m1"},
    )
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert 'simtopup_orders{channel="reseller",status="fulfilled"} 1' in response.content.decode()


def test_metrics_are_for_the_operator_s_monitoring_only(db: None, settings: Any) -> None:
    """/metrics used to answer anyone: only loopback (or the configured networks) and a
    bearer token now."""
    assert Client().get("/metrics").status_code == 200  # the test client is 127.0.0.1
    stranger = Client(REMOTE_ADDR="203.0.113.9")
    refused = stranger.get("/metrics")
    assert refused.status_code == 401
    assert "simtopup_orders" not in refused.content.decode()
    assert refused["WWW-Authenticate"].startswith("Bearer")

    settings.METRICS_TOKEN = "s3cret-scrape-token"
    assert stranger.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    allowed = stranger.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape-token"})
    assert allowed.status_code == 200
    assert "# HELP simtopup_orders" in allowed.content.decode()

    settings.METRICS_NETWORKS = ["203.0.113.0/24"]
    assert stranger.get("/metrics").status_code == 200
    assert Client().get("/metrics").status_code == 401  # loopback is no longer listed
    # Behind a proxy, the address is the proxy's header's last hop, not the proxy's own.
    settings.CLIENT_IP_HEADER = "HTTP_X_FORWARDED_FOR"
    proxied = Client(REMOTE_ADDR="10.0.0.2")
    assert proxied.get("/metrics", headers={"X-Forwarded-For": "203.0.113.7"}).status_code == 200
    assert proxied.get("/metrics", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 401


def test_home_links_docs_and_admin(db: None) -> None:
    body = Client().get("/").content.decode()
    assert "/api/docs" in body
    assert "/admin/" in body


def test_reseller_lists_plans_with_wholesale_prices(actors: Actors, alice) -> None:
    plans = {p["code"]: p for p in alice.get("/reseller/v1/plans").json()}
    assert plans["day-1g"]["price"] == {"amount": "5.00", "currency": "CNY"}
    assert plans["day-1g"]["wholesale_price"] == {"amount": "4.60", "currency": "CNY"}
    assert plans["credit-50"]["kind"] == "payg"


def test_explicit_price_list_overrides_the_discount(actors: Actors, alice) -> None:
    from simtopup.resellers.models import ResellerPrice

    ResellerPrice.objects.create(reseller=actors.alice, plan=actors.plans["day-1g"], price=399)
    plans = {p["code"]: p for p in alice.get("/reseller/v1/plans").json()}
    assert plans["day-1g"]["wholesale_price"]["amount"] == "3.99"
    response = post_json(
        alice,
        "/reseller/v1/topups",
        {"device": actors.device.iccid, "plan": "day-1g", "reference": "p1"},
    )
    assert response.json()["charged"]["amount"] == "3.99"


def test_device_check_before_selling(actors: Actors, alice) -> None:
    spaced = " ".join(
        [actors.device.iccid[:4], actors.device.iccid[4:10], actors.device.iccid[10:]]
    )
    body = alice.get(f"/reseller/v1/devices/{spaced}").json()
    assert body["rechargeable"] is True
    assert body["remaining_bytes"] == 0
    assert actors.device.iccid not in str(body)
    post_json(
        alice,
        "/reseller/v1/topups",
        {"device": actors.device.iccid, "plan": "day-1g", "reference": "c1"},
    )
    assert (
        alice.get(f"/reseller/v1/devices/{actors.device.iccid}").json()["remaining_bytes"]
        == 1024**3
    )
    assert alice.get("/reseller/v1/devices/12345").json()["code"] == "invalid_identifier"


def test_topups_by_reference_and_pagination(actors: Actors, alice) -> None:
    for n in range(5):
        post_json(
            alice,
            "/reseller/v1/topups",
            {"device": actors.device.iccid, "plan": "day-1g", "reference": f"ref-{n}"},
        )
    found = alice.get("/reseller/v1/topups?reference=ref-3").json()
    assert [t["reference"] for t in found["items"]] == ["ref-3"]
    assert found["next_cursor"] is None
    page1 = alice.get("/reseller/v1/topups?limit=2").json()
    page2 = alice.get(f"/reseller/v1/topups?limit=2&cursor={page1['next_cursor']}").json()
    page3 = alice.get(f"/reseller/v1/topups?limit=2&cursor={page2['next_cursor']}").json()
    refs = [t["reference"] for t in page1["items"] + page2["items"] + page3["items"]]
    assert refs == ["ref-4", "ref-3", "ref-2", "ref-1", "ref-0"]
    assert page3["next_cursor"] is None
