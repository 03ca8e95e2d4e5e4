#!/usr/bin/env python3
"""The independent verifier against the real service: admissions made with the Python client,
their receipts, inclusion proofs, a consistency proof and the signed checkpoints, all checked by
the code of verify_fixtures.py (RFC 6962/9162, C2SP signed-note, securesystemslib's DSSE), with
the log's public key read from the log.pub that dev mode writes.

Usage: verify_live.py (ADMISSION_SERVER_BIN names the release admission-server). Starts
`admission-server dev` in a temporary directory, admits a few deploys, saves a checkpoint,
admits more, and verifies. Exits 0 when everything verifies and the tampered copies are
rejected, 1 otherwise.
"""

from __future__ import annotations

import hashlib
import os
import re
import selectors
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
from byteor.admission.v1 import admission_pb2, audit_pb2, audit_pb2_grpc, types_pb2
from byteor_admission import connect
from verify_fixtures import (
    Checkpoint,
    Invalid,
    VerifierKey,
    mth,
    open_checkpoint,
    parse_verifier_key,
    rejected,
    verify_consistency,
    verify_inclusion,
    verify_receipt,
)

# A cold start on a loaded machine; the server normally prints within a second.
STARTUP_SECONDS = 60.0
# How long to wait for the service to sign a checkpoint covering the admissions made.
CHECKPOINT_SECONDS = 60.0


def start_dev(server_bin: str, dev_dir: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Starts `admission-server dev` and reads the port from the instructions it prints."""
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [server_bin, "dev", "--dir", str(dev_dir), "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout.fileno(), selectors.EVENT_READ)
    printed = b""
    while selector.select(timeout=STARTUP_SECONDS):
        chunk = os.read(process.stdout.fileno(), 4096)
        if not chunk:
            break
        printed += chunk
        match = re.search(rb"https://localhost:(\d+)\D", printed)
        if match:
            return process, int(match.group(1))
    process.kill()
    raise Invalid(f"admission-server dev printed no endpoint: {printed!r} {log.read_text()}")


def audit_stub(dev_dir: Path, port: int) -> audit_pb2_grpc.AuditStub:
    """The generated Audit stub over mTLS as dev mode's auditor."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(dev_dir / "ca.pem").read_bytes(),
        private_key=(dev_dir / "auditor.key").read_bytes(),
        certificate_chain=(dev_dir / "auditor.pem").read_bytes(),
    )
    channel = grpc.secure_channel(f"localhost:{port}", credentials)
    return audit_pb2_grpc.AuditStub(channel)


def deploy_request(spec: bytes) -> admission_pb2.DeployRequest:
    return admission_pb2.DeployRequest(
        request_id=f"transparency-{uuid.uuid4().hex}",
        environment=types_pb2.EnvironmentRef(org_id="dev", project_id="app", environment_id="dev"),
        pipeline_version="2026.12.02",
        spec_kv=spec,
        config_bundle=admission_pb2.ConfigBundle(
            bundle_id="transparency-bundle",
            digest="sha256:" + hashlib.sha256(b"bundle\n").hexdigest(),
            environment_id="dev",
        ),
        initiated_by="auditor-check@example.com",
    )


def signed_checkpoint(
    audit: audit_pb2_grpc.AuditStub, key: VerifierKey, at_least: int
) -> tuple[str, Checkpoint]:
    """The service's latest checkpoint once it covers `at_least` entries, opened with `key`."""
    deadline = time.monotonic() + CHECKPOINT_SECONDS
    while True:
        answer = audit.GetCheckpoint(audit_pb2.GetCheckpointRequest(), timeout=10)
        checkpoint = open_checkpoint(answer.note, key)
        if (checkpoint.size, checkpoint.root) != (answer.tree_size, answer.root_hash):
            raise Invalid("the checkpoint's fields disagree with its signed note")
        if checkpoint.size >= at_least:
            return answer.note, checkpoint
        if time.monotonic() > deadline:
            raise Invalid(f"no checkpoint covers {at_least} entries: latest {checkpoint.size}")
        time.sleep(0.2)


def leaf_of(predicate: dict) -> bytes:
    """The receipt's entry_hash as the raw 32-byte leaf (`sha256:` prefix optional)."""
    text = predicate["entry_hash"].removeprefix("sha256:")
    leaf = bytes.fromhex(text)
    if len(leaf) != 32:
        raise Invalid(f"entry_hash {text} is not 32 bytes")
    return leaf


