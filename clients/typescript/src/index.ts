/**
 * Client of the ByteOr admission service: promise-returning calls over mutual TLS, typed
 * rejections, spec hashes and offline approval credentials. The message types and enums are
 * generated from the service's protos.
 */
export { AdmissionClient, CallSettings, ConnectError, ConnectOptions, connect, targetOf } from "./client";
export {
  ApprovalClaims,
  CredentialInputError,
  EnvironmentPosture,
  JsonValue,
  canonicalJson,
  formatCredentialTime,
  signCredential,
  wireClaims,
} from "./credential";
export { AdmissionRejected, ERROR_DOMAIN, FieldViolation, reasonFromName, rejectionFromError } from "./rejection";
export { specHash } from "./spec";

export * from "./gen/byteor/admission/v1/types";
export {
  BreakGlass,
  ConfigBundle,
  DeployRequest,
  ReplayMode,
  ReplayRequest,
  SourceArtifact,
} from "./gen/byteor/admission/v1/admission";
export {
  CreateApprovalRequest,
  DecideApprovalRequest,
  GetApprovalRequest,
  ListEligibleRequest,
  ListEligibleResponse,
  RevokeApprovalRequest,
  Verdict,
} from "./gen/byteor/admission/v1/approvals";
export {
  AuditEntry,
  ListAuditRequest,
  ListAuditResponse,
  VerifyAuditRequest,
  VerifyAuditResponse,
} from "./gen/byteor/admission/v1/audit";
export { ErrorReason } from "./gen/byteor/admission/v1/error_reason";
export { HealthCheckResponse_ServingStatus as ServingStatus } from "./gen/grpc/health/v1/health";
export { status } from "@grpc/grpc-js";
