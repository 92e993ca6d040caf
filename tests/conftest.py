"""Shared fixtures: real database, real migrations, side effects run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from tests.support import Actors, reseller_client

# The suite runs the sandbox gateway with DEBUG off, as a test installation: so do the
# simtopup processes tests start (serve, worker), which inherit the environment.
# tests/test_deploy_checks.py tests the refusal itself.
os.environ.setdefault("SIMTOPUP_SANDBOX_ALLOWED", "1")
# The suite's tests read English: the site's default language (SIMTOPUP_LANGUAGE, zh-hans
# unless set) is English for them and for the processes they start. tests/test_language.py
# tests the default itself.
os.environ.setdefault("SIMTOPUP_LANGUAGE", "en")


@pytest.fixture
def actors(db: None) -> Actors:
    return Actors()


@pytest.fixture
def alice(actors: Actors) -> Client:
    return reseller_client(actors.alice_key)


@pytest.fixture(autouse=True)
def _run_on_commit(django_capture_on_commit_callbacks: Any) -> Iterator[None]:
    # Side effects scheduled with on_commit run in tests (Zulip-style).
    with django_capture_on_commit_callbacks(execute=True):
        yield


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _test_installation(settings: Any) -> None:
    settings.SANDBOX_ALLOWED = True  # see SIMTOPUP_SANDBOX_ALLOWED above


@pytest.fixture(autouse=True)
def _tests_read_english(settings: Any) -> None:
    settings.LANGUAGE_CODE = "en"  # see SIMTOPUP_LANGUAGE above
