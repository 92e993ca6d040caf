"""Keys and certificates for the payment provider tests, generated at test time with
``cryptography`` — nothing secret is committed, and every run uses fresh material.

Also the signing each gateway does on its side (Alipay's RSA2 over sorted ``k=v`` pairs,
WeChat Pay's RSA-SHA256 over ``timestamp\\nnonce\\nbody\\n`` and its AES-256-GCM resource
encryption), written here independently of the SDKs the providers use, so a test proves that
the provider accepts what the real gateway sends rather than what the SDK itself produced.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class KeyPair:
    private_key: rsa.RSAPrivateKey

    @property
    def private_pem(self) -> str:
        """PKCS#8 PEM."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    @property
    def private_pem_pkcs1(self) -> str:
        """ "BEGIN RSA PRIVATE KEY" PEM, as some key tools write."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ).decode()

    @property
    def public_pem(self) -> str:
        return (
            self.private_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    @property
    def public_base64(self) -> str:
        """Bare base64 DER, the way Alipay's console shows its public key."""
        der = self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    @property
    def private_base64(self) -> str:
        """Bare base64 PKCS#8 DER, as Alipay's key tool prints the app's private key."""
        der = self.private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return base64.b64encode(der).decode()

    def sign_sha256(self, message: bytes) -> str:
        """RSASSA-PKCS1-v1_5 with SHA-256, base64 — RSA2 at Alipay, WeChat Pay's signatures."""
        signature = self.private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(signature).decode()

    def verify_sha256(self, message: bytes, signature: str) -> bool:
        try:
            self.private_key.public_key().verify(
                base64.b64decode(signature), message, padding.PKCS1v15(), hashes.SHA256()
            )
        except Exception:
            return False
        return True


def new_key_pair() -> KeyPair:
    return KeyPair(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@cache
def key_pair(label: str) -> KeyPair:
    """One fresh key pair per label per test run (generating RSA keys takes a moment)."""
    return new_key_pair()


def self_signed_certificate(keys: KeyPair, serial_number: int, common_name: str) -> str:
    """A PEM certificate for ``keys`` valid from yesterday for a year, with ``serial_number``
    (WeChat Pay names its platform certificates by serial number)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(keys.private_key.public_key())
        .serial_number(serial_number)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(keys.private_key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


# --- Alipay ---------------------------------------------------------------------------------


def alipay_sign_content(params: dict[str, str], *, exclude: tuple[str, ...]) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k not in exclude)


def alipay_sign(params: dict[str, str], keys: KeyPair) -> str:
    """Alipay's signature of a notification: RSA2 over the sorted ``k=v&…`` string of all
    fields except ``sign`` and ``sign_type``."""
    content = alipay_sign_content(params, exclude=("sign", "sign_type"))
    return keys.sign_sha256(content.encode())


# --- WeChat Pay -----------------------------------------------------------------------------


def apiv3_key() -> str:
    """A 32-character APIv3 key like the merchant platform's."""
    return secrets.token_hex(16)


def wechat_encrypt(plaintext: dict[str, Any], key: str, associated_data: str) -> dict[str, str]:
    """A notification's ``resource``: AEAD_AES_256_GCM with the APIv3 key, 12-char nonce."""
    nonce = secrets.token_hex(6)
    ciphertext = AESGCM(key.encode()).encrypt(
        nonce.encode(),
        json.dumps(plaintext, ensure_ascii=False).encode(),
        associated_data.encode(),
    )
    return {
        "algorithm": "AEAD_AES_256_GCM",
        "ciphertext": base64.b64encode(ciphertext).decode(),
        "associated_data": associated_data,
        "original_type": "transaction",
        "nonce": nonce,
    }


def wechat_signature_headers(
    body: bytes, keys: KeyPair, serial: str, *, timestamp: int | None = None
) -> dict[str, str]:
    """The headers WeChat Pay signs a notification or an API answer with."""
    import time

    t = str(int(time.time()) if timestamp is None else timestamp)
    nonce = base64.b16encode(os.urandom(16)).decode()
    message = f"{t}\n{nonce}\n".encode() + body + b"\n"
    return {
        "Wechatpay-Timestamp": t,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": keys.sign_sha256(message),
        "Wechatpay-Serial": serial,
        "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
    }
