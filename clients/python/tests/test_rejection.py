"""Decoding `google.rpc.Status` details into `AdmissionRejected`, without a server."""

from __future__ import annotations

from datetime import timedelta

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2

from byteor_admission import ERROR_DOMAIN, AdmissionRejected, ErrorReason, FieldViolation


def status(code: int, *details: Message) -> status_pb2.Status:
    packed = []
    for detail in details:
        wrapper = any_pb2.Any()
        wrapper.Pack(detail)
        packed.append(wrapper)
    return status_pb2.Status(code=code, message="the message", details=packed)


def info(reason: str, domain: str = ERROR_DOMAIN, **metadata: str) -> error_details_pb2.ErrorInfo:
    return error_details_pb2.ErrorInfo(reason=reason, domain=domain, metadata=metadata)


def test_every_generated_reason_decodes_to_its_enum_value() -> None:
    for name in (value.name for value in ErrorReason.DESCRIPTOR.values):
        if name == "ERROR_REASON_UNSPECIFIED":
            continue
        decoded = AdmissionRejected.from_status(
            status(code_pb2.PERMISSION_DENIED, info(name, decision_id="dec_1"))
        )
        assert decoded is not None
        assert (decoded.reason, decoded.reason_name) == (ErrorReason.Value(name), name)
        assert decoded.code == grpc.StatusCode.PERMISSION_DENIED
        assert decoded.decision_id == "dec_1"


def test_a_reason_from_a_newer_server_is_kept_as_text() -> None:
    decoded = AdmissionRejected.from_status(
        status(code_pb2.FAILED_PRECONDITION, info("NEW_REASON"))
    )
    assert decoded is not None
    assert decoded.reason == ErrorReason.ERROR_REASON_UNSPECIFIED
    assert decoded.reason_name == "NEW_REASON"
    assert decoded.decision_id is None


def test_another_domain_or_no_error_info_is_not_a_rejection() -> None:
    assert (
        AdmissionRejected.from_status(status(code_pb2.INTERNAL, info("X", "example.com"))) is None
    )
    assert AdmissionRejected.from_status(status(code_pb2.UNAVAILABLE)) is None


def test_bad_request_and_retry_info_are_decoded() -> None:
    bad = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field="request_id", description="bad")
        ]
    )
    retry = error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=1, nanos=500_000_000)
    )
    decoded = AdmissionRejected.from_status(
        status(code_pb2.UNAVAILABLE, retry, info("AUDIT_UNAVAILABLE"), bad)
    )
    assert decoded is not None
    assert decoded.reason == ErrorReason.AUDIT_UNAVAILABLE and decoded.retryable
    assert decoded.code == grpc.StatusCode.UNAVAILABLE
    assert decoded.field_violations == (FieldViolation("request_id", "bad"),)
    assert decoded.retry_delay == timedelta(seconds=1.5)
    assert str(decoded) == "AUDIT_UNAVAILABLE (UNAVAILABLE): the message"
