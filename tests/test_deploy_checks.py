"""Safe to deploy: with DEBUG off, an unsafe configuration is refused by the system checks
(`simtopup check --deploy`, and `serve` / `worker` at start-up), each refusal naming the
variable to fix; secrets that are not set are random per installation, kept in the data
directory (mode 0600), never derived from anything an outsider knows."""

from __future__ import annotations

import json
import os
import secrets
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from simtopup.core import keyfile
from simtopup.ops.checks import installation_notes
from tests.processes import free_port, simtopup

SAFE = {
    "DEBUG": False,
    "SANDBOX_ALLOWED": False,
    "PAYMENT_PROVIDER": "stripe",
    "PAYMENT_ROUTES": {},
    "SECRET_KEY": secrets.token_urlsafe(48),
    "NETWORK_SECRET": secrets.token_urlsafe(32),
    "GENERATED_SECRETS": {},
    "SESSION_COOKIE_SECURE": True,
    "SITE_URL": "https://topup.example.com",
    "WEBHOOK_ALLOW_PRIVATE": False,
}


@pytest.fixture
def production(settings: Any, db: None) -> Any:
    """A production configuration that passes; each test breaks one thing. (`check` asks
    the database whether it supports JSON fields: hence ``db``.)"""
    for name, value in SAFE.items():
        setattr(settings, name, value)
    return settings


def check_deploy() -> tuple[bool, str]:
    """(passed, everything `check --deploy` printed)."""
    out, err = StringIO(), StringIO()
    try:
        call_command("check", deploy=True, stdout=out, stderr=err)
    except SystemCheckError as exc:
        return False, str(exc) + out.getvalue() + err.getvalue()
    return True, out.getvalue() + err.getvalue()


def errors_of(report: str) -> set[str]:
    """The simtopup error ids in a check report."""
    return {word.strip("()") for word in report.split() if word.startswith("(simtopup.E")}


def test_production_configuration_passes(production: Any) -> None:
    passed, report = check_deploy()
    assert passed, report
    assert "simtopup." not in report


UNSAFE = [
    # (what, settings, error id, words the message or hint must contain)
    (
        "sandbox by default",
        {"PAYMENT_PROVIDER": "sandbox"},
        "simtopup.E001",
        ["SIMTOPUP_PAYMENT_PROVIDER", "SIMTOPUP_SANDBOX_ALLOWED=1", "card, alipay, wechat_pay"],
    ),
    (
        "sandbox by a route",
        {"PAYMENT_ROUTES": {"card": "stripe", "alipay": "sandbox"}},
        "simtopup.E001",
        ["SIMTOPUP_PAYMENT_ROUTES", "alipay", "SIMTOPUP_SANDBOX_ALLOWED=1"],
    ),
    (
        "the old development key of a short data dir",
        {"SECRET_KEY": "insecure-dev-key-/srv"},
        "simtopup.E002",
        ["SIMTOPUP_SECRET_KEY"],
    ),
    (
        "the old development key of a long data dir",
        {"SECRET_KEY": "insecure-dev-key-" + "/srv/simtopup/installation" * 8},
        "simtopup.E002",
        ["SIMTOPUP_SECRET_KEY"],
    ),
    (
        "Django's insecure key, long enough",
        {"SECRET_KEY": "django-insecure-" + "x7Qp2" * 20},
        "simtopup.E002",
        ["SIMTOPUP_SECRET_KEY"],
    ),
    (
        "the development network secret",
        {"NETWORK_SECRET": "dev-network-secret"},
        "simtopup.E003",
        ["SIMTOPUP_NETWORK_SECRET"],
    ),
    (
        "http site with secure cookies",
        {"SITE_URL": "http://topup.example.com"},
        "simtopup.E004",
        ["SIMTOPUP_SITE_URL", "SIMTOPUP_SECURE_COOKIES=1", "https://"],
    ),
    (
        "an unknown provider",
        {"PAYMENT_PROVIDER": "strpe"},
        "simtopup.E005",
        ["SIMTOPUP_PAYMENT_PROVIDER", "'strpe'"],
    ),
    (
        "a route to no method",
        {"PAYMENT_ROUTES": {"wechat": "wechatpay"}},
        "simtopup.E006",
        ["SIMTOPUP_PAYMENT_ROUTES", "wechat=wechatpay", "wechat_pay"],
    ),
]


