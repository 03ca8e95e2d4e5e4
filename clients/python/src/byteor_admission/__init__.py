"""Python client for the ByteOr admission service.

`connect()` opens an mTLS channel and returns an `AdmissionClient`; rejections raise
`AdmissionRejected` carrying the typed `ErrorReason`; `CredentialSigner` signs approval
credentials offline; `spec_hash()` is the hash the service binds approvals to.
"""

from byteor_admission import pb
from byteor_admission.client import (
    DEFAULT_TIMEOUT,
    AdmissionClient,
    ConfigurationError,
    connect,
    parse_endpoint,
)
from byteor_admission.credential import (
    CREDENTIAL_VERSION,
    CredentialClaims,
    CredentialSigner,
    canonical_json,
    decode_credential,
    format_time,
    spec_hash,
)
from byteor_admission.pb import ErrorReason, environment
from byteor_admission.rejection import ERROR_DOMAIN, AdmissionRejected, FieldViolation

__all__ = [
    "CREDENTIAL_VERSION",
    "DEFAULT_TIMEOUT",
    "ERROR_DOMAIN",
    "AdmissionClient",
    "AdmissionRejected",
    "ConfigurationError",
    "CredentialClaims",
    "CredentialSigner",
    "ErrorReason",
    "FieldViolation",
    "canonical_json",
    "connect",
    "decode_credential",
    "environment",
    "format_time",
    "parse_endpoint",
    "pb",
    "spec_hash",
]
