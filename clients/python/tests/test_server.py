"""The client against the real release server in dev mode, over real mTLS."""

from __future__ import annotations

import uuid
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import DevServer
from google.protobuf.duration_pb2 import Duration
from grpc_health.v1 import health_pb2

from byteor_admission import (
    AdmissionClient,
    AdmissionRejected,
    ConfigurationError,
    CredentialClaims,
    CredentialSigner,
    ErrorReason,
    connect,
    decode_credential,
    environment,
    pb,
    spec_hash,
)

INITIATOR = "alice@example.com"
REVIEWER = "spiffe://dev.local/reviewer/alice"


def new_spec() -> bytes:
    """A spec of its own for each test, so approvals of one test never match another's."""
    return f"pipeline=payments-api\nversion={uuid.uuid4().hex}\nreplicas=3\n".encode()


def deploy_request(env: str, spec: bytes, credentials: list[str] | None = None) -> pb.DeployRequest:
    ref = environment(env)
    return pb.DeployRequest(
        request_id=f"py-{uuid.uuid4().hex}",
        environment=ref,
        pipeline_version="2026.11.24",
        spec_kv=spec,
        config_bundle=pb.ConfigBundle(
            bundle_id="payments-config-42",
            digest=spec_hash(b"db_pool=20\n"),
            environment_id=ref.environment_id,
        ),
        initiated_by=INITIATOR,
        credentials=credentials or [],
    )


def offline_credential(server: DevServer, spec: bytes, **overrides: object) -> str:
    signer = CredentialSigner.from_pem_file(server.dir / "signing.key", server.kid)
    fields: dict[str, object] = {
        "org_id": "dev",
        "project_id": "app",
        "environment_id": "prod",
        "environment_posture": "prod",
        "spec_hash": spec_hash(spec),
        "capabilities": ["deploy"],
        "issued_by": REVIEWER,
        "approval_id": f"apr_py_{uuid.uuid4().hex}",
    }
    fields.update(overrides)
    return signer.sign(CredentialClaims.valid_for(timedelta(minutes=15), **fields))  # type: ignore[arg-type]


def rejection_of(call: object) -> AdmissionRejected:
    with pytest.raises(AdmissionRejected) as caught:
        call()  # type: ignore[operator]
    return caught.value


def assert_audited(auditor: AdmissionClient, decision_id: str, outcome: str, reason: str) -> None:
    request = pb.ListAuditRequest(environment=environment("dev/app/prod"), page_size=1000)
    entries = {entry.entry_id: entry for entry in auditor.iter_audit(request)}
    assert decision_id in entries, f"{decision_id} is not in the audit trail"
    assert (entries[decision_id].outcome, entries[decision_id].reason) == (outcome, reason)
    assert entries[decision_id].actor == "spiffe://dev.local/orchestrator/ci"


def test_health_is_serving(orchestrator: AdmissionClient) -> None:
    assert orchestrator.health() == health_pb2.HealthCheckResponse.SERVING


def test_preview_of_a_prod_deploy_requires_one_approval(orchestrator: AdmissionClient) -> None:
    spec = new_spec()
    preview = orchestrator.preview_deploy(deploy_request("dev/app/prod", spec))
    assert preview.policy_decision == pb.PolicyDecision.POLICY_DECISION_REQUIRE_APPROVAL
    assert preview.posture == pb.Posture.POSTURE_PROD
    assert preview.action == pb.Action.ACTION_DEPLOY
    assert preview.spec_hash == spec_hash(spec)
    assert list(preview.required_capabilities) == ["deploy"]
    assert preview.required_approvals == 1
    assert list(preview.eligible_approvals) == []
    assert preview.decision_id.startswith("dec_")


def test_a_dev_deploy_is_admitted(orchestrator: AdmissionClient, auditor: AdmissionClient) -> None:
    spec = new_spec()
    admission = orchestrator.admit_deploy(deploy_request("dev/app/dev", spec))
    assert admission.action == pb.Action.ACTION_DEPLOY
    assert admission.spec_hash == spec_hash(spec)
    assert admission.decision_id.startswith("dec_")
    assert list(admission.approval_ids) == []
    verified = auditor.verify_audit()
    assert verified.ok and verified.first_bad_seq == 0


