// connect() checks its options before any call and names the one that is wrong.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";

import { ConnectError, connect, specHash, targetOf } from "../src";

describe("targetOf", () => {
  it("accepts https URLs and host:port", () => {
    assert.equal(targetOf("https://localhost:50051"), "localhost:50051");
    assert.equal(targetOf("https://localhost:50051/"), "localhost:50051");
    assert.equal(targetOf("127.0.0.1:8443"), "127.0.0.1:8443");
    assert.equal(targetOf("https://[::1]:50051"), "[::1]:50051");
  });

  it("refuses plaintext and malformed endpoints", () => {
    for (const endpoint of ["http://localhost:50051", "localhost", "https://localhost", ""]) {
      assert.throws(
        () => targetOf(endpoint),
        (error: unknown) => error instanceof ConnectError && error.field === "endpoint",
        endpoint,
      );
    }
  });
});

describe("connect", () => {
  it("names the PEM option that cannot be read or holds no PEM", async () => {
    const dir = await mkdtemp(join(tmpdir(), "admission-ts-connect-"));
    try {
      const empty = join(dir, "empty.pem");
      await writeFile(empty, "nothing here");
      const pem = Buffer.from("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n");
      const cases: [Record<string, unknown>, string][] = [
        [{ ca: join(dir, "missing.pem") }, "ca"],
        [{ cert: empty }, "cert"],
        [{ key: "" }, "key"],
        [{ timeoutMs: 0 }, "timeoutMs"],
      ];
      for (const [change, field] of cases) {
        await assert.rejects(
          connect({ endpoint: "localhost:1", ca: pem, cert: pem, key: pem, ...change }),
          (error: unknown) => error instanceof ConnectError && error.field === field,
          field,
        );
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("specHash", () => {
  it("is sha256: and the hex digest of the bytes as given", () => {
    assert.equal(specHash("a=1\n"), "sha256:fe3209d6d4f51935b391288a43df48d9ddece1a992597ae53387ca16611a9179");
    assert.equal(specHash(Buffer.from("a=1\n")), specHash("a=1\n"));
  });
});
