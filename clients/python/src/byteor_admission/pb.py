"""The generated protobuf and gRPC modules of `byteor.admission.v1`, under short names.

They are compiled from the repository's `proto/` when the package is built; `ErrorReason` is the
enum of every `google.rpc.ErrorInfo.reason` the service sends.
"""

from __future__ import annotations

import byteor.admission.v1.admission_pb2_grpc as admission_pb2_grpc
import byteor.admission.v1.approvals_pb2_grpc as approvals_pb2_grpc
import byteor.admission.v1.audit_pb2_grpc as audit_pb2_grpc
from byteor.admission.v1 import (
    admission_pb2,
    approvals_pb2,
    audit_pb2,
    error_reason_pb2,
    types_pb2,
)
from byteor.admission.v1.admission_pb2 import (
    BreakGlass,
    ConfigBundle,
    DeployRequest,
    ReplayMode,
    ReplayRequest,
    SourceArtifact,
)
from byteor.admission.v1.approvals_pb2 import (
    CreateApprovalRequest,
    DecideApprovalRequest,
    GetApprovalRequest,
    ListEligibleRequest,
    ListEligibleResponse,
    RevokeApprovalRequest,
    Verdict,
)
from byteor.admission.v1.audit_pb2 import (
    AuditEntry,
    ListAuditRequest,
    ListAuditResponse,
    VerifyAuditRequest,
    VerifyAuditResponse,
)
from byteor.admission.v1.error_reason_pb2 import ErrorReason
from byteor.admission.v1.types_pb2 import (
    Action,
    Admission,
    Approval,
    ApprovalState,
    EnvironmentRef,
    PolicyDecision,
    Posture,
    Preview,
)

__all__ = [
    "Action",
    "Admission",
    "Approval",
    "ApprovalState",
    "AuditEntry",
    "BreakGlass",
    "ConfigBundle",
    "CreateApprovalRequest",
    "DecideApprovalRequest",
    "DeployRequest",
    "EnvironmentRef",
    "ErrorReason",
    "GetApprovalRequest",
    "ListAuditRequest",
    "ListAuditResponse",
    "ListEligibleRequest",
    "ListEligibleResponse",
    "PolicyDecision",
    "Posture",
    "Preview",
    "ReplayMode",
    "ReplayRequest",
    "RevokeApprovalRequest",
    "SourceArtifact",
    "Verdict",
    "VerifyAuditRequest",
    "VerifyAuditResponse",
    "admission_pb2",
    "admission_pb2_grpc",
    "approvals_pb2",
    "approvals_pb2_grpc",
    "audit_pb2",
    "audit_pb2_grpc",
    "error_reason_pb2",
    "types_pb2",
]


def environment(path: str) -> EnvironmentRef:
    """Parses `"org/project/env"` into an `EnvironmentRef`."""
    parts = path.split("/")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"environment must be org/project/env, got {path!r}")
    org_id, project_id, environment_id = parts
    return EnvironmentRef(org_id=org_id, project_id=project_id, environment_id=environment_id)