def test_a_prod_deploy_without_approval_is_rejected(
    orchestrator: AdmissionClient, auditor: AdmissionClient
) -> None:
    rejection = rejection_of(
        lambda: orchestrator.admit_deploy(deploy_request("dev/app/prod", new_spec()))
    )
    assert rejection.reason == ErrorReason.APPROVAL_REQUIRED
    assert rejection.reason_name == "APPROVAL_REQUIRED"
    assert rejection.code == grpc.StatusCode.PERMISSION_DENIED
    assert rejection.decision_id is not None and rejection.decision_id.startswith("dec_")
    assert rejection.metadata["decision_id"] == rejection.decision_id
    assert rejection.message and rejection.message == rejection.message.lower()
    assert not rejection.retryable
    assert_audited(auditor, rejection.decision_id, "rejected", "APPROVAL_REQUIRED")


def test_the_approval_flow_admits_with_the_credentials_it_returns(
    orchestrator: AdmissionClient, reviewer: AdmissionClient, auditor: AdmissionClient
) -> None:
    spec = new_spec()
    created = orchestrator.create_approval(
        pb.CreateApprovalRequest(
            environment=environment("dev/app/prod"),
            action=pb.Action.ACTION_DEPLOY,
            spec_kv=spec,
            ttl=Duration(seconds=30 * 60),
            justification="release of payments-api",
            initiated_by=INITIATOR,
        )
    )
    assert created.state == pb.ApprovalState.APPROVAL_STATE_PENDING
    assert created.spec_hash == spec_hash(spec)
    assert list(created.credentials) == []

    approved = reviewer.approve(created.approval_id, "spec and bundle checked")
    assert approved.state == pb.ApprovalState.APPROVAL_STATE_APPROVED
    assert list(approved.approvers) == [REVIEWER]
    assert len(approved.credentials) == 1
    claims = decode_credential(approved.credentials[0])
    assert (claims["approval_id"], claims["issued_by"]) == (created.approval_id, REVIEWER)

    eligible = orchestrator.list_eligible_approvals(
        pb.ListEligibleRequest(
            environment=environment("dev/app/prod"),
            action=pb.Action.ACTION_DEPLOY,
            spec_hash=spec_hash(spec),
        )
    )
    assert [a.approval_id for a in eligible] == [created.approval_id]

    admission = orchestrator.admit_deploy(
        deploy_request("dev/app/prod", spec, list(approved.credentials))
    )
    assert list(admission.approval_ids) == [created.approval_id]
    assert orchestrator.get_approval(created.approval_id).uses == 1
    assert_audited(auditor, admission.decision_id, "admitted", "")


def test_a_denied_approval_carries_no_credentials(
    orchestrator: AdmissionClient, reviewer: AdmissionClient
) -> None:
    created = orchestrator.create_approval(
        pb.CreateApprovalRequest(
            environment=environment("dev/app/prod"),
            action=pb.Action.ACTION_DEPLOY,
            spec_hash=spec_hash(new_spec()),
            justification="release of payments-api",
            initiated_by=INITIATOR,
        )
    )
    denied = reviewer.deny(created.approval_id, "bundle not reviewed")
    assert denied.state == pb.ApprovalState.APPROVAL_STATE_DENIED
    assert list(denied.credentials) == []
    again = rejection_of(lambda: reviewer.approve(created.approval_id))
    assert again.reason == ErrorReason.APPROVAL_NOT_PENDING
    assert again.code == grpc.StatusCode.FAILED_PRECONDITION


def test_an_offline_credential_is_admitted_once_then_consumed(
    dev_server: DevServer, orchestrator: AdmissionClient, auditor: AdmissionClient
) -> None:
    spec = new_spec()
    credential = offline_credential(dev_server, spec)
    approval_id = decode_credential(credential)["approval_id"]

    admission = orchestrator.admit_deploy(deploy_request("dev/app/prod", spec, [credential]))
    assert list(admission.approval_ids) == [approval_id]
    assert_audited(auditor, admission.decision_id, "admitted", "")

    second = rejection_of(
        lambda: orchestrator.admit_deploy(deploy_request("dev/app/prod", spec, [credential]))
    )
    assert second.reason == ErrorReason.APPROVAL_CONSUMED
    assert second.code == grpc.StatusCode.FAILED_PRECONDITION
    assert second.metadata["approval_id"] == approval_id
    assert second.decision_id is not None
    assert_audited(auditor, second.decision_id, "rejected", "APPROVAL_CONSUMED")


