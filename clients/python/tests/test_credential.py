"""The offline signer and the spec hash, without a server."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from byteor_admission import CredentialClaims, CredentialSigner, decode_credential, spec_hash

SPEC = b"pipeline=payments-api\nversion=2026.11.24\nreplicas=3\n"
ISSUED = datetime(2026, 11, 23, 10, 0, 0, tzinfo=timezone.utc)


def claims(**overrides: object) -> CredentialClaims:
    fields: dict[str, object] = {
        "org_id": "acme",
        "project_id": "payments",
        "environment_id": "prod",
        "environment_posture": "prod",
        "spec_hash": spec_hash(SPEC),
        "capabilities": ["deploy"],
        "issued_at": ISSUED,
        "expires_at": ISSUED + timedelta(minutes=15),
        "issued_by": "spiffe://acme.example/reviewer/alice",
        "approval_id": "apr_1",
    }
    fields.update(overrides)
    return CredentialClaims(**fields)  # type: ignore[arg-type]


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_spec_hash_is_sha256_of_the_bytes_as_sent() -> None:
    assert spec_hash(SPEC) == "sha256:" + hashlib.sha256(SPEC).hexdigest()
    assert spec_hash(b"") == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    with pytest.raises(TypeError, match="spec_kv must be bytes"):
        spec_hash("a=1\n")  # type: ignore[arg-type]


def test_payload_is_canonical_json_and_the_signature_covers_it() -> None:
    key = Ed25519PrivateKey.generate()
    token = CredentialSigner(key, "org-2026-11").sign(
        claims(
            issued_at=ISSUED.replace(microsecond=999_999),
            config_bundle_digest="sha256:" + "ab" * 32,
        )
    )
    payload_part, signature_part = token.split(".")
    assert "=" not in token
    payload = unb64(payload_part)
    expected = (
        '{"approval_id":"apr_1","capabilities":["deploy"],"config_bundle_digest":"sha256:'
        + "ab" * 32
        + '","environment_id":"prod","environment_posture":"prod",'
        '"expires_at":"2026-11-23T10:15:00Z","issued_at":"2026-11-23T10:00:00Z",'
        '"issued_by":"spiffe://acme.example/reviewer/alice","kid":"org-2026-11",'
        '"org_id":"acme","project_id":"payments","spec_hash":"' + spec_hash(SPEC) + '","v":1}'
    )
    assert payload == expected.encode()
    key.public_key().verify(unb64(signature_part), payload)
    assert decode_credential(token)["issued_at"] == "2026-11-23T10:00:00Z"


def test_non_ascii_text_is_written_as_utf8_not_escaped() -> None:
    token = CredentialSigner(Ed25519PrivateKey.generate(), "k").sign(claims(issued_by="renée"))
    assert b'"issued_by":"ren\xc3\xa9e"' in unb64(token.split(".")[0])


def test_times_in_other_zones_are_written_in_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    token = CredentialSigner(Ed25519PrivateKey.generate(), "k").sign(
        claims(issued_at=datetime(2026, 11, 23, 12, 0, tzinfo=plus_two))
    )
    assert decode_credential(token)["issued_at"] == "2026-11-23T10:00:00Z"


def test_valid_for_sets_both_times_in_whole_seconds() -> None:
    fields = {k: v for k, v in vars(claims()).items() if k not in ("issued_at", "expires_at", "v")}
    made = CredentialClaims.valid_for(
        timedelta(minutes=5), now=ISSUED.replace(microsecond=123), **fields
    )
    assert (made.issued_at, made.expires_at) == (ISSUED, ISSUED + timedelta(minutes=5))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"issued_at": datetime(2026, 11, 23, 10, 0)}, "issued_at must be timezone-aware"),
        ({"expires_at": ISSUED}, "expires_at .* must be after issued_at"),
        ({"expires_at": ISSUED + timedelta(milliseconds=500)}, "expires_at .* must be after"),
        ({"environment_posture": "production"}, "environment_posture must be one of"),
        ({"spec_hash": "sha256:ABC"}, "spec_hash must be 'sha256:'"),
        ({"config_bundle_digest": "md5:00"}, "config_bundle_digest must be 'sha256:'"),
        ({"capabilities": "deploy"}, "capabilities must be a list"),
        ({"capabilities": ["deploy", ""]}, "capabilities must be a list"),
        ({"org_id": ""}, "org_id must be a non-empty string"),
        ({"approval_id": None}, "approval_id must be a non-empty string"),
        ({"v": 2}, "v must be 1"),
    ],
)
def test_bad_claims_are_refused_naming_the_field(overrides: dict[str, object], field: str) -> None:
    signer = CredentialSigner(Ed25519PrivateKey.generate(), "k")
    with pytest.raises(ValueError, match=field):
        signer.sign(claims(**overrides))


def test_only_ed25519_pkcs8_keys_are_loaded(tmp_path: object) -> None:
    ec_pem = generate_private_key(SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError, match="signing key must be Ed25519"):
        CredentialSigner.from_pem(ec_pem, "k")
    with pytest.raises(ValueError, match="not a readable PKCS#8 PEM key"):
        CredentialSigner.from_pem(
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "k"
        )
    with pytest.raises(ValueError, match="signing key: cannot read"):
        CredentialSigner.from_pem_file("/nonexistent/signing.key", "k")
    with pytest.raises(ValueError, match="kid must be a non-empty string"):
        CredentialSigner(Ed25519PrivateKey.generate(), "")


def test_a_pkcs8_pem_key_round_trips_to_the_same_public_key() -> None:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    signer = CredentialSigner.from_pem(pem, "k")
    public = Ed25519PublicKey.from_public_bytes(signer.public_key_raw())
    token = signer.sign(claims())
    payload, signature = (unb64(part) for part in token.split("."))
    public.verify(signature, payload)
    assert json.loads(payload)["kid"] == "k"