@pytest.mark.parametrize(
    ("what", "unsafe", "error", "words"), UNSAFE, ids=[case[0] for case in UNSAFE]
)
def test_check_deploy_refuses_and_names_the_variable(
    production: Any, what: str, unsafe: dict[str, Any], error: str, words: list[str]
) -> None:
    for name, value in unsafe.items():
        setattr(production, name, value)
    passed, report = check_deploy()
    assert not passed, report
    assert errors_of(report) == {error}, report
    for word in words:
        assert word in report, (word, report)
    # Fixed: the refusal is gone.
    for name in unsafe:
        setattr(production, name, SAFE[name])
    passed, report = check_deploy()
    assert passed, report
    assert error not in report


def test_sandbox_allowed_lets_a_test_installation_pass(production: Any) -> None:
    production.PAYMENT_PROVIDER = "sandbox"
    assert not check_deploy()[0]
    production.SANDBOX_ALLOWED = True
    passed, report = check_deploy()
    assert passed, report
    assert "simtopup.E001" not in report


def test_debug_mode_turns_the_checks_off(production: Any) -> None:
    production.PAYMENT_PROVIDER = "sandbox"
    production.NETWORK_SECRET = "dev-network-secret"
    production.DEBUG = True
    passed, report = check_deploy()
    assert passed, report
    assert errors_of(report) == set()


def test_generated_secrets_warn_about_several_hosts_and_open_files(
    production: Any, tmp_path: Path
) -> None:
    key = tmp_path / "secret_key"
    keyfile.read_or_create(key)
    production.GENERATED_SECRETS = {"SECRET_KEY": str(key)}
    passed, report = check_deploy()
    assert passed, report  # a random private key is acceptable: a warning, not an error
    assert "simtopup.W001" in report
    assert "SIMTOPUP_SECRET_KEY" in report
    assert str(key) in report
    assert "simtopup.W002" not in report
    key.chmod(0o644)
    passed, report = check_deploy()
    assert passed
    assert "simtopup.W002" in report
    assert f"chmod 600 {key}" in report


def test_short_network_secret_warns(production: Any) -> None:
    production.NETWORK_SECRET = "short-but-not-dev"
    passed, report = check_deploy()
    assert passed, report
    assert "simtopup.W003" in report


def test_private_webhook_targets_warn(production: Any) -> None:
    production.WEBHOOK_ALLOW_PRIVATE = True
    passed, report = check_deploy()
    assert passed, report
    assert "simtopup.W004" in report
    assert "SIMTOPUP_WEBHOOK_ALLOW_PRIVATE" in report


def test_notes_say_demo_installation(production: Any, tmp_path: Path) -> None:
    assert installation_notes() == []
    production.PAYMENT_PROVIDER = "sandbox"
    production.SANDBOX_ALLOWED = True
    production.GENERATED_SECRETS = {"NETWORK_SECRET": str(tmp_path / "network_secret")}
    notes = "\n".join(installation_notes())
    assert "demo/test installation" in notes
    assert "SIMTOPUP_PAYMENT_PROVIDER" in notes
    assert str(tmp_path / "network_secret") in notes


def test_worker_refuses_the_sandbox_in_production(production: Any) -> None:
    production.PAYMENT_PROVIDER = "sandbox"
    with pytest.raises(SystemCheckError, match="SIMTOPUP_SANDBOX_ALLOWED"):
        call_command("worker", once=True)


# --- generated secrets --------------------------------------------------------------------