def test_a_retried_request_id_returns_the_original_admission(
    dev_server: DevServer, orchestrator: AdmissionClient
) -> None:
    spec = new_spec()
    request = deploy_request("dev/app/prod", spec, [offline_credential(dev_server, spec)])
    first = orchestrator.admit_deploy(request)
    assert orchestrator.admit_deploy(request).decision_id == first.decision_id


def test_a_tampered_credential_is_signature_invalid(
    dev_server: DevServer, orchestrator: AdmissionClient
) -> None:
    spec = new_spec()
    payload, signature = offline_credential(dev_server, spec).split(".")
    flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
    rejection = rejection_of(
        lambda: orchestrator.admit_deploy(
            deploy_request("dev/app/prod", spec, [f"{payload}.{flipped}"])
        )
    )
    assert rejection.reason == ErrorReason.SIGNATURE_INVALID
    assert rejection.code == grpc.StatusCode.UNAUTHENTICATED
    assert rejection.metadata["kid"] == dev_server.kid


def test_a_credential_for_another_spec_is_a_spec_hash_mismatch(
    dev_server: DevServer, orchestrator: AdmissionClient
) -> None:
    spec, other = new_spec(), new_spec()
    rejection = rejection_of(
        lambda: orchestrator.admit_deploy(
            deploy_request("dev/app/prod", spec, [offline_credential(dev_server, other)])
        )
    )
    assert rejection.reason == ErrorReason.SPEC_HASH_MISMATCH
    assert rejection.code == grpc.StatusCode.FAILED_PRECONDITION
    assert (rejection.metadata["expected"], rejection.metadata["actual"]) == (
        spec_hash(spec),
        spec_hash(other),
    )


def test_a_bad_request_names_the_field(orchestrator: AdmissionClient) -> None:
    request = deploy_request("dev/app/dev", new_spec())
    request.request_id = "not a valid id"
    rejection = rejection_of(lambda: orchestrator.admit_deploy(request))
    assert rejection.reason == ErrorReason.REQUEST_INVALID
    assert rejection.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "request_id" in [violation.field for violation in rejection.field_violations]


def test_a_role_it_lacks_is_caller_not_authorized(dev_server: DevServer) -> None:
    with dev_server.client("auditor") as auditor_as_deployer:
        rejection = rejection_of(
            lambda: auditor_as_deployer.admit_deploy(deploy_request("dev/app/dev", new_spec()))
        )
    assert rejection.reason == ErrorReason.CALLER_NOT_AUTHORIZED
    assert rejection.code == grpc.StatusCode.PERMISSION_DENIED


def test_a_client_certificate_from_another_ca_never_reaches_an_rpc(
    dev_server: DevServer, tmp_path: Path
) -> None:
    # The server certificate verifies, but the client's is self-signed: the handshake fails.
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
    from cryptography.x509.oid import NameOID

    key = generate_private_key(SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stranger")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "stranger.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "stranger.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with (
        connect(
            dev_server.endpoint,
            ca=dev_server.dir / "ca.pem",
            cert=tmp_path / "stranger.pem",
            key=tmp_path / "stranger.key",
        ) as stranger,
        pytest.raises(grpc.RpcError) as caught,
    ):
        stranger.admit_deploy(deploy_request("dev/app/dev", new_spec()))
    assert not isinstance(caught.value, AdmissionRejected)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_connect_names_the_unusable_setting(dev_server: DevServer, tmp_path: Path) -> None:
    files: dict[str, Any] = {
        "ca": dev_server.dir / "ca.pem",
        "cert": dev_server.dir / "orchestrator.pem",
        "key": dev_server.dir / "orchestrator.key",
    }
    for name in files:
        with pytest.raises(ConfigurationError, match=f"^{name}: cannot read"):
            connect(dev_server.endpoint, **{**files, name: tmp_path / "missing.pem"})
    (tmp_path / "empty.pem").write_text("")
    with pytest.raises(ConfigurationError, match=r"^ca: .* is not a PEM file"):
        connect(dev_server.endpoint, **{**files, "ca": tmp_path / "empty.pem"})
    for endpoint in ("http://localhost:1", "localhost", "https://localhost:0", "localhost:x"):
        with pytest.raises(ConfigurationError, match="endpoint"):
            connect(endpoint, **files)


