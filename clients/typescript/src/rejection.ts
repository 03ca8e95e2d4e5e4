import { Metadata, ServiceError, status } from "@grpc/grpc-js";

import { ErrorReason } from "./gen/byteor/admission/v1/error_reason";
import { BadRequest, ErrorInfo, RetryInfo, Status } from "./gen/google/rpc/status";

/** The ErrorInfo domain of every rejection the admission service sends. */
export const ERROR_DOMAIN = "byteor.admission.v1";

const STATUS_DETAILS_KEY = "grpc-status-details-bin";
const ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo";
const RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo";
const BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest";

/** One invalid request field, from google.rpc.BadRequest. */
export interface FieldViolation {
  /** The field's path, e.g. `config_bundle.digest`. */
  field: string;
  /** What is wrong with it. */
  description: string;
}

/** The typed details of a status, decoded from its trailer. */
interface StatusDetails {
  info?: ErrorInfo;
  retryDelayMs?: number;
  fieldViolations: FieldViolation[];
}

/**
 * A typed rejection from the admission service: a non-OK gRPC status whose details hold a
 * `google.rpc.ErrorInfo` in the `byteor.admission.v1` domain.
 */
export class AdmissionRejected extends Error {
  /** The gRPC status code, e.g. `status.PERMISSION_DENIED`. */
  readonly code: status;
  /** The reason as the generated enum; `ErrorReason.UNRECOGNIZED` for a reason this client does not know. */
  readonly reason: ErrorReason;
  /** The reason exactly as sent, e.g. `"APPROVAL_REQUIRED"`. */
  readonly reasonName: string;
  /** The audited decision's id; empty only for AUDIT_UNAVAILABLE and OVERLOADED, which record nothing. */
  readonly decisionId: string;
  /** ErrorInfo metadata: decision_id and, where they apply, expected, actual, missing, kid, approval_id. */
  readonly metadata: Readonly<Record<string, string>>;
  /** How long to wait before retrying, in milliseconds, when the service says (RetryInfo). */
  readonly retryDelayMs: number | undefined;
  /** The invalid request fields, for REQUEST_INVALID (google.rpc.BadRequest); empty otherwise. */
  readonly fieldViolations: readonly FieldViolation[];
  /** The trailing metadata of the call. */
  readonly trailers: Metadata;

  constructor(error: ServiceError, info: ErrorInfo, details: Omit<StatusDetails, "info">) {
    super(error.details || info.reason);
    this.name = "AdmissionRejected";
    this.code = error.code;
    this.reasonName = info.reason;
    this.reason = reasonFromName(info.reason);
    this.metadata = Object.freeze({ ...info.metadata });
    this.decisionId = info.metadata["decision_id"] ?? "";
    this.retryDelayMs = details.retryDelayMs;
    this.fieldViolations = Object.freeze(details.fieldViolations.map((v) => ({ ...v })));
    this.trailers = error.metadata;
  }
}

/**
 * Turns a failed call into an `AdmissionRejected` when its status details carry an ErrorInfo of
 * the admission domain; any other error (transport, TLS, deadline) is returned unchanged.
 */
export function rejectionFromError(error: unknown): unknown {
  if (!isServiceError(error)) {
    return error;
  }
  const details = statusDetails(error.metadata);
  if (details === undefined) {
    return error;
  }
  const info = details.info;
  if (info === undefined || info.domain !== ERROR_DOMAIN) {
    return error;
  }
  return new AdmissionRejected(error, info, details);
}

/** The `ErrorReason` value named `name`, or `ErrorReason.UNRECOGNIZED`. */
export function reasonFromName(name: string): ErrorReason {
  if (name === "UNRECOGNIZED" || !Object.prototype.hasOwnProperty.call(ErrorReason, name)) {
    return ErrorReason.UNRECOGNIZED;
  }
  const value = (ErrorReason as Record<string, unknown>)[name];
  return typeof value === "number" ? (value as ErrorReason) : ErrorReason.UNRECOGNIZED;
}

function isServiceError(error: unknown): error is ServiceError {
  return (
    error instanceof Error &&
    typeof (error as Partial<ServiceError>).code === "number" &&
    (error as Partial<ServiceError>).metadata instanceof Metadata
  );
}

/** Decodes the status details trailer; undefined when it is absent or not a google.rpc.Status. */
function statusDetails(metadata: Metadata): StatusDetails | undefined {
  const raw = metadata.get(STATUS_DETAILS_KEY)[0];
  if (!(raw instanceof Uint8Array)) {
    return undefined;
  }
  try {
    const decoded = Status.decode(raw);
    const result: StatusDetails = { fieldViolations: [] };
    for (const detail of decoded.details) {
      if (detail.typeUrl === ERROR_INFO_TYPE && result.info === undefined) {
        result.info = ErrorInfo.decode(detail.value);
      } else if (detail.typeUrl === RETRY_INFO_TYPE && result.retryDelayMs === undefined) {
        const delay = RetryInfo.decode(detail.value).retryDelay;
        if (delay !== undefined) {
          result.retryDelayMs = delay.seconds * 1000 + Math.floor(delay.nanos / 1e6);
        }
      } else if (detail.typeUrl === BAD_REQUEST_TYPE) {
        result.fieldViolations.push(...BadRequest.decode(detail.value).fieldViolations);
      }
    }
    return result;
  } catch {
    // A trailer that is not a valid google.rpc.Status leaves the original error as it is.
    return undefined;
  }
}