def test_generated_file_is_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "data" / "secret_key"
    old = os.umask(0)  # even so: 0600
    try:
        first = keyfile.read_or_create(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 50
    assert keyfile.read_or_create(path) == first
    assert keyfile.read_or_create(tmp_path / "elsewhere" / "secret_key") != first
    assert sorted(p.name for p in path.parent.iterdir()) == ["secret_key"]  # no temporary left


def test_generated_file_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(src: Any, dst: Any) -> None:
        raise PermissionError("hard links not supported")

    monkeypatch.setattr(keyfile.os, "link", no_links)
    path = tmp_path / "secret_key"
    value = keyfile.read_or_create(path)
    assert path.read_text().strip() == value
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keyfile.read_or_create(path) == value


def test_threads_starting_at_once_get_the_same_key(tmp_path: Path) -> None:
    path = tmp_path / "secret_key"
    barrier = threading.Barrier(16)
    values: list[str] = []

    def read() -> None:
        barrier.wait()
        values.append(keyfile.read_or_create(path))

    threads = [threading.Thread(target=read) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(values) == 16
    assert len(set(values)) == 1
    assert values[0] == path.read_text().strip()


def settings_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """A simtopup process's environment: no SIMTOPUP_* inherited but ``settings``."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("SIMTOPUP_")}
    return {
        **inherited,
        "SIMTOPUP_DATA_DIR": str(data_dir),
        "SIMTOPUP_DATABASE_URL": f"sqlite:///{data_dir / 'simtopup.sqlite3'}",
        **{f"SIMTOPUP_{name}": value for name, value in settings.items()},
        "DJANGO_SETTINGS_MODULE": "simtopup.settings",
        "PYTHONUNBUFFERED": "1",
    }


SHOW_SECRETS = """
import json, time, django
start = float(__import__("sys").argv[1])
time.sleep(max(0.0, start - time.time()))
django.setup()
from django.conf import settings
from simtopup.payments.providers.sandbox import webhook_secret
print(json.dumps([settings.SECRET_KEY, settings.NETWORK_SECRET, webhook_secret()]))
"""


def secrets_of_processes(data_dir: Path, count: int, **settings: str) -> list[list[str]]:
    """The secrets ``count`` processes started together on ``data_dir`` see."""
    start = time.time() + 1.5  # all import Django first, then read the files at once
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", SHOW_SECRETS, str(start)],
            env=settings_env(data_dir, **settings),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    found = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        found.append(json.loads(out))
    return found


def test_processes_of_one_installation_share_random_secrets(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    seen = secrets_of_processes(data_dir, 6)
    assert all(secrets == seen[0] for secrets in seen), seen  # one winner, read by all
    key, network, sandbox = seen[0]
    for path in (data_dir / "secret_key", data_dir / "network_secret"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (data_dir / "secret_key").read_text().strip() == key
    assert (data_dir / "network_secret").read_text().strip() == network
    # Nothing about them comes from the path: not the old default, not in the value.
    assert key != f"insecure-dev-key-{data_dir}"
    assert str(data_dir) not in key
    assert network != "dev-network-secret"
    # The same directory later: the same secrets. Another directory with the same layout
    # elsewhere: different ones, the sandbox's webhook secret (derived from the key) too.
    assert secrets_of_processes(data_dir, 1)[0] == seen[0]
    other = secrets_of_processes(tmp_path / "other" / "var", 1)[0]
    assert other[0] != key
    assert other[1] != network
    assert other[2] != sandbox


def test_secrets_set_explicitly_win_and_no_file_is_made(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    [seen] = secrets_of_processes(data_dir, 1, SECRET_KEY="k" * 60, NETWORK_SECRET="n" * 40)
    assert seen[:2] == ["k" * 60, "n" * 40]
    assert not (data_dir / "secret_key").exists()
    assert not (data_dir / "network_secret").exists()


# --- serve and worker at start-up ---------------------------------------------------------


def test_serve_refuses_the_sandbox_in_production(tmp_path: Path) -> None:
    env = settings_env(tmp_path, DEBUG="0")
    done = subprocess.run(
        simtopup("serve", "--port", str(free_port()), "--workers", "1"),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "serve refuses to start" in output
    assert "simtopup.E001" in output
    assert "SIMTOPUP_SANDBOX_ALLOWED=1" in output
    assert "serving on" not in output


def test_serve_refuses_a_development_secret(tmp_path: Path) -> None:
    env = settings_env(
        tmp_path, SANDBOX_ALLOWED="1", SECRET_KEY="insecure-dev-key-" + "/opt/simtopup" * 10
    )
    done = subprocess.run(
        simtopup("serve", "--port", str(free_port()), "--workers", "1"),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "simtopup.E002" in output
    assert "SIMTOPUP_SECRET_KEY" in output


def test_worker_process_refuses_the_sandbox_in_production(tmp_path: Path) -> None:
    done = subprocess.run(
        simtopup("worker", "--once"),
        env=settings_env(tmp_path, PAYMENT_PROVIDER="sandbox"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "worker refuses to start" in output
    assert "SIMTOPUP_SANDBOX_ALLOWED=1" in output


@pytest.mark.slow
def test_serve_starts_in_make_runs_configuration(tmp_path: Path) -> None:
    """`make run`: nothing configured but SIMTOPUP_SANDBOX_ALLOWED=1 — a demo that starts
    and says what it is."""
    port = free_port()
    env = settings_env(tmp_path / "var", SANDBOX_ALLOWED="1")
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        simtopup("serve", "--port", str(port), "--workers", "1"),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    assert json.load(r) == {"status": "ready"}
                    break
            except OSError:
                output = (tmp_path / "serve.log").read_text(errors="replace")
                assert process.poll() is None, output
                assert time.monotonic() < deadline, output
                time.sleep(0.3)
        deadline = time.monotonic() + 10
        while "Before going live" not in (tmp_path / "serve.log").read_text(errors="replace"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        log.close()
    output = (tmp_path / "serve.log").read_text(errors="replace")
    assert "demo/test installation" in output
    assert str(tmp_path / "var" / "secret_key") in output
    assert str(tmp_path / "var" / "network_secret") in output
    assert "refuses" not in output
