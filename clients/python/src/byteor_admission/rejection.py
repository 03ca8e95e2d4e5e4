"""Typed rejections: the `google.rpc.ErrorInfo` of a non-OK status, decoded."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from byteor_admission.pb import ErrorReason

#: The `ErrorInfo.domain` of every rejection the admission service sends.
ERROR_DOMAIN = "byteor.admission.v1"


@dataclass(frozen=True)
class FieldViolation:
    """One `google.rpc.BadRequest` field violation."""

    field: str
    description: str


class AdmissionRejected(Exception):
    """A typed rejection answered by the admission service.

    `reason` is the generated `ErrorReason` value (`ErrorReason.Name(reason)` gives its name);
    a reason this client does not know yet is `ERROR_REASON_UNSPECIFIED`, with the text as sent
    in `reason_name`.
    """

    def __init__(
        self,
        *,
        reason_name: str,
        code: grpc.StatusCode,
        message: str,
        metadata: dict[str, str],
        field_violations: tuple[FieldViolation, ...] = (),
        retry_delay: timedelta | None = None,
    ) -> None:
        super().__init__(f"{reason_name} ({code.name}): {message}")
        self.reason_name = reason_name
        self.reason: int = _reason_value(reason_name)
        self.code = code
        self.message = message
        self.metadata = metadata
        self.field_violations = field_violations
        self.retry_delay = retry_delay

    @property
    def decision_id(self) -> str | None:
        """The id of the audited decision, when one was recorded."""
        return self.metadata.get("decision_id")

    @property
    def retryable(self) -> bool:
        """Whether the service asked for a retry (the audit store or the server was busy)."""
        return self.reason in (ErrorReason.AUDIT_UNAVAILABLE, ErrorReason.OVERLOADED)

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> AdmissionRejected | None:
        """Decodes `error` when it carries an ErrorInfo of the admission domain, else `None`."""
        if not isinstance(error, grpc.Call):
            return None
        try:
            status = rpc_status.from_call(error)
        except ValueError:
            # The status details disagree with the status itself: not a rejection to trust.
            return None
        if status is None:
            return None
        return cls.from_status(status)

    @classmethod
    def from_status(cls, status: status_pb2.Status) -> AdmissionRejected | None:
        """Decodes a `google.rpc.Status` when it holds an ErrorInfo of the admission domain."""
        return _from_details(_status_code(status.code), status.message, status.details)


@dataclass
class _Details:
    info: error_details_pb2.ErrorInfo | None = None
    violations: list[FieldViolation] = field(default_factory=list)
    retry_delay: timedelta | None = None


def _from_details(code: grpc.StatusCode, message: str, details: object) -> AdmissionRejected | None:
    found = _Details()
    for detail in details:  # type: ignore[attr-defined]
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            found.info = found.info or info
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.violations.extend(
                FieldViolation(v.field, v.description) for v in bad.field_violations
            )
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            found.retry_delay = retry.retry_delay.ToTimedelta()
    if found.info is None or found.info.domain != ERROR_DOMAIN:
        return None
    return AdmissionRejected(
        reason_name=found.info.reason,
        code=code,
        message=message,
        metadata=dict(found.info.metadata),
        field_violations=tuple(found.violations),
        retry_delay=found.retry_delay,
    )


_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _status_code(number: int) -> grpc.StatusCode:
    return _STATUS_CODES.get(number, grpc.StatusCode.UNKNOWN)


def _reason_value(name: str) -> int:
    try:
        return ErrorReason.Value(name)
    except ValueError:
        return ErrorReason.ERROR_REASON_UNSPECIFIED
