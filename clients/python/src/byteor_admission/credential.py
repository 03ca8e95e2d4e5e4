"""Spec hashes and offline approval credentials (ByteOr approval-credentials-v1).

A credential is `BASE64URL(payload) "." BASE64URL(signature)` without padding: the payload is the
claims as RFC 8785 canonical JSON, the signature Ed25519 over exactly those bytes. Times are
RFC 3339 UTC with `Z` and whole seconds.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from os import PathLike
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

#: The only credential format version defined.
CREDENTIAL_VERSION = 1

POSTURES = ("dev", "staging", "prod")

_SPEC_HASH = re.compile(r"sha256:[0-9a-f]{64}")


def spec_hash(spec_kv: bytes) -> str:
    """`"sha256:" + hex(SHA-256(spec_kv))` over the bytes exactly as they will be sent."""
    if not isinstance(spec_kv, bytes | bytearray | memoryview):
        raise TypeError(f"spec_kv must be bytes, got {type(spec_kv).__name__}")
    return "sha256:" + hashlib.sha256(spec_kv).hexdigest()


@dataclass(frozen=True)
class CredentialClaims:
    """What an approval credential grants: one spec, one environment, some capabilities."""

    org_id: str
    project_id: str
    environment_id: str
    environment_posture: str
    spec_hash: str
    capabilities: Sequence[str]
    issued_at: datetime
    expires_at: datetime
    issued_by: str
    approval_id: str
    config_bundle_digest: str | None = None
    v: int = field(default=CREDENTIAL_VERSION)

    @classmethod
    def valid_for(
        cls, ttl: timedelta, *, now: datetime | None = None, **fields: Any
    ) -> CredentialClaims:
        """Claims issued at `now` (default: the current time) that expire `ttl` later."""
        issued_at = _whole_seconds("now", now or datetime.now(timezone.utc))
        return cls(issued_at=issued_at, expires_at=issued_at + ttl, **fields)

    def payload(self, kid: str) -> dict[str, Any]:
        """The JSON object to sign, after checking every field."""
        self._check()
        issued_at = format_time("issued_at", self.issued_at)
        expires_at = format_time("expires_at", self.expires_at)
        # Same fixed-width format on both sides, so text order is time order.
        if expires_at <= issued_at:
            raise ValueError(f"expires_at ({expires_at}) must be after issued_at ({issued_at})")
        payload: dict[str, Any] = {
            "v": self.v,
            "kid": _text("kid", kid),
            "org_id": self.org_id,
            "project_id": self.project_id,
            "environment_id": self.environment_id,
            "environment_posture": self.environment_posture,
            "spec_hash": self.spec_hash,
            "capabilities": list(self.capabilities),
            "issued_at": issued_at,
            "expires_at": expires_at,
            "issued_by": self.issued_by,
            "approval_id": self.approval_id,
        }
        if self.config_bundle_digest is not None:
            payload["config_bundle_digest"] = self.config_bundle_digest
        return payload

    def _check(self) -> None:
        if self.v != CREDENTIAL_VERSION:
            raise ValueError(f"v must be {CREDENTIAL_VERSION}, got {self.v!r}")
        for name in ("org_id", "project_id", "environment_id", "issued_by", "approval_id"):
            _text(name, getattr(self, name))
        if self.environment_posture not in POSTURES:
            raise ValueError(
                f"environment_posture must be one of {', '.join(POSTURES)}, "
                f"got {self.environment_posture!r}"
            )
        _digest("spec_hash", self.spec_hash)
        if self.config_bundle_digest is not None:
            _digest("config_bundle_digest", self.config_bundle_digest)
        if isinstance(self.capabilities, str) or not all(
            isinstance(c, str) and c for c in self.capabilities
        ):
            raise ValueError("capabilities must be a list of non-empty strings")


class CredentialSigner:
    """Signs approval credentials offline with an Ed25519 key whose `kid` the service trusts."""

    def __init__(self, private_key: Ed25519PrivateKey, kid: str) -> None:
        if not isinstance(private_key, Ed25519PrivateKey):
            raise TypeError(f"signing key must be Ed25519, got {type(private_key).__name__}")
        self._key = private_key
        self.kid = _text("kid", kid)

    @classmethod
    def from_pem(cls, pem: bytes, kid: str) -> CredentialSigner:
        """Loads an unencrypted PKCS#8 PEM Ed25519 private key."""
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as error:
            raise ValueError(f"signing key is not a readable PKCS#8 PEM key: {error}") from error
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"signing key must be Ed25519, got {type(key).__name__}")
        return cls(key, kid)

    @classmethod
    def from_pem_file(cls, path: str | PathLike[str], kid: str) -> CredentialSigner:
        """Loads the key from a PKCS#8 PEM file, such as dev mode's `signing.key`."""
        try:
            pem = Path(path).read_bytes()
        except OSError as error:
            raise ValueError(f"signing key: cannot read {path}: {error.strerror}") from error
        return cls.from_pem(pem, kid)

    def public_key_raw(self) -> bytes:
        """The 32-byte public key (the JWKS `x`, before base64url)."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def sign(self, claims: CredentialClaims) -> str:
        """The credential for `claims`: `b64url(payload).b64url(signature)`."""
        payload = canonical_json(claims.payload(self.kid))
        return f"{_b64url(payload)}.{_b64url(self._key.sign(payload))}"


def canonical_json(value: dict[str, Any]) -> bytes:
    """RFC 8785 canonical JSON for objects of strings, string arrays and small integers."""
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return text.encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError) as error:
        raise ValueError(f"claims cannot be written as canonical json: {error}") from error


def decode_credential(token: str) -> dict[str, Any]:
    """The claims of a credential, decoded but **not verified**: for display and tests only."""
    payload, dot, signature = token.partition(".")
    if not dot or not payload or not signature or "." in signature:
        raise ValueError("credential must be two base64url parts joined by '.'")
    claims = json.loads(_unb64url(payload))
    if not isinstance(claims, dict):
        raise ValueError("credential payload is not a json object")
    return claims


def format_time(name: str, moment: datetime) -> str:
    """RFC 3339 UTC with `Z` and whole seconds; naive datetimes are refused."""
    utc = _whole_seconds(name, moment)
    if utc.year < 1970:
        raise ValueError(f"{name} must not be before 1970-01-01T00:00:00Z, got {utc.isoformat()}")
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def _whole_seconds(name: str, moment: datetime) -> datetime:
    if not isinstance(moment, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (for example datetime.now(timezone.utc))")
    return moment.astimezone(timezone.utc).replace(microsecond=0)


def _text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _digest(name: str, value: object) -> None:
    if not isinstance(value, str) or not _SPEC_HASH.fullmatch(value):
        raise ValueError(f"{name} must be 'sha256:' and 64 lowercase hex digits, got {value!r}")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError as error:
        raise ValueError(f"credential is not base64url: {error}") from error
