"""Alerts (issue 13, point 1): each threshold of a bundle or a card's credit raised exactly
once, wherever it is crossed (one batch, several, both at once, replays, concurrent batches),
the expiry job, and delivery: each channel once, in the customer's language, with the
one-tap top-up link; the reseller's webhook signed; Web Push to a fake push service."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.db import connection
from django.test import Client, TestCase
from django.utils import timezone

from simtopup.accounts.models import Customer
from simtopup.core.signing import verify
from simtopup.devices.models import Device
from simtopup.ledger.audit import audit
from simtopup.ledger.models import Transfer
from simtopup.notifications.backends import memory
from simtopup.resellers.models import Reseller, WebhookDelivery
from simtopup.usage import alerts, expiry
from simtopup.usage.models import Alert, AlertDelivery, Bundle
from simtopup.usage.rating import UsageIn, ingest
from tests.customer_support import app_client, login_customer
from tests.payments_support import bind
from tests.support import GB, MB, Actors, network_post, post_json, run_worker


@pytest.fixture(autouse=True)
def _memory_senders(settings: Any) -> None:
    settings.SMS_SENDER = "memory"
    settings.EMAIL_SENDER = "memory"
    settings.WEBHOOK_ALLOW_PRIVATE = True
    memory.outbox.clear()


def topup(alice: Client, device: Device, plan: str) -> None:
    response = post_json(
        alice,
        "/reseller/v1/topups",
        {"device": device.iccid, "plan": plan, "reference": f"{plan}-{Transfer.objects.count()}"},
    )
    assert response.status_code == 201, response.content


def use(device: Device, *sizes_and_ids: tuple[int, str]) -> None:
    """One batch through the network API."""
    now = timezone.now().isoformat()
    records = [
        {"id": rid, "iccid": device.iccid, "bytes": size, "started_at": now, "ended_at": now}
        for size, rid in sizes_and_ids
    ]
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = network_post(Client(), "/network/v1/usage", {"records": records})
    assert response.status_code == 200, response.content


def kinds(device: Device) -> list[str]:
    return sorted(Alert.objects.filter(device=device).values_list("kind", flat=True))


@pytest.fixture
def owner(actors: Actors, alice: Client) -> tuple[Client, Customer]:
    token, customer = login_customer("+8613900139000")
    Customer.objects.filter(pk=customer.pk).update(language="en")
    customer.refresh_from_db()
    bind(actors.device, customer)
    memory.outbox.clear()
    return app_client(token), customer


def test_usage_thresholds_raised_once_over_several_batches_and_replays(
    actors: Actors, alice: Client, owner: tuple[Client, Customer]
) -> None:
    device = actors.device
    topup(alice, device, "day-1g")
    use(device, (500 * MB, "a1"))
    run_worker()
    assert kinds(device) == []
    use(device, (320 * MB, "a2"))  # 820 MB of 1 GB used: 80 %
    run_worker()
    assert kinds(device) == ["used_80"]
    [message] = memory.outbox
    assert message.recipient == "+8613900139000"
    assert "80%" in message.body
    assert "204 MB left" in message.body
    assert f"/topup/confirm?device={device.pk}&plan=day-1g" in message.body
    use(device, (320 * MB, "a2"))  # a replay: a duplicate, nothing raised
    use(device, (10 * MB, "a3"))  # still below, already raised
    run_worker()
    assert kinds(device) == ["used_80"]
    use(device, (300 * MB, "a4"))  # used up (the rest is overage)
    run_worker()
    assert kinds(device) == ["used_100", "used_80"]
    assert len(memory.outbox) == 2
    assert "used all the data" in memory.outbox[1].body
    # Each channel once: a second delivery of the same alerts sends nothing more.
    for key in Alert.objects.values_list("key", flat=True):
        alerts.deliver_alert(key)
    assert len(memory.outbox) == 2
    assert set(AlertDelivery.objects.values_list("channel", "status")) == {("sms", "sent")}
    assert audit() == []


def test_one_batch_crossing_both_thresholds_raises_both(
    actors: Actors, alice: Client, owner: tuple[Client, Customer]
) -> None:
    device = actors.device
    topup(alice, device, "day-1g")
    use(device, (600 * MB, "b1"), (600 * MB, "b2"))
    run_worker()
    assert kinds(device) == ["used_100", "used_80"]
    assert len(memory.outbox) == 2


def test_credit_low_and_exhausted_once_per_episode(
    actors: Actors, alice: Client, owner: tuple[Client, Customer]
) -> None:
    device = actors.device
    topup(alice, device, "credit-50")  # ¥50 at ¥0.10 per MB: 500 MB; warns below ¥10
    use(device, (350 * MB, "c1"))
    run_worker()
    assert kinds(device) == []
    use(device, (60 * MB, "c2"))  # ¥9 left
    use(device, (10 * MB, "c3"))
    run_worker()
    assert kinds(device) == ["credit_low"]
    assert "¥9.00" in memory.outbox[0].body
    assert "¥10.00" in memory.outbox[0].body
    use(device, (200 * MB, "c4"))  # exhausted
    run_worker()
    assert kinds(device) == ["credit_exhausted", "credit_low"]
    # New credit: a new episode, warned again when it runs low.
    topup(alice, device, "credit-50")
    use(device, (450 * MB, "c5"))
    run_worker()
    assert kinds(device) == ["credit_exhausted", "credit_low", "credit_low"]
    assert audit() == []


def test_credit_threshold_and_channels_chosen_through_the_api(
    actors: Actors, alice: Client, owner: tuple[Client, Customer]
) -> None:
    client, _customer = owner
    device = actors.device
    url = f"/api/v1/devices/{device.pk}/alerts"
    body = client.get(url).json()
    assert body == {
        "sms": True,
        "email": True,
        "push": True,
        "credit_threshold": None,
        "effective_credit_threshold": 1000,
    }
    put = {"sms": False, "email": True, "push": True, "credit_threshold": 4000}
    response = client.put(url, data=put, content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["effective_credit_threshold"] == 4000
    bad = client.put(url, data={**put, "credit_threshold": -1}, content_type="application/json")
    assert bad.status_code == 422
    assert bad["Content-Type"].startswith("application/problem+json")
    other, _ = login_customer("+8613900139001")
    assert app_client(other).get(url).status_code == 404
    memory.outbox.clear()  # the second login's code
    topup(alice, device, "credit-50")
    use(device, (150 * MB, "d1"))  # ¥35 left: below the chosen ¥40
    run_worker()
    assert kinds(device) == ["credit_low"]
    assert memory.outbox == []  # SMS switched off, no email address, no push subscription


def test_alerts_in_the_customers_language(
    actors: Actors, alice: Client, owner: tuple[Client, Customer]
) -> None:
    _client, customer = owner
    Customer.objects.filter(pk=customer.pk).update(language="zh-hans")
    topup(alice, actors.device, "day-1g")
    use(actors.device, (GB, "z1"))
    run_worker()
    bodies = [m.body for m in memory.outbox]
    assert len(bodies) == 2
    assert all("day-1g 简" in b for b in bodies)
    assert any("已用完" in b for b in bodies), bodies


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, str], bytes]] = []
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, dict(self.headers), body))
        self.send_response(type(self).status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Any:
    _Receiver.received = []
    _Receiver.status = 201
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_reseller_webhooks_signed(
    actors: Actors, alice: Client, owner: tuple[Client, Customer], receiver: Any
) -> None:
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hooks"
    Reseller.objects.filter(pk=actors.alice.pk).update(webhook_url=url, webhook_secret="whsec-a")
    topup(alice, actors.device, "day-1g")
    _Receiver.received = []
    use(actors.device, (900 * MB, "w1"))
    run_worker()
    run_worker()
    events = [json.loads(body) for _path, _headers, body in _Receiver.received]
    threshold = [e for e in events if e["type"] == "bundle.threshold"]
    assert len(threshold) == 1, events
    assert threshold[0]["data"]["threshold"] == "used_80"
    assert threshold[0]["data"]["bundle"]["plan"] == "day-1g"
    assert "/topup/confirm?device=" in threshold[0]["data"]["topup_url"]
    path, headers, body = next(r for r in _Receiver.received if b"bundle.threshold" in r[2])
    verify("whsec-a", headers["X-Simtopup-Signature"], "POST", path, body)  # raises unless signed
    assert WebhookDelivery.objects.filter(event="bundle.threshold").count() == 1
    # Credit a reseller sold, on a card nobody has bound: the webhook is the only channel.
    card = actors.devices[1]
    topup(alice, card, "credit-50")
    _Receiver.received = []
    use(card, (420 * MB, "w2"))
    run_worker()
    [(path, headers, body)] = _Receiver.received
    verify("whsec-a", headers["X-Simtopup-Signature"], "POST", path, body)
    event = json.loads(body)
    assert event["type"] == "credit.low"
    assert event["data"]["threshold"] == "credit_low"
    assert event["data"]["credit"] == {"amount": "8.00", "currency": "CNY"}
    assert set(AlertDelivery.objects.filter(alert__device=card).values_list("channel")) == {
        ("webhook",)
    }


def test_expiry_job_closes_once_and_balances_the_ledger(
    actors: Actors, alice: Client, owner: tuple[Client, Customer]
) -> None:
    device = actors.device
    topup(alice, device, "day-1g")
    use(device, (100 * MB, "e1"))
    bundle = Bundle.objects.get(device=device)
    now = timezone.now()
    Bundle.objects.filter(pk=bundle.pk).update(
        starts_at=now - timedelta(days=1), expires_at=now - timedelta(minutes=1)
    )
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert expiry.run(now) == {"warned": 0, "closed": 1}
        assert expiry.run(now) == {"warned": 0, "closed": 0}
    run_worker()
    bundle.refresh_from_db()
    bundle.account.refresh_from_db()
    assert bundle.closed_at is not None
    assert bundle.account.balance == 0
    [back] = Transfer.objects.filter(kind="bundle_expiry")
    assert back.amount == GB - 100 * MB
    assert "data_issued" in back.destination.code
    assert kinds(device) == ["expired"]
    assert len(memory.outbox) == 1
    assert "expired" in memory.outbox[0].body
    assert audit() == []
    # Usage after the end is not drawn from the closed bundle.
    use(device, (MB, "e2"))
    bundle.account.refresh_from_db()
    assert bundle.account.balance == 0


def test_expiry_warnings_once_each_and_only_for_longer_bundles(
    actors: Actors, alice: Client, owner: tuple[Client, Customer]
) -> None:
    device = actors.device
    topup(alice, device, "month-20g")
    topup(alice, actors.devices[1], "day-1g")  # a 1-day pass: never "1 day before"
    now = timezone.now()
    month = Bundle.objects.get(device=device)
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert expiry.warn(now) == 0
        assert expiry.warn(month.expires_at - timedelta(days=2)) == 1
        assert expiry.warn(month.expires_at - timedelta(days=2)) == 0
        assert expiry.warn(month.expires_at - timedelta(hours=20)) == 1
        assert expiry.warn(month.expires_at - timedelta(hours=1)) == 0
    run_worker()
    assert kinds(device) == ["expires_1d", "expires_3d"]
    assert kinds(actors.devices[1]) == []
    assert len(memory.outbox) == 2


class _PushService(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        headers = {k.lower(): v for k, v in self.headers.items()}
        type(self).received.append((headers, body))
        ok = (
            headers.get("content-encoding") == "aes128gcm"
            and headers.get("authorization", "").startswith("vapid t=")
            and headers.get("ttl")
        )
        self.send_response(201 if ok else 400)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_web_push_to_a_subscribed_app(
    actors: Actors, alice: Client, owner: tuple[Client, Customer]
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    client, _customer = owner
    _PushService.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PushService)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # The browser's keys: a P-256 key pair and a 16-byte auth secret.
        browser = ec.generate_private_key(ec.SECP256R1())
        p256dh = browser.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        import base64

        def b64(raw: bytes) -> str:
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        key = client.get("/api/v1/push/key").json()["public_key"]
        assert len(base64.urlsafe_b64decode(key + "==")) == 65
        endpoint = f"http://127.0.0.1:{server.server_address[1]}/push/abc"
        response = client.post(
            "/api/v1/push/subscriptions",
            data={"endpoint": endpoint, "keys": {"p256dh": b64(p256dh), "auth": b64(b"0" * 16)}},
            content_type="application/json",
        )
        assert response.status_code == 201, response.content
        topup(alice, actors.device, "day-1g")
        use(actors.device, (900 * MB, "p1"))
        run_worker()
        [(headers, body)] = _PushService.received
        assert headers["content-encoding"] == "aes128gcm", headers
        assert f"k={key}" in headers["authorization"]
        assert b"used" not in body  # encrypted
        assert AlertDelivery.objects.get(channel="push").status == "sent"
        sub = response.json()["id"]
        assert client.delete(f"/api/v1/push/subscriptions/{sub}").status_code == 204
        assert client.delete(f"/api/v1/push/subscriptions/{sub}").status_code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_a_failed_channel_is_retried(
    actors: Actors, alice: Client, owner: tuple[Client, Customer], settings: Any
) -> None:
    settings.SMS_SENDER = "simtopup.notifications.backends.http_sms.HttpSmsSender"
    settings.SMS_HTTP_URL = "http://127.0.0.1:9/nothing"
    topup(alice, actors.device, "day-1g")
    use(actors.device, (900 * MB, "r1"))
    run_worker()
    delivery = AlertDelivery.objects.get(channel="sms")
    assert delivery.status == "pending"
    assert delivery.attempts == 1
    assert delivery.last_error
    settings.SMS_SENDER = "memory"
    AlertDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    assert alerts.deliver_due() == 1
    assert alerts.deliver_due() == 0
    assert len(memory.outbox) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers: PostgreSQL")
def test_concurrent_batches_raise_each_alert_once(actors: Actors, alice: Client) -> None:
    device, card = actors.device, actors.devices[1]
    topup(alice, device, "day-1g")
    topup(alice, card, "credit-50")  # 500 MB of credit, warned below 100 MB
    start = timezone.now()
    assert device.iccid is not None
    assert card.iccid is not None
    iccid, card_iccid = device.iccid, card.iccid
    errors: list[BaseException] = []

    def batch(n: int) -> None:
        try:
            end = start + timedelta(seconds=1)
            records = [UsageIn(f"k{n}-{i}", iccid, 4 * MB, start, end) for i in range(40)]
            records += [UsageIn(f"p{n}-{i}", card_iccid, 2 * MB, start, end) for i in range(40)]
            ingest(records)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=batch, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert kinds(device) == ["used_100", "used_80"]
    assert kinds(card) == ["credit_exhausted", "credit_low"]
    assert audit() == []


def test_the_website_subscribes_the_installed_app(db: None) -> None:
    from simtopup.usage.models import PushSubscription
    from simtopup.web.session import SESSION_KEY

    customer = Customer.objects.create(phone="+8613800138078")
    client = Client(enforce_csrf_checks=True)
    client.get("/")  # the csrftoken cookie
    csrf = client.cookies["csrftoken"].value
    body = {
        "endpoint": "http://127.0.0.1:9/push/xyz",
        "keys": {"p256dh": "B" * 87, "auth": "a" * 22},
    }

    def send(method: str, payload: Any, token: str = csrf) -> Any:
        return client.generic(
            method,
            "/push/subscription",
            json.dumps(payload),
            content_type="application/json",
            HTTP_X_CSRFTOKEN=token,
        )

    assert send("POST", body).status_code == 401  # nobody logged in
    session = client.session
    session[SESSION_KEY] = customer.pk
    session.save()
    assert send("POST", body, token="wrong").status_code == 403  # CSRF
    assert send("POST", {"endpoint": 5}).status_code == 400
    assert send("POST", {**body, "endpoint": "ftp://127.0.0.1/x/y/z"}).status_code == 422
    assert send("POST", body).status_code == 201
    assert send("POST", body).status_code == 201  # again: the same row
    assert PushSubscription.objects.filter(customer=customer).count() == 1
    assert send("DELETE", {"endpoint": body["endpoint"]}).status_code == 204
    assert not PushSubscription.objects.exists()
    key = client.get("/push/key").json()["public_key"]
    assert key == Client().get("/push/key").json()["public_key"]
    worker = Client().get("/sw.js").content
    assert b'addEventListener("push"' in worker
    assert b'addEventListener("notificationclick"' in worker


def test_expiry_job_resumes_where_it_stopped(
    actors: Actors, alice: Client, owner: tuple[Client, Customer]
) -> None:
    from django.core.management import call_command

    for device in actors.devices[:3]:
        topup(alice, device, "day-1g")
    now = timezone.now()
    Bundle.objects.update(starts_at=now - timedelta(days=1), expires_at=now - timedelta(seconds=5))
    with TestCase.captureOnCommitCallbacks(execute=True):
        # A pass that stops after one bundle (limit: as if the worker died there) …
        assert expiry.close_ended(now, limit=1) == 1
        # … and the next passes finish the rest, closing nothing twice.
        assert expiry.run(now) == {"warned": 0, "closed": 2}
        assert expiry.run(now) == {"warned": 0, "closed": 0}
    assert Bundle.objects.filter(closed_at=None).count() == 0
    assert Transfer.objects.filter(kind="bundle_expiry").count() == 3
    assert Alert.objects.filter(kind="expired").count() == 3
    call_command("check_ledger")  # raises CommandError (exit 1) on a violation
    # A bundle that ended long before (older than the alert window) is closed silently.
    topup(alice, actors.devices[3], "day-1g")
    old = Bundle.objects.get(device=actors.devices[3])
    Bundle.objects.filter(pk=old.pk).update(
        starts_at=now - timedelta(days=10), expires_at=now - timedelta(days=9)
    )
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert expiry.run(now) == {"warned": 0, "closed": 1}
    assert not Alert.objects.filter(bundle=old).exists()
    assert audit() == []


def test_an_alert_whose_task_was_lost_is_delivered_by_the_janitor(
    actors: Actors, alice: Client, owner: tuple[Client, Customer]
) -> None:
    topup(alice, actors.device, "day-1g")
    now = timezone.now()
    # Raised, committed, but its task never enqueued (a crash right after the commit).
    Alert.objects.create(
        key=f"b:{Bundle.objects.get().pk}:used_80",
        kind="used_80",
        device=actors.device,
        bundle=Bundle.objects.get(),
        facts={"remaining": 100 * MB},
        created_at=now,
    )
    assert alerts.deliver_due() == 0  # too young to count as lost
    Alert.objects.update(created_at=now - timedelta(minutes=3))
    assert alerts.deliver_due() == 1
    assert alerts.deliver_due() == 0
    [message] = memory.outbox
    assert "80%" in message.body
    assert Alert.objects.get().planned_at is not None


def test_push_endpoints_are_vetted(settings: Any) -> None:
    from simtopup.notifications import push

    settings.WEBHOOK_ALLOW_PRIVATE = False
    assert push.vet("https://127.0.0.1/push") == "refused"  # loopback
    assert push.vet("http://push.example/x") == "refused"  # not https
    assert push.vet("https://[ff02::1]/x") == "refused"
    assert push.vet("https://no-such-host.invalid/x") == "lookup_failed"  # later, not never
    assert push.send("https://no-such-host.invalid/x", "k", "a", b"{}").startswith("push failed")
    assert push.send("https://10.0.0.1/x", "k", "a", b"{}") == "gone"
    settings.WEBHOOK_ALLOW_PRIVATE = True
    assert push.vet("http://127.0.0.1:9/push") is None


def test_the_alerts_page_on_the_website(
    actors: Actors, alice: Client, owner: tuple[Client, Customer]
) -> None:
    from simtopup.usage.models import AlertSettings
    from simtopup.web.session import SESSION_KEY

    _app, customer = owner
    device = actors.device
    web = Client()
    session = web.session
    session[SESSION_KEY] = customer.pk
    session.save()
    url = f"/my/devices/{device.pk}/alerts"
    assert f'href="{url}"' in web.get(f"/my/devices/{device.pk}").content.decode()
    page = web.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="sms"' in html
    assert 'name="email"' not in html  # no email address to send to
    assert "data-push-toggle" in html
    assert "¥10.00" in html  # the default: 100 MB at ¥0.10
    saved = web.post(url, {"push": "on", "credit_threshold": "25.50"})
    assert saved.status_code == 302
    chosen = AlertSettings.objects.get(device=device)
    assert (chosen.sms, chosen.email, chosen.push) == (False, False, True)
    assert chosen.credit_threshold == 2550
    bad = web.post(url, {"sms": "on", "credit_threshold": "2.555"})
    assert bad.status_code == 422
    assert "invalid" in bad.content.decode()
    assert AlertSettings.objects.get(device=device).sms is False  # nothing saved
    assert web.post(url, {"sms": "on", "credit_threshold": ""}).status_code == 302
    assert AlertSettings.objects.get(device=device).credit_threshold is None
    # Someone else's card: a plain 404.
    assert web.get(f"/my/devices/{actors.devices[2].pk}/alerts").status_code == 404
    Customer.objects.filter(pk=customer.pk).update(language="zh-hans")
    chinese = web.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "一键充值" in chinese
