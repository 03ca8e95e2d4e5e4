#!/usr/bin/env python3
"""An independent verifier of the admission log's public artefacts.

Written from RFC 6962 / RFC 9162 section 2.1, C2SP tlog-checkpoint and signed-note, and DSSE,
not from the service's code: the tree hashing and proof checks are below, DSSE is
securesystemslib's (Envelope, SSlibKey), Ed25519 is pyca/cryptography's.

Usage: verify_fixtures.py DIR, where DIR holds log.pub, spec.kv, receipt.json,
checkpoint-old.txt, checkpoint-new.txt and proofs.json (hashes base64, as in the proto3 JSON of
Audit.ProveInclusion / Audit.ProveConsistency). Exits 0 when everything verifies and every
tampered copy is rejected, 1 otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import SSlibKey

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://byteor.dev/admission/v1"


class Invalid(Exception):
    """Something does not verify."""


# --- RFC 6962 section 2.1 ---------------------------------------------------------------------


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) by its definition, splitting at the largest power of two smaller than n."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaf_hash(leaves[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def verify_inclusion(index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes) -> None:
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        raise Invalid(f"leaf {index} is not in a tree of {size}")
    fn, sn, r = index, size - 1, leaf_hash(leaf)
    for p in proof:
        if sn == 0:
            raise Invalid("inclusion proof too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not (fn & 1) and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0 or r != root:
        raise Invalid(f"inclusion proof of leaf {index} in {size} does not lead to the root")


def verify_consistency(
    first: int, second: int, first_hash: bytes, second_hash: bytes, proof: list[bytes]
) -> None:
    """RFC 9162 section 2.1.4.2."""
    if not 0 < first <= second:
        raise Invalid(f"no consistency from {first} to {second}")
    if first == second:
        if proof or first_hash != second_hash:
            raise Invalid("equal sizes, different roots")
        return
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_hash)
    if not path:
        raise Invalid("empty consistency proof")
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise Invalid("consistency proof too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not (fn & 1) and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != first_hash or sr != second_hash:
        raise Invalid(f"consistency proof from {first} to {second} does not join the roots")


# --- C2SP signed-note and tlog-checkpoint -----------------------------------------------------


@dataclass
class VerifierKey:
    name: str
    key_id: bytes
    public: bytes


def parse_verifier_key(line: str) -> VerifierKey:
    name, key_id_hex, key_b64 = line.strip().split("+", 2)
    key = base64.b64decode(key_b64, validate=True)
    if len(key) != 33 or key[0] != 0x01:
        raise Invalid("not an Ed25519 verifier key")
    public = key[1:]
    key_id = hashlib.sha256(name.encode() + b"\n\x01" + public).digest()[:4]
    if key_id.hex() != key_id_hex:
        raise Invalid("verifier key id does not match")
    return VerifierKey(name, key_id, public)


def open_note(note: str, key: VerifierKey) -> str:
    split = note.rindex("\n\n")
    text, signatures = note[: split + 1], note[split + 2 :]
    if not signatures.endswith("\n"):
        raise Invalid("signature block does not end in a newline")
    public = Ed25519PublicKey.from_public_bytes(key.public)
    for line in signatures[:-1].split("\n"):
        if not line.startswith("\u2014 "):
            raise Invalid(f"bad signature line {line!r}")
        name, blob_b64 = line[2:].split(" ")
        blob = base64.b64decode(blob_b64, validate=True)
        if name != key.name or blob[:4] != key.key_id:
            continue
        try:
            public.verify(blob[4:], text.encode())
        except InvalidSignature as error:
            raise Invalid("checkpoint signature does not verify") from error
        return text
    raise Invalid("no signature by the log key")


@dataclass
class Checkpoint:
    origin: str
    size: int
    root: bytes


def open_checkpoint(note: str, key: VerifierKey) -> Checkpoint:
    lines = open_note(note, key).split("\n")
    origin, size, root = lines[0], lines[1], base64.b64decode(lines[2], validate=True)
    if origin != key.name or not size.isdigit() or len(root) != 32:
        raise Invalid("malformed checkpoint")
    return Checkpoint(origin, int(size), root)


# --- DSSE receipt -----------------------------------------------------------------------------


def verify_receipt(receipt: bytes, key: VerifierKey, spec: bytes) -> dict:
    envelope = Envelope.from_dict(json.loads(receipt))
    if envelope.payload_type != PAYLOAD_TYPE:
        raise Invalid(f"payloadType {envelope.payload_type}")
    sslib_key = SSlibKey(
        keyid=f"{key.name}+{key.key_id.hex()}",
        keytype="ed25519",
        scheme="ed25519",
        keyval={"public": key.public.hex()},
    )
    try:
        envelope.verify([sslib_key], 1)
    except VerificationError as error:
        raise Invalid(f"receipt signature: {error}") from error
    statement = json.loads(envelope.payload)
    if statement["_type"] != STATEMENT_TYPE or statement["predicateType"] != PREDICATE_TYPE:
        raise Invalid("not an admission statement")
    [subject] = statement["subject"]
    if subject["name"] != "spec.kv":
        raise Invalid("subject is not spec.kv")
    if subject["digest"]["sha256"] != hashlib.sha256(spec).hexdigest():
        raise Invalid("receipt is about another spec")
    return statement["predicate"]


# --- the checks -------------------------------------------------------------------------------


def b64list(values: list[str]) -> list[bytes]:
    return [base64.b64decode(v, validate=True) for v in values]


def check_all(d: Path) -> None:
    key = parse_verifier_key((d / "log.pub").read_text())
    old = open_checkpoint((d / "checkpoint-old.txt").read_text(), key)
    new = open_checkpoint((d / "checkpoint-new.txt").read_text(), key)
    proofs = json.loads((d / "proofs.json").read_text())
    entries = [bytes.fromhex(h) for h in proofs["entry_hashes"]]

    # The tree heads are MTH over the entry hashes, computed here from the definition.
    if mth(entries[: old.size]) != old.root or mth(entries[: new.size]) != new.root:
        raise Invalid("a checkpoint root is not MTH of the entries")
    roots = {old.size: old.root, new.size: new.root}
    for p in proofs["inclusion"]:
        index, size = p["leaf_index"], p["tree_size"]
        verify_inclusion(index, size, entries[index], b64list(p["hashes"]), roots[size])
    c = proofs["consistency"]
    if (c["old_size"], c["new_size"]) != (old.size, new.size):
        raise Invalid("consistency proof is for other sizes")
    verify_consistency(old.size, new.size, old.root, new.root, b64list(c["hashes"]))

    spec = (d / "spec.kv").read_bytes()
    receipt = (d / "receipt.json").read_bytes()
    predicate = verify_receipt(receipt, key, spec)
    index = predicate["log_index"]
    if "sha256:" + entries[index].hex() != predicate["entry_hash"]:
        raise Invalid("the receipt's entry_hash is not the log's leaf at log_index")
    [proof] = [
        p for p in proofs["inclusion"] if p["leaf_index"] == index and p["tree_size"] == new.size
    ]
    verify_inclusion(index, new.size, entries[index], b64list(proof["hashes"]), new.root)
    check_tampering(d, key, old, new, proofs, receipt, spec, entries)
    print(
        f"ok: {len(proofs['inclusion'])} inclusion proofs, consistency {old.size} -> {new.size},"
        f" receipt of {predicate['decision_id']} at log index {index}"
    )


def rejected(check) -> bool:
    try:
        check()
    except (Invalid, ValueError, KeyError):
        return True
    return False


def check_tampering(d, key, old, new, proofs, receipt, spec, entries) -> None:
    note = (d / "checkpoint-new.txt").read_text()
    flipped = note.replace(f"\n{new.size}\n", f"\n{new.size + 1}\n", 1)
    c = proofs["consistency"]
    hashes = b64list(c["hashes"])
    bad = [bytes([hashes[0][0] ^ 1]) + hashes[0][1:], *hashes[1:]]
    cut = mth(entries[: old.size - 1])
    envelope = json.loads(receipt)
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["environment"] = "acme/shop/dev"
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    swapped = json.dumps(envelope).encode()
    attacks = {
        "a checkpoint with a changed size": lambda: open_checkpoint(flipped, key),
        "a consistency proof with a flipped bit": lambda: verify_consistency(
            old.size, new.size, old.root, new.root, bad
        ),
        "a shorter log posing as the old one": lambda: verify_consistency(
            old.size, new.size, cut, new.root, hashes
        ),
        "a receipt with a swapped payload": lambda: verify_receipt(swapped, key, spec),
        "a receipt checked against another spec": lambda: verify_receipt(receipt, key, spec + b"x"),
        "an inclusion proof of the wrong leaf": lambda: verify_inclusion(
            0, new.size, entries[1], b64list(proofs["inclusion"][0]["hashes"]), old.root
        ),
    }
    for name, attack in attacks.items():
        if not rejected(attack):
            raise Invalid(f"{name} was accepted")


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        check_all(Path(sys.argv[1]))
    except Invalid as error:
        print(f"verify_fixtures: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
