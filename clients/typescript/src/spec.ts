import { createHash } from "node:crypto";

/**
 * The spec hash of a canonical spec: `sha256:` and the lowercase hex SHA-256 of the bytes exactly
 * as sent, so `sha256sum spec.kv` gives the same digest. A string is hashed as its UTF-8 bytes.
 */
export function specHash(specKv: Uint8Array | string): string {
  return `sha256:${createHash("sha256").update(specKv).digest("hex")}`;
}
