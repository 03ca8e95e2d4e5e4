"""The mTLS channel and one method per RPC of the admission API."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from byteor_admission import pb
from byteor_admission.rejection import AdmissionRejected

#: Seconds each call may take unless the caller says otherwise.
DEFAULT_TIMEOUT = 10.0

_Response = TypeVar("_Response")
PemPath = str | PathLike[str]


class ConfigurationError(ValueError):
    """A connection setting is unusable; the message names the setting."""


def connect(
    endpoint: str,
    *,
    ca: PemPath,
    cert: PemPath,
    key: PemPath,
    server_name: str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    options: list[tuple[str, Any]] | None = None,
) -> AdmissionClient:
    """Opens an mTLS channel to `endpoint` (`host:port` or `https://host:port`).

    `ca` is the PEM bundle that signed the server certificate; `cert` and `key` are the caller's
    PEM certificate chain and private key. `server_name` overrides the name checked against the
    server certificate. The channel connects lazily: the first call reports an unreachable server.
    """
    target = parse_endpoint(endpoint)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read_pem("ca", ca),
        private_key=_read_pem("key", key),
        certificate_chain=_read_pem("cert", cert),
    )
    channel_options = list(options or [])
    if server_name:
        channel_options.append(("grpc.ssl_target_name_override", server_name))
    channel = grpc.secure_channel(target, credentials, options=channel_options)
    return AdmissionClient(channel, timeout=timeout)


def parse_endpoint(endpoint: str) -> str:
    """`https://host:port` or `host:port` as a gRPC target; plaintext `http://` is refused."""
    if endpoint.startswith("http://"):
        raise ConfigurationError(f"endpoint {endpoint!r} is plaintext; the service needs https")
    target = endpoint.removeprefix("https://").rstrip("/")
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in target:
        raise ConfigurationError(
            f"endpoint must be host:port or https://host:port, got {endpoint!r}"
        )
    return target


class AdmissionClient:
    """Calls the admission service; rejections raise `AdmissionRejected`.

    Failures that are not admission rejections (unreachable server, TLS refused, deadline) raise
    the underlying `grpc.RpcError`.
    """

    def __init__(self, channel: grpc.Channel, *, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        self.channel = channel
        self.timeout = timeout
        self._deploy = pb.admission_pb2_grpc.DeployAdmissionStub(channel)
        self._replay = pb.admission_pb2_grpc.ReplayAdmissionStub(channel)
        self._approvals = pb.approvals_pb2_grpc.ApprovalsStub(channel)
        self._audit = pb.audit_pb2_grpc.AuditStub(channel)
        self._health = health_pb2_grpc.HealthStub(channel)

    def __enter__(self) -> AdmissionClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Closes the channel."""
        self.channel.close()

    # === deploys and replays ===

    def admit_deploy(
        self, request: pb.DeployRequest, *, timeout: float | None = None
    ) -> pb.Admission:
        """Admits a deployment, or raises `AdmissionRejected`."""
        return self._call(self._deploy.Admit, request, timeout, pb.Admission)

    def preview_deploy(
        self, request: pb.DeployRequest, *, timeout: float | None = None
    ) -> pb.Preview:
        """Evaluates a deployment without credentials and without consuming anything."""
        return self._call(self._deploy.Preview, request, timeout, pb.Preview)

    def admit_replay(
        self, request: pb.ReplayRequest, *, timeout: float | None = None
    ) -> pb.Admission:
        """Admits a replay, or raises `AdmissionRejected`."""
        return self._call(self._replay.Admit, request, timeout, pb.Admission)

    def preview_replay(
        self, request: pb.ReplayRequest, *, timeout: float | None = None
    ) -> pb.Preview:
        """Evaluates a replay without credentials and without consuming anything."""
        return self._call(self._replay.Preview, request, timeout, pb.Preview)

    # === approvals ===

    def create_approval(
        self, request: pb.CreateApprovalRequest, *, timeout: float | None = None
    ) -> pb.Approval:
        """Requests an approval (orchestrator role)."""
        return self._call(self._approvals.Create, request, timeout, pb.Approval)

    def decide_approval(
        self,
        approval_id: str,
        verdict: pb.Verdict,
        reason: str = "",
        *,
        timeout: float | None = None,
    ) -> pb.Approval:
        """Approves or denies a pending approval (reviewer role)."""
        request = pb.DecideApprovalRequest(approval_id=approval_id, verdict=verdict, reason=reason)
        return self._call(self._approvals.Decide, request, timeout, pb.Approval)

    def approve(
        self, approval_id: str, reason: str = "", *, timeout: float | None = None
    ) -> pb.Approval:
        """Approves; once enough reviewers did, the approval carries signed credentials."""
        return self.decide_approval(
            approval_id, pb.Verdict.VERDICT_APPROVE, reason, timeout=timeout
        )

    def deny(self, approval_id: str, reason: str, *, timeout: float | None = None) -> pb.Approval:
        """Denies a pending approval; the service requires a reason."""
        return self.decide_approval(approval_id, pb.Verdict.VERDICT_DENY, reason, timeout=timeout)

    def get_approval(self, approval_id: str, *, timeout: float | None = None) -> pb.Approval:
        """Reads one approval."""
        request = pb.GetApprovalRequest(approval_id=approval_id)
        return self._call(self._approvals.Get, request, timeout, pb.Approval)

    def list_eligible_approvals(
        self, request: pb.ListEligibleRequest, *, timeout: float | None = None
    ) -> list[pb.Approval]:
        """The approvals that would admit the action now, newest first."""
        response = self._call(
            self._approvals.ListEligible, request, timeout, pb.ListEligibleResponse
        )
        return list(response.approvals)

    def revoke_approval(
        self, approval_id: str, reason: str, *, timeout: float | None = None
    ) -> pb.Approval:
        """Revokes an approval; its credentials stop admitting (reviewer role)."""
        request = pb.RevokeApprovalRequest(approval_id=approval_id, reason=reason)
        return self._call(self._approvals.Revoke, request, timeout, pb.Approval)

    # === audit ===

    def list_audit(
        self, request: pb.ListAuditRequest | None = None, *, timeout: float | None = None
    ) -> pb.ListAuditResponse:
        """One page of audit entries (auditor role)."""
        return self._call(
            self._audit.List, request or pb.ListAuditRequest(), timeout, pb.ListAuditResponse
        )

    def iter_audit(
        self, request: pb.ListAuditRequest | None = None, *, timeout: float | None = None
    ) -> Iterator[pb.AuditEntry]:
        """Every matching audit entry in seq order, following the page tokens."""
        page_request = pb.ListAuditRequest()
        if request is not None:
            page_request.CopyFrom(request)
        while True:
            page = self.list_audit(page_request, timeout=timeout)
            yield from page.entries
            if not page.next_page_token:
                return
            page_request.page_token = page.next_page_token

    def verify_audit(self, *, timeout: float | None = None) -> pb.VerifyAuditResponse:
        """Re-checks the whole hash chain (auditor role)."""
        return self._call(
            self._audit.Verify, pb.VerifyAuditRequest(), timeout, pb.VerifyAuditResponse
        )

    # === health ===

    def health(
        self, service: str = "", *, timeout: float | None = None, wait_for_ready: bool = False
    ) -> health_pb2.HealthCheckResponse.ServingStatus.ValueType:
        """The `grpc.health.v1` status, e.g. `HealthCheckResponse.SERVING`."""
        request = health_pb2.HealthCheckRequest(service=service)
        response = self._health.Check(
            request, timeout=self._timeout(timeout), wait_for_ready=wait_for_ready
        )
        status: health_pb2.HealthCheckResponse.ServingStatus.ValueType = response.status
        return status

    # === impl ===

    def _timeout(self, timeout: float | None) -> float | None:
        return self.timeout if timeout is None else timeout

    def _call(
        self,
        method: Callable[..., Any],
        request: object,
        timeout: float | None,
        response_type: type[_Response],
    ) -> _Response:
        """Calls `method`, turning an admission rejection into `AdmissionRejected`."""
        try:
            response: _Response = method(request, timeout=self._timeout(timeout))
        except grpc.RpcError as error:
            rejection = AdmissionRejected.from_rpc_error(error)
            if rejection is None:
                raise
            raise rejection from error
        if not isinstance(response, response_type):
            raise TypeError(f"expected {response_type.__name__}, got {type(response).__name__}")
        return response


def _read_pem(name: str, path: PemPath) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ConfigurationError(f"{name}: cannot read {path}: {error.strerror}") from error
    if b"-----BEGIN " not in data:
        raise ConfigurationError(f"{name}: {path} is not a PEM file")
    return data
