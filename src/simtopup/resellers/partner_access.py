"""Credentials of the Airalo-compatible partner API (``/partner/v2/``, simtopup/partner/).

A reseller integrated with Airalo's Partner API gets OAuth2 client credentials here
(``simtopup reseller oauth create ID``), exchanges them for an access token with the client
credentials grant, and signs each top-up with the client secret (``airalo-signature``:
hex HMAC-SHA512 of the request's JSON, as Airalo's SDK computes it). Secrets and tokens are
random 256-bit strings, so a plain SHA-256 is a safe lookup key; the secret is also kept
encrypted (``PartnerCredential`` says why). Creating and revoking write who did it on the
credential row and log it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from simtopup.resellers.actions import hash_key
from simtopup.resellers.models import PartnerCredential, PartnerToken, Reseller

logger = logging.getLogger(__name__)

# How long an access token works (Airalo's tokens: 24 hours), sent as ``expires_in``.
TOKEN_LIFETIME = timedelta(hours=24)


def _fernet() -> Fernet:
    key = hashlib.sha256(b"simtopup partner secrets\x00" + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


@dataclass(frozen=True)
class NewCredential:
    credential: PartnerCredential
    client_id: str
    client_secret: str  # shown once


def create_credential(reseller: Reseller, actor: str) -> NewCredential:
    """New client credentials for ``reseller``; ``actor`` says who asked (the audit)."""
    client_id = secrets.token_hex(16)
    client_secret = secrets.token_urlsafe(32)
    with transaction.atomic():
        credential = PartnerCredential.objects.create(
            reseller=reseller,
            client_id=client_id,
            secret_hash=hash_key(client_secret),
            secret_encrypted=_fernet().encrypt(client_secret.encode()).decode(),
            created_by=actor[:150],
        )
    logger.info(
        "partner credential %s (client %s) created for reseller %s by %s",
        credential.pk,
        client_id,
        reseller.pk,
        actor,
    )
    return NewCredential(credential, client_id, client_secret)


def revoke_credential(client_id: str, actor: str) -> bool:
    """Revoke at once: no new token, and every token it issued stops working."""
    changed = PartnerCredential.objects.filter(client_id=client_id, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_by=actor[:150]
    )
    if changed:
        logger.info("partner credential of client %s revoked by %s", client_id, actor)
    return bool(changed)


def issue_token(client_id: str, client_secret: str) -> tuple[str, int] | None:
    """(access token, seconds it is valid) for live credentials, else None."""
    if not client_id or not client_secret or len(client_id) > 64 or len(client_secret) > 200:
        return None
    credential = PartnerCredential.objects.filter(
        client_id=client_id, revoked_at__isnull=True
    ).first()
    if credential is None or not hmac.compare_digest(
        credential.secret_hash, hash_key(client_secret)
    ):
        return None
    token = secrets.token_urlsafe(40)
    now = timezone.now()
    # This credential's expired tokens go as it gets a new one: the table stays small.
    PartnerToken.objects.filter(credential=credential, expires_at__lte=now).delete()
    PartnerToken.objects.create(
        credential=credential, token_hash=hash_key(token), expires_at=now + TOKEN_LIFETIME
    )
    return token, int(TOKEN_LIFETIME.total_seconds())


def authenticate_token(token: str) -> PartnerCredential | None:
    """The live credential (its reseller loaded) of an unexpired access token, or None."""
    if not token or len(token) > 200:
        return None
    row = (
        PartnerToken.objects.filter(
            token_hash=hash_key(token),
            expires_at__gt=timezone.now(),
            credential__revoked_at__isnull=True,
        )
        .select_related("credential__reseller__float_account")
        .first()
    )
    return row.credential if row is not None else None


def client_secret_of(credential: PartnerCredential) -> str | None:
    """The client secret, to check a request's signature; None if it cannot be read (the
    installation's SECRET_KEY changed since the credential was made: make a new one)."""
    try:
        return _fernet().decrypt(credential.secret_encrypted.encode()).decode()
    except InvalidToken:
        logger.error(
            "partner credential %s cannot be decrypted (SECRET_KEY changed?)", credential.pk
        )
        return None


def signed_text(payload: Any) -> str:
    """What ``airalo-signature`` signs: the payload as compact JSON, non-ASCII as is and
    every ``/`` escaped as ``\\/`` (the serialisation of Airalo's SDKs)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).replace("/", "\\/")


def signature_of(secret: str, payload: Any) -> str:
    return hmac.new(secret.encode(), signed_text(payload).encode(), hashlib.sha512).hexdigest()


def signature_valid(credential: PartnerCredential, header: str | None, payload: Any) -> bool:
    if not header:
        return False
    secret = client_secret_of(credential)
    if secret is None:
        return False
    return hmac.compare_digest(signature_of(secret, payload), header.strip().lower())