def check_live(server_bin: str, work: Path) -> str:
    dev_dir = work / "dev"
    process, port = start_dev(server_bin, dev_dir, work / "server.log")
    try:
        return check_service(dev_dir, port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def check_service(dev_dir: Path, port: int) -> str:
    key = parse_verifier_key((dev_dir / "log.pub").read_text())
    endpoint = f"https://localhost:{port}"
    orchestrator = connect(
        endpoint,
        ca=dev_dir / "ca.pem",
        cert=dev_dir / "orchestrator.pem",
        key=dev_dir / "orchestrator.key",
    )
    audit = audit_stub(dev_dir, port)
    admitted: list[tuple[bytes, admission_pb2.Admission]] = []

    def admit(count: int) -> None:
        for _ in range(count):
            spec = f"image=registry.test/app:{uuid.uuid4().hex}\nreplicas=2\n".encode()
            admitted.append((spec, orchestrator.admit_deploy(deploy_request(spec))))

    with orchestrator:
        admit(3)
        first = len(list_entries(audit))
        old_note, old = signed_checkpoint(audit, key, first)
        admit(4)
        _, new = signed_checkpoint(audit, key, len(list_entries(audit)))

    # The tree heads are MTH over the listed entry hashes, computed here from the definition.
    # Audit hashes are written `sha256:` + hex (SPEC formats); the leaf is the raw 32 bytes.
    entries = [bytes.fromhex(e.entry_hash.removeprefix("sha256:")) for e in list_entries(audit)]
    if mth(entries[: old.size]) != old.root or mth(entries[: new.size]) != new.root:
        raise Invalid("a signed root is not MTH of the listed entries")

    for spec, admission in admitted:
        predicate = verify_receipt(admission.receipt, key, spec)
        if predicate["decision_id"] != admission.decision_id:
            raise Invalid(f"the receipt of {admission.decision_id} names another decision")
        leaf = leaf_of(predicate)
        proof = audit.ProveInclusion(
            audit_pb2.ProveInclusionRequest(decision_id=admission.decision_id, tree_size=new.size),
            timeout=10,
        )
        if (proof.leaf_index, proof.tree_size) != (predicate["log_index"], new.size):
            raise Invalid(f"the proof of {admission.decision_id} is for another leaf or size")
        if proof.entry_hash != leaf or entries[proof.leaf_index] != leaf:
            raise Invalid(f"the log's leaf for {admission.decision_id} is not its receipt's")
        verify_inclusion(proof.leaf_index, new.size, leaf, list(proof.hashes), new.root)

    consistency = audit.ProveConsistency(
        audit_pb2.ProveConsistencyRequest(old_size=old.size, new_size=new.size), timeout=10
    )
    hashes = list(consistency.hashes)
    verify_consistency(old.size, new.size, old.root, new.root, hashes)
    check_live_tampering(old_note, key, old, new, hashes, entries)
    return (
        f"ok: {len(admitted)} receipts and their inclusion proofs in the signed tree of"
        f" {new.size}, consistency {old.size} -> {new.size}, roots equal MTH of the entries"
    )


def list_entries(audit: audit_pb2_grpc.AuditStub) -> list[audit_pb2.AuditEntry]:
    entries: list[audit_pb2.AuditEntry] = []
    request = audit_pb2.ListAuditRequest(page_size=1000)
    while True:
        page = audit.List(request, timeout=10)
        entries.extend(page.entries)
        if not page.next_page_token:
            return entries
        request.page_token = page.next_page_token


def check_live_tampering(
    old_note: str,
    key: VerifierKey,
    old: Checkpoint,
    new: Checkpoint,
    hashes: list[bytes],
    entries: list[bytes],
) -> None:
    """What a rewritten log would show must not verify."""
    rewritten = [*entries[: old.size - 1], hashlib.sha256(b"rewritten").digest()]
    other_key = VerifierKey(key.name, key.key_id, bytes(32))
    attacks = {
        "the saved checkpoint under another key": lambda: open_checkpoint(old_note, other_key),
        "a rewritten old tree": lambda: verify_consistency(
            old.size, new.size, mth(rewritten), new.root, hashes
        ),
        "a truncated new tree": lambda: verify_consistency(
            old.size, new.size, old.root, mth(entries[: new.size - 1]), hashes
        ),
    }
    for name, attack in attacks.items():
        if not rejected(attack):
            raise Invalid(f"{name} was accepted")


def main() -> int:
    server_bin = os.environ.get("ADMISSION_SERVER_BIN")
    if not server_bin or not os.access(server_bin, os.X_OK):
        print("verify_live: ADMISSION_SERVER_BIN must name admission-server", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as work:
        try:
            print(check_live(server_bin, Path(work)))
        except (Invalid, grpc.RpcError) as error:
            print(f"verify_live: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