def replay_request(
    mode: pb.ReplayMode, spec: bytes, credentials: list[str] | None = None
) -> pb.ReplayRequest:
    return pb.ReplayRequest(
        request_id=f"py-{uuid.uuid4().hex}",
        environment=environment("dev/app/prod"),
        mode=mode,
        incident_id="inc-7",
        spec_kv=spec,
        source_artifact=pb.SourceArtifact(
            artifact_id="trace-1", digest=spec_hash(b"trace\n"), environment_id="prod"
        ),
        initiated_by=INITIATOR,
        credentials=credentials or [],
    )


def test_replays_dry_run_freely_and_execute_with_the_replay_capability(
    dev_server: DevServer, orchestrator: AdmissionClient
) -> None:
    spec = new_spec()
    dry_run = orchestrator.admit_replay(replay_request(pb.ReplayMode.REPLAY_MODE_DRY_RUN, spec))
    assert dry_run.action == pb.Action.ACTION_REPLAY_DRY_RUN

    execute = pb.ReplayMode.REPLAY_MODE_EXECUTE
    preview = orchestrator.preview_replay(replay_request(execute, spec))
    assert preview.policy_decision == pb.PolicyDecision.POLICY_DECISION_REQUIRE_APPROVAL
    assert list(preview.required_capabilities) == ["replay.execute"]

    missing = rejection_of(lambda: orchestrator.admit_replay(replay_request(execute, spec)))
    assert (missing.reason, missing.code) == (
        ErrorReason.APPROVAL_REQUIRED,
        grpc.StatusCode.PERMISSION_DENIED,
    )
    deploy_only = offline_credential(dev_server, spec)
    short = rejection_of(
        lambda: orchestrator.admit_replay(replay_request(execute, spec, [deploy_only]))
    )
    assert (short.reason, short.code) == (
        ErrorReason.CAPABILITIES_INSUFFICIENT,
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert short.metadata["missing"] == "replay.execute"

    covering = offline_credential(dev_server, spec, capabilities=["replay.execute"])
    admitted = orchestrator.admit_replay(replay_request(execute, spec, [covering]))
    assert admitted.action == pb.Action.ACTION_REPLAY_EXECUTE


def test_a_revoked_approval_no_longer_admits(
    orchestrator: AdmissionClient, reviewer: AdmissionClient
) -> None:
    spec = new_spec()
    created = orchestrator.create_approval(
        pb.CreateApprovalRequest(
            environment=environment("dev/app/prod"),
            action=pb.Action.ACTION_DEPLOY,
            spec_kv=spec,
            justification="release of payments-api",
            initiated_by=INITIATOR,
        )
    )
    credentials = list(reviewer.approve(created.approval_id).credentials)
    revoked = reviewer.revoke_approval(created.approval_id, "wrong bundle")
    assert revoked.state == pb.ApprovalState.APPROVAL_STATE_REVOKED
    assert revoked.decision_reason == "wrong bundle"
    rejection = rejection_of(
        lambda: orchestrator.admit_deploy(deploy_request("dev/app/prod", spec, credentials))
    )
    assert (rejection.reason, rejection.code) == (
        ErrorReason.APPROVAL_REVOKED,
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert rejection.metadata["approval_id"] == created.approval_id


def test_iter_audit_follows_page_tokens(
    orchestrator: AdmissionClient, auditor: AdmissionClient
) -> None:
    for _ in range(3):
        orchestrator.preview_deploy(deploy_request("dev/app/prod", new_spec()))
    scope = environment("dev/app/prod")
    one_page = auditor.list_audit(pb.ListAuditRequest(environment=scope, page_size=1000))
    assert one_page.next_page_token == ""
    paged = list(auditor.iter_audit(pb.ListAuditRequest(environment=scope, page_size=2)))
    assert [e.seq for e in paged] == [e.seq for e in one_page.entries]
    assert len(paged) >= 3
    assert all(a.seq < b.seq for a, b in pairwise(paged))


def test_the_server_name_is_verified(dev_server: DevServer) -> None:
    port = dev_server.endpoint.rsplit(":", 1)[1]
    files: dict[str, Any] = {
        "ca": dev_server.dir / "ca.pem",
        "cert": dev_server.dir / "orchestrator.pem",
        "key": dev_server.dir / "orchestrator.key",
    }
    with connect(f"127.0.0.1:{port}", server_name="localhost", **files) as by_address:
        assert by_address.health() == health_pb2.HealthCheckResponse.SERVING
    wrong_name = connect(f"127.0.0.1:{port}", server_name="admission.example", **files)
    with wrong_name, pytest.raises(grpc.RpcError) as caught:
        wrong_name.health()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
