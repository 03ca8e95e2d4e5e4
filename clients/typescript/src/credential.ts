import { KeyObject, createPrivateKey, sign } from "node:crypto";

/** The posture an environment had when an approval was issued. */
export type EnvironmentPosture = "dev" | "staging" | "prod";

/** The claims of an approval credential (ByteOr approval-credentials-v1), version 1. */
export interface ApprovalClaims {
  /** Id of the signing key in the service's trusted key set. */
  kid: string;
  /** Organization the approval is for. */
  orgId: string;
  /** Project the approval is for. */
  projectId: string;
  /** Environment the approval is for. */
  environmentId: string;
  /** Posture of that environment. */
  environmentPosture: EnvironmentPosture;
  /** `sha256:` digest of the approved spec (see `specHash`). */
  specHash: string;
  /** Capabilities the approval grants. */
  capabilities: readonly string[];
  /** When the approval was issued; written in whole seconds. */
  issuedAt: Date;
  /** When the approval stops being valid; must be after `issuedAt`. */
  expiresAt: Date;
  /** Identity of the approver; must differ from the initiator and the caller. */
  issuedBy: string;
  /** Id of the approval this credential carries. */
  approvalId: string;
  /** When set, the config bundle digest the approval is bound to. */
  configBundleDigest?: string;
}

/** Why claims or a key cannot be used to sign a credential; `field` names the offending input. */
export class CredentialInputError extends TypeError {
  /** The claim (or `privateKey`) that is wrong. */
  readonly field: string;

  constructor(field: string, problem: string) {
    super(`${field} ${problem}`);
    this.name = "CredentialInputError";
    this.field = field;
  }
}

/** A JSON value that canonical JSON can write. */
export type JsonValue = string | number | boolean | null | readonly JsonValue[] | { readonly [key: string]: JsonValue };

const POSTURES: readonly string[] = ["dev", "staging", "prod"];
const DIGEST = /^sha256:[0-9a-f]{64}$/;

/**
 * Signs `claims` offline: the payload is the RFC 8785 canonical JSON of the claims, the
 * signature Ed25519 over those bytes, and the credential `BASE64URL(payload).BASE64URL(signature)`
 * without padding. `privateKey` is an Ed25519 PKCS#8 PEM (such as dev mode's `signing.key`) or a
 * key object.
 */
export function signCredential(claims: ApprovalClaims, privateKey: string | Buffer | KeyObject): string {
  const key = ed25519Key(privateKey);
  const payload = Buffer.from(canonicalJson(wireClaims(claims)), "utf8");
  const signature = sign(null, payload, key);
  return `${payload.toString("base64url")}.${signature.toString("base64url")}`;
}

/** The claims as the credential's JSON object, after checking every field. */
export function wireClaims(claims: ApprovalClaims): Record<string, JsonValue> {
  const issuedAt = wholeSeconds("issuedAt", claims.issuedAt);
  const expiresAt = wholeSeconds("expiresAt", claims.expiresAt);
  if (expiresAt <= issuedAt) {
    throw new CredentialInputError("expiresAt", "must be after issuedAt");
  }
  if (!POSTURES.includes(claims.environmentPosture)) {
    throw new CredentialInputError("environmentPosture", "must be one of dev, staging, prod");
  }
  if (typeof claims.specHash !== "string" || !DIGEST.test(claims.specHash)) {
    throw new CredentialInputError("specHash", "must be sha256: followed by 64 lowercase hex digits");
  }
  if (!Array.isArray(claims.capabilities) || claims.capabilities.some((c) => typeof c !== "string" || c === "")) {
    throw new CredentialInputError("capabilities", "must be an array of non-empty strings");
  }
  const wire: Record<string, JsonValue> = {
    v: 1,
    kid: required("kid", claims.kid),
    org_id: required("orgId", claims.orgId),
    project_id: required("projectId", claims.projectId),
    environment_id: required("environmentId", claims.environmentId),
    environment_posture: claims.environmentPosture,
    spec_hash: claims.specHash,
    capabilities: [...claims.capabilities],
    issued_at: formatSeconds(issuedAt),
    expires_at: formatSeconds(expiresAt),
    issued_by: required("issuedBy", claims.issuedBy),
    approval_id: required("approvalId", claims.approvalId),
  };
  if (claims.configBundleDigest !== undefined) {
    if (!DIGEST.test(claims.configBundleDigest)) {
      throw new CredentialInputError("configBundleDigest", "must be sha256: followed by 64 lowercase hex digits");
    }
    wire["config_bundle_digest"] = claims.configBundleDigest;
  }
  return wire;
}

/**
 * RFC 8785 (JSON Canonicalization Scheme) text of `value`: object members sorted by their
 * UTF-16 code units, no whitespace, strings and numbers written as ECMAScript does.
 */
export function canonicalJson(value: JsonValue): string {
  if (value === null || typeof value === "boolean" || typeof value === "string") {
    return JSON.stringify(value);
  }
  if (typeof value === "number") {
    if (!Number.isFinite(value)) {
      throw new TypeError("canonical json cannot hold a non-finite number");
    }
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) {
    return `[${value.map((item: JsonValue) => canonicalJson(item)).join(",")}]`;
  }
  const object = value as { readonly [key: string]: JsonValue };
  // The default sort compares UTF-16 code units, which is the order RFC 8785 asks for.
  const members = Object.keys(object)
    .sort()
    .map((key) => `${JSON.stringify(key)}:${canonicalJson(object[key] as JsonValue)}`);
  return `{${members.join(",")}}`;
}

/** RFC 3339 UTC with `Z` and whole seconds, e.g. `2026-11-23T10:00:00Z`; milliseconds are dropped. */
export function formatCredentialTime(time: Date): string {
  return formatSeconds(wholeSeconds("time", time));
}

function formatSeconds(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
}

function wholeSeconds(field: string, time: Date): number {
  if (!(time instanceof Date) || Number.isNaN(time.getTime())) {
    throw new CredentialInputError(field, "must be a valid Date");
  }
  const seconds = Math.floor(time.getTime() / 1000);
  if (seconds < 0 || seconds >= 253_402_300_800) {
    throw new CredentialInputError(field, "must be between 1970 and 9999");
  }
  return seconds;
}

function required(field: string, value: unknown): string {
  if (typeof value !== "string" || value === "") {
    throw new CredentialInputError(field, "must be a non-empty string");
  }
  return value;
}

function ed25519Key(privateKey: string | Buffer | KeyObject): KeyObject {
  let key: KeyObject;
  if (privateKey instanceof KeyObject) {
    key = privateKey;
  } else {
    try {
      key = createPrivateKey({ key: privateKey, format: "pem" });
    } catch (error) {
      throw new CredentialInputError("privateKey", `is not a PEM private key (${(error as Error).message})`);
    }
  }
  if (key.type !== "private" || key.asymmetricKeyType !== "ed25519") {
    throw new CredentialInputError("privateKey", `must be an Ed25519 private key, not ${key.asymmetricKeyType ?? key.type}`);
  }
  return key;
}
