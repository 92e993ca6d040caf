"""The `simtopup` command: demo, reseller management, serve (web + worker, Ctrl-C stops all)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Q
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from simtopup.catalog.models import Plan
from simtopup.devices.binding import pin_matches
from simtopup.devices.models import Device
from simtopup.ledger.audit import audit
from simtopup.resellers.models import Reseller, ResellerMember, ResellerStatus
from tests.staff_support import code_of
from tests.support import post_json, reseller_client


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_demo_is_idempotent(db: None) -> None:
    first = run("demo", "--devices", "8")
    counts = (Plan.objects.count(), Device.objects.count(), Reseller.objects.count())
    second = run("demo", "--devices", "8")
    assert counts == (Plan.objects.count(), Device.objects.count(), Reseller.objects.count())
    assert counts == (7, 8, 1)
    assert "password:" in first
    assert "sk_demo_" in second
    assert audit() == []


def test_demo_key_works(db: None) -> None:
    output = run("demo", "--devices", "4")
    key = next(word for word in output.split() if word.startswith("sk_demo_"))
    device = Device.objects.order_by("pk").first()
    assert device is not None
    response = post_json(
        reseller_client(key),
        "/reseller/v1/topups",
        {"device": device.iccid, "plan": "day-1g", "reference": "demo-1"},
    )
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "fulfilled"


def test_reseller_create_credit_suspend(db: None) -> None:
    created = json.loads(
        run(
            "reseller",
            "create",
            "--name",
            "Shop 1",
            "--float",
            "1000.00",
            "--currency",
            "CNY",
            "--discount",
            "0.08",
        )
    )
    reseller = Reseller.objects.get(pk=created["id"])
    assert reseller.discount_bps == 800
    assert created["api_key"].startswith("sk_")
    assert reseller.api_keys.get().key_hash != created["api_key"]  # stored hashed
    client = reseller_client(created["api_key"])
    assert client.get("/reseller/v1/float").json() == {
        "balance": {"amount": "1000.00", "currency": "CNY"}
    }
    credited = json.loads(
        run("reseller", "credit", str(reseller.pk), "250.50", "--reason", "bank transfer 42")
    )
    assert credited["float"] == {"amount": "1250.50", "currency": "CNY"}
    run("reseller", "suspend", str(reseller.pk))
    reseller.refresh_from_db()
    assert reseller.status == ResellerStatus.SUSPENDED
    assert client.get("/reseller/v1/float").json()["code"] == "reseller_suspended"
    assert audit() == []


@pytest.mark.parametrize(
    "args",
    [
        ["credit", "999", "1.00", "--reason", "x"],
        ["create", "--name", "A", "--float", "1.001"],
        ["create", "--name", "A", "--float", "-5"],
        ["create", "--name", "A", "--discount", "1.5"],
        ["create", "--name", "A", "--currency", "XYZ"],
    ],
)
def test_reseller_command_errors(db: None, args: list[str]) -> None:
    with pytest.raises(CommandError):
        run("reseller", *args)
    assert Reseller.objects.count() == 0


def test_credit_needs_a_positive_amount(db: None) -> None:
    created = json.loads(run("reseller", "create", "--name", "Shop"))
    with pytest.raises(CommandError):
        run("reseller", "credit", str(created["id"]), "0", "--reason", "nothing")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(proc.name))
    return found


@pytest.mark.slow
def test_serve_runs_web_and_worker_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "SIMTOPUP_DATA_DIR": str(tmp_path),
        "SIMTOPUP_DATABASE_URL": f"sqlite:///{tmp_path}/serve.sqlite3",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "simtopup.cli", "serve", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    assert json.load(r) == {"status": "ready"}
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.3)
        children = _children(proc.pid)
        assert len(children) == 2  # granian (web) + worker
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/openapi.json", timeout=5) as r:
            spec = json.load(r)
        assert "/reseller/v1/topups" in spec["paths"]
        assert "/network/v1/usage" in spec["paths"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            assert b"/api/docs" in r.read()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        time.sleep(0.5)
        for child in children:
            assert (
                not Path(f"/proc/{child}").exists()
                or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
            )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


DEMO_LINE = {
    "website": re.compile(r"^  website: +(\S+)/$", re.M),
    "operator": re.compile(r"^  operator console: (\S+)  user: (\S+)  password: (\S+)", re.M),
    "operator_link": re.compile(r"^    second factor: open this one-time .*: (http\S+)$", re.M),
    "portal": re.compile(r"^  reseller portal: +(\S+)  user: (\S+)  password: (\S+)", re.M),
    "esim": re.compile(r"^ {4}esim +ICCID (\d+)  PIN (\d+)  or activation code (\S+)$", re.M),
    "sim": re.compile(r"^ {4}sim +ICCID (\d+)  PIN (\d+)$", re.M),
    "hotspot": re.compile(r"^ {4}hotspot +IMEI (\d{15})  PIN (\d+)  \(its serial (\S+) ", re.M),
}


def test_demo_prints_the_first_hours_logins_and_three_kinds_of_card(
    db: None, settings: Any
) -> None:
    settings.SITE_URL = "http://127.0.0.1:8123"
    output = run("demo")
    lines = {name: pattern.search(output) for name, pattern in DEMO_LINE.items()}
    assert all(lines.values()), output
    assert lines["website"][1] == "http://127.0.0.1:8123"  # type: ignore[index]
    assert len(output.splitlines()) < 20, output  # short: three cards, not twenty
    assert "20 demo cards in all" in output

    # The portal owner logs in with the printed password and sees the demo reseller's portal.
    _url, owner, password = lines["portal"].groups()  # type: ignore[union-attr]
    browser = Client(HTTP_ACCEPT_LANGUAGE="en")
    login = browser.post("/agent/login", {"username": owner, "password": password})
    assert login.status_code == 302, login.content
    assert browser.get(login["Location"]).status_code == 200
    member = ResellerMember.objects.get(user__username=owner)
    assert (member.role, member.reseller.code) == ("owner", "AGDEMO0001")
    # The operator logs in to the console with the printed password.
    _url, user, operator_password = lines["operator"].groups()  # type: ignore[union-attr]
    assert Client().login(username=user, password=operator_password)
    # The console wants a second factor: the password alone enrols none (refused, told to
    # ask for a link); the demo printed the operator's one-time enrolment link instead.
    console = Client()
    first = console.post(
        "/admin/login/", {"username": user, "password": operator_password, "otp_token": ""}
    )
    assert first.status_code == 200
    assert "enrolment link" in first.content.decode()
    assert "leave the code empty" not in output
    link = DEMO_LINE["operator_link"].search(output)
    assert link is not None, output
    assert link[1].startswith("http://127.0.0.1:8123/admin/enrol/")
    path = link[1].removeprefix("http://127.0.0.1:8123")
    assert console.get(path).status_code == 200
    device = TOTPDevice.objects.get(user__username=user, confirmed=False)
    enrolled = console.post(path, {"otp_token": code_of(device)})  # the password is kept
    assert enrolled["Location"] == "/admin/enrol/recovery-codes/", enrolled.content
    assert console.get("/admin/").status_code == 200
    # Each printed ID with its PIN names a card of its kind.
    for kind in ("esim", "sim", "hotspot"):
        number, pin = lines[kind].groups()[:2]  # type: ignore[union-attr]
        device = Device.objects.get(Q(iccid=number) | Q(imei=number))
        assert device.kind == kind
        assert pin_matches(device.pin_hash, pin)
    serial = lines["hotspot"][3]  # type: ignore[index]
    assert Device.objects.get(serial=serial).imei == lines["hotspot"][1]  # type: ignore[index]

    # Again: nothing new, the same logins (kept, not reset), still short.
    again = run("demo")
    assert ResellerMember.objects.count() == 1
    portal_again = DEMO_LINE["portal"].search(again)
    assert portal_again is not None
    assert portal_again.groups() == lines["portal"].groups()  # type: ignore[union-attr]
    assert f"password: {password} (unless you changed it)" in again
    # The operator has an authenticator now: no new link.
    assert DEMO_LINE["operator_link"].search(again) is None
    assert "the code of the authenticator app enrolled" in again
    assert browser.post("/agent/logout").status_code in (200, 302)
    assert (
        Client().post("/agent/login", {"username": owner, "password": password}).status_code == 302
    )
