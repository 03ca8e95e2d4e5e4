// The real Connect client for Node (@connectrpc/connect-node, JSON format, HTTP/2) against the
// real admission-server binary in dev mode, over mTLS with the dev certificates: admission,
// approvals and audit, typed rejections with their ErrorInfo, and the audit trail's ids.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";

import { DeployAdmission } from "../gen/byteor/admission/v1/admission_pb.js";
import { Approvals, Verdict } from "../gen/byteor/admission/v1/approvals_pb.js";
import { Audit } from "../gen/byteor/admission/v1/audit_pb.js";
import { Action, ApprovalState } from "../gen/byteor/admission/v1/types_pb.js";
import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.js";

const SPEC_KV = new TextEncoder().encode("pipeline=payments-api\nversion=2026.11.24\n");

let server;
let dir;
let baseUrl;

/** Starts `$ADMISSION_SERVER_BIN dev` on a port the kernel picks; resolves with the port. */
function startDev() {
  const binary = process.env.ADMISSION_SERVER_BIN;
  if (!binary) {
    throw new Error("ADMISSION_SERVER_BIN must name the admission-server binary to test");
  }
  dir = mkdtempSync(join(tmpdir(), "admission-connect-"));
  server = spawn(binary, ["dev", "--dir", dir, "--listen", "127.0.0.1:0"], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: "warn" },
  });
  return new Promise((resolve, reject) => {
    let stdout = "";
    let stderr = "";
    server.stderr.on("data", (chunk) => (stderr += chunk.toString()));
    server.stdout.on("data", (chunk) => {
      stdout += chunk.toString();
      const match = /https:\/\/localhost:(\d+)/.exec(stdout);
      if (match) resolve(Number(match[1]));
    });
    server.once("exit", (code) => reject(new Error(`admission-server dev exited ${code}: ${stderr}`)));
  });
}

/** A client of `service` presenting the dev certificate of `identity`. */
function clientAs(service, identity) {
  const transport = createConnectTransport({
    baseUrl,
    httpVersion: "2",
    useBinaryFormat: false,
    nodeOptions: {
      ca: readFileSync(join(dir, "ca.pem")),
      cert: readFileSync(join(dir, `${identity}.pem`)),
      key: readFileSync(join(dir, `${identity}.key`)),
    },
  });
  return createClient(service, transport);
}

function deploy(requestId, environmentId, credentials = []) {
  return {
    requestId,
    environment: { orgId: "dev", projectId: "app", environmentId },
    pipelineVersion: "2026.11.24",
    specKv: SPEC_KV,
    configBundle: {
      bundleId: "bundle-1",
      digest: `sha256:${"0".repeat(64)}`,
      environmentId,
    },
    initiatedBy: "alice@dev.local",
    credentials,
  };
}

/** The ErrorInfo a ConnectError carries. */
function errorInfo(error) {
  assert.ok(error instanceof ConnectError, `not a ConnectError: ${error}`);
  const [info] = error.findDetails(ErrorInfoSchema);
  assert.ok(info, `no ErrorInfo in ${JSON.stringify(error.details)}`);
  return info;
}

before(async () => {
  const port = await startDev();
  baseUrl = `https://localhost:${port}`;
});

after(async () => {
  if (server && server.exitCode === null) {
    const exited = new Promise((resolve) => server.once("exit", resolve));
    server.kill("SIGTERM");
    await exited;
  }
  rmSync(dir, { recursive: true, force: true });
});

test("admit, reject, approve, admit with the credential; the audit trail holds every decision", async () => {
  const admission = clientAs(DeployAdmission, "orchestrator");
  const decisions = [];

  const admitted = await admission.admit(deploy("node-dev-1", "dev"));
  assert.equal(admitted.action, Action.DEPLOY);
  assert.match(admitted.specHash, /^sha256:[0-9a-f]{64}$/);
  decisions.push(admitted.decisionId);

  const refused = await admission.admit(deploy("node-prod-1", "prod")).then(
    () => assert.fail("a prod deploy without approval was admitted"),
    (error) => error,
  );
  assert.equal(refused.code, Code.PermissionDenied);
  const info = errorInfo(refused);
  assert.equal(info.reason, "APPROVAL_REQUIRED");
  assert.equal(info.domain, "byteor.admission.v1");
  decisions.push(info.metadata.decision_id);

  const approvals = clientAs(Approvals, "orchestrator");
  const created = await approvals.create({
    environment: { orgId: "dev", projectId: "app", environmentId: "prod" },
    action: Action.DEPLOY,
    spec: { case: "specKv", value: SPEC_KV },
    capabilities: ["deploy"],
    justification: "release 2026.11.24",
    initiatedBy: "alice@dev.local",
  });
  assert.equal(created.state, ApprovalState.PENDING);
  const decided = await clientAs(Approvals, "reviewer").decide({
    approvalId: created.approvalId,
    verdict: Verdict.APPROVE,
    reason: "reviewed",
  });
  assert.equal(decided.state, ApprovalState.APPROVED);
  assert.equal(decided.credentials.length, 1);

  const approved = await admission.admit(deploy("node-prod-2", "prod", decided.credentials));
  assert.deepEqual(approved.approvalIds, [created.approvalId]);
  decisions.push(approved.decisionId);

  const consumed = await admission.admit(deploy("node-prod-3", "prod", decided.credentials)).then(
    () => assert.fail("a consumed approval admitted again"),
    (error) => error,
  );
  assert.equal(consumed.code, Code.FailedPrecondition);
  assert.equal(errorInfo(consumed).reason, "APPROVAL_CONSUMED");
  decisions.push(errorInfo(consumed).metadata.decision_id);

  const trail = await clientAs(Audit, "auditor").list({});
  const ids = new Set(trail.entries.map((entry) => entry.entryId));
  for (const id of decisions) {
    assert.ok(ids.has(id), `decision ${id} is not in the audit trail`);
  }
  const verified = await clientAs(Audit, "auditor").verify({});
  assert.equal(verified.ok, true);
  assert.equal(verified.entriesChecked, BigInt(trail.entries.length));
});

test("a caller without the role is permission_denied with CALLER_NOT_AUTHORIZED", async () => {
  const refused = await clientAs(Audit, "orchestrator").list({}).then(
    () => assert.fail("the orchestrator read the audit trail"),
    (error) => error,
  );
  assert.equal(refused.code, Code.PermissionDenied);
  assert.equal(errorInfo(refused).reason, "CALLER_NOT_AUTHORIZED");
});

test("an approval that does not exist is not_found with APPROVAL_NOT_FOUND", async () => {
  const refused = await clientAs(Approvals, "reviewer").get({ approvalId: "apr_missing" }).then(
    () => assert.fail("a missing approval was found"),
    (error) => error,
  );
  assert.equal(refused.code, Code.NotFound);
  assert.equal(errorInfo(refused).reason, "APPROVAL_NOT_FOUND");
});
