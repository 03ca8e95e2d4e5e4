#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/: a few small valid (and nearly valid)
inputs per fuzz target. The committed files came from this script; run it again after a
format change (needs the `cryptography` package for the Ed25519 credential signatures).

Credentials are signed with the fixed fuzz key of src/lib.rs (seed 7 x 32, kid fuzz-2026),
so the credential target reaches the verified path from them.
"""

import base64
import hashlib
import json
import pathlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

CORPUS = pathlib.Path(__file__).resolve().parent / "corpus"

SPEC = b"pipeline=payments-api\nversion=2026.11.3\nreplicas=3\n"
SPEC_HASH = "sha256:" + hashlib.sha256(SPEC).hexdigest()
DIGEST = "sha256:" + "ab" * 32


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def key(byte: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([byte]) * 32)


def credential(signer: int = 7, **overrides) -> str:
    claims = {
        "v": 1,
        "kid": "fuzz-2026",
        "org_id": "acme",
        "project_id": "payments",
        "environment_id": "prod",
        "environment_posture": "prod",
        "spec_hash": SPEC_HASH,
        "capabilities": ["deploy"],
        "issued_at": "2026-11-23T10:00:00Z",
        "expires_at": "2026-11-23T11:00:00Z",
        "issued_by": "spiffe://acme.example/reviewer/alice",
        "approval_id": "apr_01",
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    # RFC 8785 for this ASCII-only content: sorted keys, no whitespace.
    payload = json.dumps(claims, sort_keys=True, separators=(",", ":")).encode()
    return f"{b64url(payload)}.{b64url(key(signer).sign(payload))}"


def jwk(kid: str, byte: int, status: str | None) -> dict:
    public = key(byte).public_key().public_bytes_raw()
    entry = {"kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA", "x": b64url(public)}
    if status is not None:
        entry["status"] = status
    return entry


# --- protobuf, hand-encoded (field numbers from proto/byteor/admission/v1/admission.proto) ---


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number: int, value) -> bytes:
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint(number << 3 | 2) + varint(len(value)) + value


def message(*fields) -> bytes:
    return b"".join(field(n, v) for n, v in fields if v is not None)


def environment(env: str = "prod") -> bytes:
    return message((1, "acme"), (2, "payments"), (3, env))


def deploy(credentials=(), break_glass=None, spec=SPEC, request_id="deploy-001") -> bytes:
    bundle = message((1, "payments-prod-42"), (2, DIGEST), (3, "prod"))
    fields = [
        (1, request_id),
        (2, environment()),
        (3, "2026.11.3"),
        (4, spec),
        (5, bundle),
        (6, "db.migrate"),
    ]
    fields += [(7, c) for c in credentials]
    fields += [(8, "user:dana@acme.example")]
    if break_glass is not None:
        fields.append((9, message((1, break_glass))))
    return b"\x00" + message(*fields)


def replay(mode: int, credentials=()) -> bytes:
    artifact = message((1, "artifact-7"), (2, DIGEST), (3, "prod"))
    fields = [
        (1, "replay-001"),
        (2, environment()),
        (3, mode),
        (4, "INC-1234"),
        (5, SPEC),
        (6, artifact),
    ]
    fields += [(8, c) for c in credentials]
    fields += [(9, "user:dana@acme.example")]
    return b"\x01" + message(*fields)


CONFIG_HEAD = """listen = "127.0.0.1:50051"
database_url = "sqlite://admission.db"
key_set = "fuzz-keys.json"

[tls]
cert = "server.pem"
key = "server.key"
client_ca = "ca.pem"
crls = []
"""

CONFIG_SIGNING = """
[signing]
kid = "fuzz-2026"
private_key = "fuzz-signing.key"
"""

CONFIG_ROLES = """
[[roles]]
identity = "spiffe://acme.example/orchestrator/*"
roles = ["orchestrator", "break_glass"]
environments = ["acme/payments/*"]

[[roles]]
identity = "spiffe://acme.example/reviewer/alice"
roles = ["reviewer"]
"""

CONFIG_FULL_ENVIRONMENT = """
[[environments]]
org_id = "acme"
project_id = "payments"
environment_id = "prod"
posture = "prod"
side_effects = "require_approval"
replay = "allowed"
required_capabilities = { deploy = ["deploy"], replay_execute = ["replay.execute"] }
gated_capabilities = ["db.migrate"]
required_approvals = 1
max_credential_ttl = "1h"
max_uses = 1
enforcement = "enforce"
break_glass = false
clock_skew = "30s"
"""

CONFIG_SMALL_ENVIRONMENT = """
[[environments]]
org_id = "acme"
project_id = "payments"
environment_id = "dev"
posture = "dev"
enforcement = "audit_only"
"""

CONFIG_TUNING = """
[limits]
spec_kv_max_bytes = 1048576
max_credentials = 8
credential_max_bytes = 16384

[audit]
durable_timeout = "2s"
"""


def seeds() -> dict[str, dict[str, bytes]]:
    keys = [jwk("fuzz-2026", 7, "active"), jwk("fuzz-retired", 8, "retired")]
    return {
        "credential": {
            "valid": credential().encode(),
            "retired-key": credential(signer=8, kid="fuzz-retired").encode(),
            "revoked-key": credential(signer=9, kid="fuzz-revoked").encode(),
            "unknown-key": credential(signer=10, kid="somebody-else").encode(),
            "version-2": credential(v=2).encode(),
            "bundle-digest": credential(config_bundle_digest=DIGEST).encode(),
            "wrong-signature": credential(signer=8).encode(),
            "missing-field": credential(approval_id=None).encode(),
        },
        "spec_kv": {
            "canonical": SPEC,
            "one-line": b"a=b\n",
            "empty-value": b"key.with-dots_1=\nother==x\n",
            "duplicate": b"a=1\na=2\n",
            "no-newline": b"a=1",
        },
        "key_set": {
            "two-keys": json.dumps({"keys": keys}).encode(),
            "revoked-and-default-status": json.dumps(
                {"keys": [jwk("fuzz-revoked", 9, "revoked"), jwk("plain", 11, None)]}
            ).encode(),
            "duplicate-kid": json.dumps({"keys": [keys[0], keys[0]]}).encode(),
        },
        "config": {
            "full": (
                CONFIG_HEAD
                + CONFIG_SIGNING
                + CONFIG_ROLES
                + CONFIG_FULL_ENVIRONMENT
                + CONFIG_SMALL_ENVIRONMENT
                + CONFIG_TUNING
            ).encode(),
            "minimal": (CONFIG_HEAD + CONFIG_SMALL_ENVIRONMENT).encode(),
            "roles-only": (CONFIG_HEAD + CONFIG_ROLES).encode(),
        },
        "request": {
            "deploy": deploy(),
            "deploy-with-credential": deploy(credentials=[credential()]),
            "deploy-break-glass": deploy(break_glass="incident INC-1234: hotfix"),
            "deploy-bad-spec": deploy(spec=b"a=1\r\n", request_id="bad id"),
            "replay-dry-run": replay(1),
            "replay-execute": replay(2, credentials=[credential()]),
        },
    }


def main() -> None:
    for target, inputs in seeds().items():
        directory = CORPUS / target
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in inputs.items():
            (directory / f"seed-{name}").write_bytes(data)


if __name__ == "__main__":
    main()
