// Parsing the grpc-status-details-bin trailer into AdmissionRejected.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { Metadata, ServiceError } from "@grpc/grpc-js";

import { AdmissionRejected, ErrorReason, reasonFromName, rejectionFromError, status } from "../src";
import { BadRequest, ErrorInfo, RetryInfo, Status } from "../src/gen/google/rpc/status";

function serviceError(code: status, details: { typeUrl: string; value: Uint8Array }[] | Buffer): ServiceError {
  const metadata = new Metadata();
  const bin = Buffer.isBuffer(details)
    ? details
    : Buffer.from(Status.encode({ code, message: "m", details: details.map((d) => ({ typeUrl: d.typeUrl, value: Buffer.from(d.value) })) }).finish());
  metadata.set("grpc-status-details-bin", bin);
  return Object.assign(new Error(`${code} ${status[code]}: the message`), {
    code,
    details: "the message",
    metadata,
  });
}

function errorInfo(reason: string, domain = "byteor.admission.v1") {
  return {
    typeUrl: "type.googleapis.com/google.rpc.ErrorInfo",
    value: ErrorInfo.encode({ reason, domain, metadata: { decision_id: "dec_1", kid: "k" } }).finish(),
  };
}

describe("rejectionFromError", () => {
  it("reads reason, code, decision id, metadata, retry delay and field violations", () => {
    const retry = {
      typeUrl: "type.googleapis.com/google.rpc.RetryInfo",
      value: RetryInfo.encode({ retryDelay: { seconds: 2, nanos: 500_000_000 } }).finish(),
    };
    const badRequest = {
      typeUrl: "type.googleapis.com/google.rpc.BadRequest",
      value: BadRequest.encode({ fieldViolations: [{ field: "request_id", description: "is required" }] }).finish(),
    };
    const error = rejectionFromError(serviceError(status.UNAVAILABLE, [retry, errorInfo("AUDIT_UNAVAILABLE"), badRequest]));
    assert.ok(error instanceof AdmissionRejected);
    assert.equal(error.reason, ErrorReason.AUDIT_UNAVAILABLE);
    assert.equal(error.reasonName, "AUDIT_UNAVAILABLE");
    assert.equal(error.code, status.UNAVAILABLE);
    assert.equal(error.decisionId, "dec_1");
    assert.deepEqual(error.metadata, { decision_id: "dec_1", kid: "k" });
    assert.equal(error.message, "the message");
    assert.equal(error.retryDelayMs, 2500);
    assert.deepEqual(error.fieldViolations, [{ field: "request_id", description: "is required" }]);
  });

  it("keeps a reason this client does not know as UNRECOGNIZED with its name", () => {
    const error = rejectionFromError(serviceError(status.FAILED_PRECONDITION, [errorInfo("SOMETHING_NEW")]));
    assert.ok(error instanceof AdmissionRejected);
    assert.equal(error.reason, ErrorReason.UNRECOGNIZED);
    assert.equal(error.reasonName, "SOMETHING_NEW");
  });

  it("leaves errors of another domain, without details, or with a corrupt trailer unchanged", () => {
    const foreign = serviceError(status.PERMISSION_DENIED, [errorInfo("APPROVAL_REQUIRED", "example.com")]);
    assert.equal(rejectionFromError(foreign), foreign);
    const bare = serviceError(status.UNAVAILABLE, []);
    assert.equal(rejectionFromError(bare), bare);
    const corrupt = serviceError(status.INTERNAL, Buffer.from([0xff, 0xff, 0xff]));
    assert.equal(rejectionFromError(corrupt), corrupt);
    const plain = new Error("not grpc");
    assert.equal(rejectionFromError(plain), plain);
  });
});

describe("reasonFromName", () => {
  it("maps every generated reason name to its value and nothing else", () => {
    assert.equal(reasonFromName("APPROVAL_CONSUMED"), ErrorReason.APPROVAL_CONSUMED);
    assert.equal(reasonFromName("SIGNING_NOT_CONFIGURED"), ErrorReason.SIGNING_NOT_CONFIGURED);
    for (const name of ["", "toString", "__proto__", "25", "UNRECOGNIZED", "approval_consumed"]) {
      assert.equal(reasonFromName(name), ErrorReason.UNRECOGNIZED, name);
    }
  });
});
