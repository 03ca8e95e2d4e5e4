// The client against the real admission server binary in dev mode, over real mutual TLS.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import {
  Action,
  AdmissionClient,
  AdmissionRejected,
  ApprovalState,
  DeployRequest,
  EnvironmentRef,
  ErrorReason,
  PolicyDecision,
  Posture,
  ReplayMode,
  ServingStatus,
  Verdict,
  signCredential,
  specHash,
  status,
} from "../src";
import { DevServer, startDevServer } from "./dev-server";

const DEV: EnvironmentRef = { orgId: "dev", projectId: "app", environmentId: "dev" };
const PROD: EnvironmentRef = { orgId: "dev", projectId: "app", environmentId: "prod" };
const DIGEST = `sha256:${"ab".repeat(32)}`;
const INITIATOR = "release-bot@dev.local";

/** A spec no other test uses, so approvals and eligibility do not cross tests. */
function uniqueSpec(): Buffer {
  return Buffer.from(`app=payments\nbuild=${randomUUID()}\n`);
}

function deployRequest(environment: EnvironmentRef, spec: Buffer, credentials: string[] = []): DeployRequest {
  return DeployRequest.fromPartial({
    requestId: `ts-${randomUUID()}`,
    environment,
    pipelineVersion: "v1.2.3",
    specKv: spec,
    configBundle: { bundleId: "bundle-1", digest: DIGEST, environmentId: environment.environmentId },
    credentials,
    initiatedBy: INITIATOR,
  });
}

/** Awaits `call`, which must fail with an AdmissionRejected, and returns it. */
async function rejected(call: Promise<unknown>): Promise<AdmissionRejected> {
  try {
    await call;
  } catch (error) {
    assert.ok(error instanceof AdmissionRejected, `expected an AdmissionRejected, got ${String(error)}`);
    return error;
  }
  assert.fail("the call was admitted but a rejection was expected");
}

function assertRejection(rejection: AdmissionRejected, code: status, reason: ErrorReason): void {
  assert.equal(rejection.reasonName, ErrorReason[reason]);
  assert.equal(rejection.reason, reason);
  assert.equal(rejection.code, code);
}

