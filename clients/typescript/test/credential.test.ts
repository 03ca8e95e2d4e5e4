// The offline signer: canonical payload, Ed25519 signature, and the same bytes as the Rust signer.
import assert from "node:assert/strict";
import { createPrivateKey, createPublicKey, verify } from "node:crypto";
import { describe, it } from "node:test";

import {
  ApprovalClaims,
  CredentialInputError,
  canonicalJson,
  formatCredentialTime,
  signCredential,
  specHash,
} from "../src";

// A throwaway key made for this vector only.
const VECTOR_KEY = `-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIKXq8RQDedtTDxjKBiAxT+ssnB2GxE3w/6fjSXW2yIwL
-----END PRIVATE KEY-----
`;

const VECTOR_CLAIMS: ApprovalClaims = {
  kid: "vector-2026",
  orgId: "acme",
  projectId: "payments",
  environmentId: "prod",
  environmentPosture: "prod",
  specHash: specHash("a=1\n"),
  capabilities: ["deploy", "db.migrate"],
  issuedAt: new Date("2026-11-23T10:00:00.750Z"),
  expiresAt: new Date("2026-11-23T11:00:00Z"),
  issuedBy: 'spiffe://acme.example/reviewer/zoë "q"',
  approvalId: "apr_vector_1",
  configBundleDigest: specHash("bundle"),
};

// `admissionctl sign` with the same key and claims (Ed25519 signatures are deterministic).
const VECTOR_TOKEN =
  "eyJhcHByb3ZhbF9pZCI6ImFwcl92ZWN0b3JfMSIsImNhcGFiaWxpdGllcyI6WyJkZXBsb3kiLCJkYi5taWdyYXRlIl0sImNvbmZpZ19idW5kbGVfZGlnZXN0Ijoic2hhMjU2OjFlNmVkNjVkNzdkNjM2NGVlYWVkNWE3NDViYTVjNDk4NWFlMmI3MDBkZDg1ZDdjZjdmMDI3YmRmMjk0YTMzZmMiLCJlbnZpcm9ubWVudF9pZCI6InByb2QiLCJlbnZpcm9ubWVudF9wb3N0dXJlIjoicHJvZCIsImV4cGlyZXNfYXQiOiIyMDI2LTExLTIzVDExOjAwOjAwWiIsImlzc3VlZF9hdCI6IjIwMjYtMTEtMjNUMTA6MDA6MDBaIiwiaXNzdWVkX2J5Ijoic3BpZmZlOi8vYWNtZS5leGFtcGxlL3Jldmlld2VyL3pvw6sgXCJxXCIiLCJraWQiOiJ2ZWN0b3ItMjAyNiIsIm9yZ19pZCI6ImFjbWUiLCJwcm9qZWN0X2lkIjoicGF5bWVudHMiLCJzcGVjX2hhc2giOiJzaGEyNTY6ZmUzMjA5ZDZkNGY1MTkzNWIzOTEyODhhNDNkZjQ4ZDlkZGVjZTFhOTkyNTk3YWU1MzM4N2NhMTY2MTFhOTE3OSIsInYiOjF9.2cJT4pOQVTHAzV64R2S1rBKtD_SWBkBXGtoV3Xm3Rd7cwZCuTTf2OOUXIsrqBEtpVUg4RCJv9V73ClIX6xk2Bw";

describe("signCredential", () => {
  it("produces exactly the credential the Rust signer produces", () => {
    assert.equal(signCredential(VECTOR_CLAIMS, VECTOR_KEY), VECTOR_TOKEN);
  });

  it("writes a canonical payload with whole-second UTC times and a verifiable signature", () => {
    const token = signCredential(VECTOR_CLAIMS, VECTOR_KEY);
    const [payloadPart, signaturePart, ...rest] = token.split(".");
    assert.equal(rest.length, 0);
    assert.doesNotMatch(token, /[=+/]/, "base64url without padding");
    const payload = Buffer.from(payloadPart ?? "", "base64url");
    const parsed = JSON.parse(payload.toString("utf8"));
    assert.equal(payload.toString("utf8"), canonicalJson(parsed), "the payload is already canonical");
    assert.deepEqual(Object.keys(parsed), [...Object.keys(parsed)].sort());
    assert.equal(parsed.v, 1);
    assert.equal(parsed.issued_at, "2026-11-23T10:00:00Z");
    assert.equal(parsed.expires_at, "2026-11-23T11:00:00Z");
    const publicKey = createPublicKey(createPrivateKey(VECTOR_KEY));
    assert.ok(verify(null, payload, publicKey, Buffer.from(signaturePart ?? "", "base64url")));
  });

  it("leaves config_bundle_digest out when it is not given", () => {
    const { configBundleDigest: _omitted, ...claims } = VECTOR_CLAIMS;
    const payload = JSON.parse(Buffer.from(signCredential(claims, VECTOR_KEY).split(".")[0] ?? "", "base64url").toString());
    assert.equal("config_bundle_digest" in payload, false);
  });

  it("names the field of invalid claims", () => {
    const cases: [Partial<ApprovalClaims>, string][] = [
      [{ kid: "" }, "kid"],
      [{ issuedBy: "" }, "issuedBy"],
      [{ specHash: "sha256:ABC" }, "specHash"],
      [{ environmentPosture: "production" as ApprovalClaims["environmentPosture"] }, "environmentPosture"],
      [{ expiresAt: new Date("2026-11-23T10:00:00.900Z") }, "expiresAt"],
      [{ issuedAt: new Date("not a time") }, "issuedAt"],
      [{ capabilities: ["deploy", ""] }, "capabilities"],
      [{ configBundleDigest: "md5:00" }, "configBundleDigest"],
    ];
    for (const [change, field] of cases) {
      assert.throws(
        () => signCredential({ ...VECTOR_CLAIMS, ...change }, VECTOR_KEY),
        (error: unknown) => error instanceof CredentialInputError && error.field === field,
        field,
      );
    }
  });

  it("refuses a key that is not an Ed25519 private key", async () => {
    const { generateKeyPairSync } = await import("node:crypto");
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    for (const key of [privateKey, "not a pem"]) {
      assert.throws(
        () => signCredential(VECTOR_CLAIMS, key),
        (error: unknown) => error instanceof CredentialInputError && error.field === "privateKey",
      );
    }
  });
});

describe("canonicalJson", () => {
  it("sorts members by UTF-16 code units and writes no whitespace", () => {
    // RFC 8785 section 3.2.3: "\u20ac" sorts after "\r" and before "\ud83d\ude00" and "\u00f6".
    const value = { "\u20ac": 1, "\r": 2, "\ud83d\ude00": 3, "1": 4, "\u00f6": 5, a: [true, null, "x"] };
    assert.equal(canonicalJson(value), '{"\\r":2,"1":4,"a":[true,null,"x"],"ö":5,"€":1,"😀":3}');
  });

  it("writes numbers and escapes as ECMAScript does", () => {
    assert.equal(canonicalJson([1e21, 0.000001, -0, 10, "\u0007\u2028"]), '[1e+21,0.000001,0,10,"\\u0007\u2028"]');
    assert.throws(() => canonicalJson(Number.NaN), TypeError);
  });
});

describe("formatCredentialTime", () => {
  it("drops milliseconds and ends in Z", () => {
    assert.equal(formatCredentialTime(new Date("2026-01-02T03:04:05.999Z")), "2026-01-02T03:04:05Z");
  });
});
