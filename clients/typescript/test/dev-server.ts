// Starts the real admission server binary in dev mode for the tests and connects as its
// dev identities.
import { ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

import { AdmissionClient, ServingStatus, connect } from "../src";

/** The dev identities: file stem of their certificate and key. */
export type DevIdentity = "orchestrator" | "reviewer" | "reviewer2" | "auditor" | "server";

/** A running dev server. */
export interface DevServer {
  /** The dev directory (certificates, signing.key, admission.toml). */
  dir: string;
  /** `https://localhost:<port>`. */
  endpoint: string;
  /** The `[signing] kid` of admission.toml. */
  kid: string;
  /** A client with the certificate of `identity`; closed by `stop`. */
  client(identity: DevIdentity): Promise<AdmissionClient>;
  /** Stops the server, closes the clients and removes the directory. */
  stop(): Promise<void>;
}

const HEALTH_ATTEMPTS = 100;

/** Starts `$ADMISSION_SERVER_BIN dev` on a port the kernel picks and waits for SERVING. */
export async function startDevServer(): Promise<DevServer> {
  const binary = process.env["ADMISSION_SERVER_BIN"];
  if (binary === undefined || binary === "") {
    throw new Error("ADMISSION_SERVER_BIN must name the admission-server binary the tests run");
  }
  const dir = await mkdtemp(join(tmpdir(), "admission-ts-"));
  const child = spawn(binary, ["dev", "--dir", dir, "--listen", "127.0.0.1:0"], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: "warn" },
  });
  // A test run that dies without calling stop must not leave the server behind.
  const killOnExit = (): void => {
    child.kill("SIGKILL");
  };
  process.once("exit", killOnExit);
  const clients: AdmissionClient[] = [];
  const stop = async (): Promise<void> => {
    clients.forEach((c) => c.close());
    await stopChild(child);
    process.removeListener("exit", killOnExit);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const port = await announcedPort(child);
    const endpoint = `https://localhost:${port}`;
    const kid = signingKid(await readFile(join(dir, "admission.toml"), "utf8"));
    const client = async (identity: DevIdentity): Promise<AdmissionClient> => {
      const made = await connect({
        endpoint,
        ca: join(dir, "ca.pem"),
        cert: join(dir, `${identity}.pem`),
        key: join(dir, `${identity}.key`),
      });
      clients.push(made);
      return made;
    };
    await waitServing(await client("orchestrator"));
    return { dir, endpoint, kid, client, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** The port from the instructions dev mode prints once it listens. */
function announcedPort(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    let stdout = "";
    let stderr = "";
    child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout?.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      const match = /https:\/\/localhost:(\d+)/.exec(stdout);
      if (match?.[1] !== undefined) {
        resolve(Number(match[1]));
      }
    });
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`admission-server dev exited with ${code}: ${stderr}`)));
  });
}

async function waitServing(client: AdmissionClient): Promise<void> {
  let last: unknown;
  for (let attempt = 0; attempt < HEALTH_ATTEMPTS; attempt++) {
    try {
      if ((await client.health({ timeoutMs: 5_000 })) === ServingStatus.SERVING) {
        return;
      }
    } catch (error) {
      last = error;
    }
    await sleep(100);
  }
  throw new Error(`dev server never reported SERVING: ${String(last)}`);
}

function signingKid(toml: string): string {
  const signing = /\[signing\][^[]*?\bkid\s*=\s*"([^"]+)"/.exec(toml);
  if (signing?.[1] === undefined) {
    throw new Error("admission.toml has no [signing] kid");
  }
  return signing[1];
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return;
  }
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  await exited;
}
