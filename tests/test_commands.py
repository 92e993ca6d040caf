"""The `simtopup` command: demo, reseller management, serve (web + worker, Ctrl-C stops all)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from simtopup.catalog.models import Plan
from simtopup.devices.models import Device
from simtopup.ledger.audit import audit
from simtopup.resellers.models import Reseller, ResellerStatus
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