describe("admission server in dev mode", () => {
  let server: DevServer;
  let orchestrator: AdmissionClient;
  let reviewer: AdmissionClient;
  let auditor: AdmissionClient;

  before(async () => {
    server = await startDevServer();
    orchestrator = await server.client("orchestrator");
    reviewer = await server.client("reviewer");
    auditor = await server.client("auditor");
  });

  after(async () => {
    await server?.stop();
  });

  it("reports SERVING on the health service", async () => {
    assert.equal(await orchestrator.health(), ServingStatus.SERVING);
  });

  it("previews a dev deploy as allowed and a prod deploy as needing one approval", async () => {
    const spec = uniqueSpec();
    const dev = await orchestrator.deploy.preview(deployRequest(DEV, spec));
    assert.equal(dev.policyDecision, PolicyDecision.POLICY_DECISION_ALLOW);
    assert.equal(dev.posture, Posture.POSTURE_DEV);
    assert.equal(dev.action, Action.ACTION_DEPLOY);
    assert.equal(dev.specHash, specHash(spec));
    assert.equal(dev.requiredApprovals, 0);
    assert.notEqual(dev.decisionId, "");

    const prod = await orchestrator.deploy.preview(deployRequest(PROD, spec));
    assert.equal(prod.policyDecision, PolicyDecision.POLICY_DECISION_REQUIRE_APPROVAL);
    assert.equal(prod.posture, Posture.POSTURE_PROD);
    assert.equal(prod.requiredApprovals, 1);
    assert.deepEqual(prod.requiredCapabilities, ["deploy"]);
    assert.deepEqual(prod.eligibleApprovals, []);
  });

  it("admits a dev deploy and records it in the audit trail", async () => {
    const spec = uniqueSpec();
    const request = deployRequest(DEV, spec);
    const admission = await orchestrator.deploy.admit(request);
    assert.equal(admission.action, Action.ACTION_DEPLOY);
    assert.equal(admission.specHash, specHash(spec));
    assert.match(admission.auditEntryHash, /^sha256:[0-9a-f]{64}$/);
    assert.ok(admission.decidedAt instanceof Date);

    const again = await orchestrator.deploy.admit(request);
    assert.equal(again.decisionId, admission.decisionId, "a retried request_id answers the original admission");

    const entries = await auditEntries(auditor, "admitted");
    const entry = entries.find((e) => e.entryId === admission.decisionId);
    assert.ok(entry, "the admission has an audit entry with its decision id");
    assert.equal(entry.entryHash, admission.auditEntryHash);
    assert.equal(entry.requestId, request.requestId);
    assert.equal(entry.actor, "spiffe://dev.local/orchestrator/ci");
  });

  it("rejects a prod deploy without credentials as APPROVAL_REQUIRED", async () => {
    const rejection = await rejected(orchestrator.deploy.admit(deployRequest(PROD, uniqueSpec())));
    assertRejection(rejection, status.PERMISSION_DENIED, ErrorReason.APPROVAL_REQUIRED);
    assert.notEqual(rejection.decisionId, "");
    assert.equal(rejection.metadata["decision_id"], rejection.decisionId);
    assert.match(rejection.message, /^[a-z]/);

    const entries = await auditEntries(auditor, "rejected");
    const entry = entries.find((e) => e.entryId === rejection.decisionId);
    assert.ok(entry, "the rejection has an audit entry with its decision id");
    assert.equal(entry.reason, "APPROVAL_REQUIRED");
    assert.equal(entry.grpcCode, "PERMISSION_DENIED");
  });

  it("names the invalid field of a malformed request", async () => {
    const request = deployRequest(DEV, uniqueSpec());
    request.pipelineVersion = "";
    const rejection = await rejected(orchestrator.deploy.admit(request));
    assertRejection(rejection, status.INVALID_ARGUMENT, ErrorReason.REQUEST_INVALID);
    assert.deepEqual(
      rejection.fieldViolations.map((v) => v.field),
      ["pipeline_version"],
    );
    assert.notEqual(rejection.decisionId, "");
  });

  it("rejects a caller without the orchestrator role as CALLER_NOT_AUTHORIZED", async () => {
    const rejection = await rejected(reviewer.deploy.admit(deployRequest(DEV, uniqueSpec())));
    assertRejection(rejection, status.PERMISSION_DENIED, ErrorReason.CALLER_NOT_AUTHORIZED);
  });

  it("creates an approval, has a reviewer approve it, and admits once with its credential", async () => {
    const spec = uniqueSpec();
    const created = await orchestrator.approvals.create({
      environment: PROD,
      action: Action.ACTION_DEPLOY,
      specKv: spec,
      ttl: { seconds: 600, nanos: 0 },
      justification: "release 1.2.3",
      initiatedBy: INITIATOR,
    });
    assert.equal(created.state, ApprovalState.APPROVAL_STATE_PENDING);
    assert.equal(created.specHash, specHash(spec));
    assert.equal(created.requestedBy, "spiffe://dev.local/orchestrator/ci");

    const approved = await reviewer.approvals.decide({
      approvalId: created.approvalId,
      verdict: Verdict.VERDICT_APPROVE,
      reason: "looks good",
    });
    assert.equal(approved.state, ApprovalState.APPROVAL_STATE_APPROVED);
    assert.deepEqual(approved.approvers, ["spiffe://dev.local/reviewer/alice"]);
    assert.equal(approved.credentials.length, 1);

    const fetched = await orchestrator.approvals.get({ approvalId: created.approvalId });
    assert.deepEqual(fetched.credentials, approved.credentials);
    const eligible = await orchestrator.approvals.listEligible({
      environment: PROD,
      action: Action.ACTION_DEPLOY,
      specHash: specHash(spec),
    });
    assert.deepEqual(
      eligible.approvals.map((a) => a.approvalId),
      [created.approvalId],
    );

    const admission = await orchestrator.deploy.admit(deployRequest(PROD, spec, approved.credentials));
    assert.deepEqual(admission.approvalIds, [created.approvalId]);
    const used = await orchestrator.approvals.get({ approvalId: created.approvalId });
    assert.equal(used.uses, 1);

    const second = await rejected(orchestrator.deploy.admit(deployRequest(PROD, spec, approved.credentials)));
    assertRejection(second, status.FAILED_PRECONDITION, ErrorReason.APPROVAL_CONSUMED);
    assert.equal(second.metadata["approval_id"], created.approvalId);
  });

  it("stops admitting with a revoked approval's credential", async () => {
    const spec = uniqueSpec();
    const created = await orchestrator.approvals.create({
      environment: PROD,
      action: Action.ACTION_DEPLOY,
      specHash: specHash(spec),
      justification: "hotfix",
      initiatedBy: INITIATOR,
    });
    const approved = await reviewer.approvals.decide({ approvalId: created.approvalId, verdict: Verdict.VERDICT_APPROVE });
    const revoked = await reviewer.approvals.revoke({ approvalId: created.approvalId, reason: "wrong build" });
    assert.equal(revoked.state, ApprovalState.APPROVAL_STATE_REVOKED);
    assert.equal(revoked.decisionReason, "wrong build");

    const rejection = await rejected(orchestrator.deploy.admit(deployRequest(PROD, spec, approved.credentials)));
    assertRejection(rejection, status.PERMISSION_DENIED, ErrorReason.APPROVAL_REVOKED);
  });

  it("ends a denied approval as DENIED and refuses to decide it again", async () => {
    const created = await orchestrator.approvals.create({
      environment: PROD,
      action: Action.ACTION_DEPLOY,
      specKv: uniqueSpec(),
      justification: "risky change",
      initiatedBy: INITIATOR,
    });
    const second = await server.client("reviewer2");
    const denied = await second.approvals.decide({
      approvalId: created.approvalId,
      verdict: Verdict.VERDICT_DENY,
      reason: "no rollback plan",
    });
    assert.equal(denied.state, ApprovalState.APPROVAL_STATE_DENIED);
    assert.equal(denied.decisionReason, "no rollback plan");
    assert.deepEqual(denied.credentials, []);

    const again = await rejected(
      reviewer.approvals.decide({ approvalId: created.approvalId, verdict: Verdict.VERDICT_APPROVE }),
    );
    assertRejection(again, status.FAILED_PRECONDITION, ErrorReason.APPROVAL_NOT_PENDING);
    assert.equal(again.metadata["approval_id"], created.approvalId);
  });

  it("answers APPROVAL_NOT_FOUND for an unknown approval id", async () => {
    const rejection = await rejected(orchestrator.approvals.get({ approvalId: "apr_does_not_exist" }));
    assertRejection(rejection, status.NOT_FOUND, ErrorReason.APPROVAL_NOT_FOUND);
  });

  it("admits a credential signed offline with the dev signing key, once", async () => {
    const spec = uniqueSpec();
    const issuedAt = new Date();
    const credential = signCredential(
      {
        kid: server.kid,
        orgId: PROD.orgId,
        projectId: PROD.projectId,
        environmentId: PROD.environmentId,
        environmentPosture: "prod",
        specHash: specHash(spec),
        capabilities: ["deploy"],
        issuedAt,
        expiresAt: new Date(issuedAt.getTime() + 10 * 60 * 1000),
        issuedBy: "spiffe://dev.local/reviewer/offline",
        approvalId: `apr_ts_${randomUUID()}`,
      },
      await readFile(join(server.dir, "signing.key")),
    );

    const admission = await orchestrator.deploy.admit(deployRequest(PROD, spec, [credential]));
    assert.equal(admission.specHash, specHash(spec));
    assert.equal(admission.approvalIds.length, 1);

    const second = await rejected(orchestrator.deploy.admit(deployRequest(PROD, spec, [credential])));
    assertRejection(second, status.FAILED_PRECONDITION, ErrorReason.APPROVAL_CONSUMED);
    assert.notEqual(second.decisionId, admission.decisionId);
  });

  it("rejects an offline credential for another spec as SPEC_HASH_MISMATCH with expected and actual", async () => {
    const spec = uniqueSpec();
    const issuedAt = new Date();
    const otherHash = specHash(uniqueSpec());
    const credential = signCredential(
      {
        kid: server.kid,
        ...PROD,
        environmentPosture: "prod",
        specHash: otherHash,
        capabilities: ["deploy"],
        issuedAt,
        expiresAt: new Date(issuedAt.getTime() + 60_000),
        issuedBy: "spiffe://dev.local/reviewer/offline",
        approvalId: `apr_ts_${randomUUID()}`,
      },
      await readFile(join(server.dir, "signing.key")),
    );
    const rejection = await rejected(orchestrator.deploy.admit(deployRequest(PROD, spec, [credential])));
    assertRejection(rejection, status.FAILED_PRECONDITION, ErrorReason.SPEC_HASH_MISMATCH);
    assert.equal(rejection.metadata["expected"], specHash(spec));
    assert.equal(rejection.metadata["actual"], otherHash);
  });

  it("previews and admits a dry-run replay", async () => {
    const spec = uniqueSpec();
    const replay = {
      requestId: `ts-${randomUUID()}`,
      environment: PROD,
      mode: ReplayMode.REPLAY_MODE_DRY_RUN,
      incidentId: "inc-42",
      specKv: spec,
      sourceArtifact: { artifactId: "artifact-1", digest: DIGEST, environmentId: PROD.environmentId },
      initiatedBy: INITIATOR,
    };
    const preview = await orchestrator.replay.preview(replay);
    assert.equal(preview.action, Action.ACTION_REPLAY_DRY_RUN);
    assert.equal(preview.policyDecision, PolicyDecision.POLICY_DECISION_ALLOW);
    const admission = await orchestrator.replay.admit(replay);
    assert.equal(admission.action, Action.ACTION_REPLAY_DRY_RUN);
  });

  it("verifies the audit chain as the auditor", async () => {
    const verified = await auditor.audit.verify();
    assert.equal(verified.ok, true);
    assert.ok(verified.entriesChecked > 0);
    assert.equal(verified.firstBadSeq, 0);
    assert.match(verified.headHash, /^sha256:[0-9a-f]{64}$/);
  });

  it("fails without a typed rejection when the certificate is not a client certificate", async () => {
    const impostor = await server.client("server");
    await assert.rejects(impostor.health(), (error: unknown) => {
      assert.ok(!(error instanceof AdmissionRejected));
      assert.equal((error as { code?: unknown }).code, status.UNAVAILABLE);
      return true;
    });
  });
});

/** Every audit entry with this outcome, following next_page_token to the end. */
async function auditEntries(auditor: AdmissionClient, outcome: string) {
  const entries = [];
  let pageToken = "";
  do {
    const page = await auditor.audit.list({ outcome, pageSize: 50, pageToken });
    entries.push(...page.entries);
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  return entries;
}
