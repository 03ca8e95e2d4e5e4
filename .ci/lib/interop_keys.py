"""Signing keys and approval credentials from Python, for .ci/keys-interop.sh.

Uses only the `cryptography` package and the standard library, the way an integrator's own
tooling would: read an Ed25519 PKCS#8 PEM key, sign a ByteOr approval-credentials-v1 credential
(canonical JSON payload, base64url without padding, Ed25519 over the payload bytes), and write
keys as PKCS#8 v2 (RFC 5958 OneAsymmetricKey with the public key) to check that form is read.
"""

import argparse
import base64
import hashlib
import json
import sys
from datetime import datetime, timedelta, timezone

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# DER prefixes of an Ed25519 PKCS#8 key: v1 (RFC 8410) is prefix + 32-byte seed; v2 adds the
# public key as [1] IMPLICIT BIT STRING after the seed.
V2_PREFIX = bytes.fromhex("3051020101300506032b657004220420")
V2_PUBLIC_TAG = bytes.fromhex("812100")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def load_key(path: str) -> Ed25519PrivateKey:
    with open(path, "rb") as file:
        key = serialization.load_pem_private_key(file.read(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        sys.exit(f"{path}: not an Ed25519 private key")
    return key


def public_x(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return b64url(raw)


def v2_pem(key: Ed25519PrivateKey) -> bytes:
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    der = V2_PREFIX + seed + V2_PUBLIC_TAG + public
    body = base64.b64encode(der).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return ("-----BEGIN PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END PRIVATE KEY-----\n").encode()


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def credential(key: Ed25519PrivateKey, args: argparse.Namespace) -> str:
    with open(args.spec, "rb") as file:
        spec_hash = "sha256:" + hashlib.sha256(file.read()).hexdigest()
    now = datetime.now(timezone.utc).replace(microsecond=0)
    payload = {
        "v": 1,
        "kid": args.kid,
        "org_id": args.org,
        "project_id": args.project,
        "environment_id": args.env,
        "environment_posture": args.posture,
        "spec_hash": spec_hash,
        "capabilities": args.capability,
        "issued_at": rfc3339(now),
        "expires_at": rfc3339(now + timedelta(seconds=args.ttl)),
        "issued_by": args.issued_by,
        "approval_id": args.approval_id,
    }
    # RFC 8785 canonical form for these values: sorted keys, no whitespace, UTF-8, and only
    # strings, small integers and arrays of strings (no floats to format).
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    payload_bytes = canonical.encode("utf-8")
    return b64url(payload_bytes) + "." + b64url(key.sign(payload_bytes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    public = commands.add_parser("public-x", help="print the key's public x (base64url)")
    public.add_argument("key")
    new_v2 = commands.add_parser("new-v2", help="write a new key as PKCS#8 v2 PEM; print its x")
    new_v2.add_argument("out")
    to_v2 = commands.add_parser("to-v2", help="rewrite a key file as PKCS#8 v2 PEM")
    to_v2.add_argument("key")
    add_jwk = commands.add_parser("add-jwk", help="add a public key (x) to a JWKS as active")
    add_jwk.add_argument("jwks")
    add_jwk.add_argument("kid")
    add_jwk.add_argument("x")
    jwk_x = commands.add_parser("jwk-x", help="print the x of kid in a JWKS")
    jwk_x.add_argument("jwks")
    jwk_x.add_argument("kid")
    sign = commands.add_parser("sign", help="print a signed approval credential")
    sign.add_argument("key")
    for flag in ("kid", "org", "project", "env", "posture", "spec", "issued-by", "approval-id"):
        sign.add_argument(f"--{flag}", required=True)
    sign.add_argument("--capability", action="append", required=True)
    sign.add_argument("--ttl", type=int, default=600, help="lifetime in seconds")
    args = parser.parse_args()

    if args.command == "public-x":
        print(public_x(load_key(args.key)))
    elif args.command == "new-v2":
        # Held in memory: OpenSSL 3.0 and `cryptography` do not read the v2 form back.
        key = Ed25519PrivateKey.generate()
        with open(args.out, "wb") as file:
            file.write(v2_pem(key))
        print(public_x(key))
    elif args.command == "to-v2":
        pem = v2_pem(load_key(args.key))
        with open(args.key, "wb") as file:
            file.write(pem)
    elif args.command == "add-jwk":
        with open(args.jwks) as file:
            key_set = json.load(file)
        key_set["keys"].append(
            {
                "kty": "OKP",
                "crv": "Ed25519",
                "kid": args.kid,
                "alg": "EdDSA",
                "x": args.x,
                "status": "active",
            }
        )
        with open(args.jwks, "w") as file:
            json.dump(key_set, file)
    elif args.command == "jwk-x":
        with open(args.jwks) as file:
            keys = [k for k in json.load(file)["keys"] if k["kid"] == args.kid]
        if len(keys) != 1:
            sys.exit(f"{args.jwks}: expected one key {args.kid!r}, found {len(keys)}")
        print(keys[0]["x"])
    elif args.command == "sign":
        print(credential(load_key(args.key), args))


if __name__ == "__main__":
    main()
