"""Shared fixtures: real database, real migrations, side effects run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from tests.support import Actors, reseller_client


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
