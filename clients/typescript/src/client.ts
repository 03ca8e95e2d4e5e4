import { readFile } from "node:fs/promises";

import {
  CallOptions,
  ChannelCredentials,
  Client,
  ClientOptions,
  ClientUnaryCall,
  Metadata,
  ServiceError,
  credentials,
} from "@grpc/grpc-js";

import {
  DeployAdmissionClient,
  DeployRequest,
  ReplayAdmissionClient,
  ReplayRequest,
} from "./gen/byteor/admission/v1/admission";
import {
  ApprovalsClient,
  CreateApprovalRequest,
  DecideApprovalRequest,
  GetApprovalRequest,
  ListEligibleRequest,
  ListEligibleResponse,
  RevokeApprovalRequest,
} from "./gen/byteor/admission/v1/approvals";
import {
  AuditClient,
  ListAuditRequest,
  ListAuditResponse,
  VerifyAuditRequest,
  VerifyAuditResponse,
} from "./gen/byteor/admission/v1/audit";
import { Admission, Approval, DeepPartial, Preview } from "./gen/byteor/admission/v1/types";
import { HealthCheckResponse_ServingStatus, HealthClient } from "./gen/grpc/health/v1/health";
import { rejectionFromError } from "./rejection";

/** Where the service is and which PEM files make the mutual-TLS identity. */
export interface ConnectOptions {
  /** `https://host:port` or `host:port`; the service speaks TLS only. */
  endpoint: string;
  /** Path of the PEM CA bundle the server certificate must chain to (or its PEM contents as a Buffer). */
  ca: string | Buffer;
  /** Path of the PEM client certificate chain (or its contents as a Buffer). */
  cert: string | Buffer;
  /** Path of the PEM private key of the client certificate (or its contents as a Buffer). */
  key: string | Buffer;
  /** The name to check the server certificate against, when it differs from the endpoint's host. */
  serverName?: string;
  /** Deadline of each call in milliseconds unless the call sets its own; default 30 000. */
  timeoutMs?: number;
}

/** Per-call options. */
export interface CallSettings {
  /** Deadline of this call in milliseconds. */
  timeoutMs?: number;
  /** Extra request metadata. */
  metadata?: Metadata;
}

/** Why `connect` cannot build a client; `field` names the option that is wrong. */
export class ConnectError extends TypeError {
  /** The option that is wrong: endpoint, ca, cert, key or timeoutMs. */
  readonly field: string;

  constructor(field: string, problem: string) {
    super(`${field} ${problem}`);
    this.name = "ConnectError";
    this.field = field;
  }
}

type Callback<Res> = (error: ServiceError | null, response: Res) => void;
type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: Callback<Res>,
) => ClientUnaryCall;

const DEFAULT_TIMEOUT_MS = 30_000;

/**
 * Reads the PEM files and returns a client of the admission service over mutual TLS. Nothing
 * is sent until the first call.
 */
export async function connect(options: ConnectOptions): Promise<AdmissionClient> {
  const target = targetOf(options.endpoint);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new ConnectError("timeoutMs", "must be a positive number of milliseconds");
  }
  const [ca, cert, key] = await Promise.all([
    readPem("ca", options.ca),
    readPem("cert", options.cert),
    readPem("key", options.key),
  ]);
  let channelCredentials: ChannelCredentials;
  try {
    channelCredentials = credentials.createSsl(ca, key, cert);
  } catch (error) {
    throw new ConnectError("cert", `and key do not make a TLS identity (${(error as Error).message})`);
  }
  const clientOptions: ClientOptions = {};
  if (options.serverName !== undefined) {
    clientOptions["grpc.ssl_target_name_override"] = options.serverName;
    clientOptions["grpc.default_authority"] = options.serverName;
  }
  return new AdmissionClient(target, channelCredentials, clientOptions, timeoutMs);
}

/** The gRPC target (`host:port`) of an endpoint. */
export function targetOf(endpoint: string): string {
  if (typeof endpoint !== "string" || endpoint.trim() === "") {
    throw new ConnectError("endpoint", "must be https://host:port or host:port");
  }
  let rest = endpoint.trim();
  if (rest.startsWith("https://")) {
    rest = rest.slice("https://".length).replace(/\/+$/, "");
  } else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(rest)) {
    throw new ConnectError("endpoint", `must use https (the service requires mutual TLS), got ${endpoint}`);
  }
  if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(rest)) {
    throw new ConnectError("endpoint", `must be https://host:port or host:port, got ${endpoint}`);
  }
  return rest;
}

async function readPem(field: string, source: string | Buffer): Promise<Buffer> {
  if (Buffer.isBuffer(source)) {
    return source;
  }
  if (typeof source !== "string" || source === "") {
    throw new ConnectError(field, "must be the path of a PEM file");
  }
  let pem: Buffer;
  try {
    pem = await readFile(source);
  } catch (error) {
    throw new ConnectError(field, `cannot be read from ${source} (${(error as NodeJS.ErrnoException).code ?? error})`);
  }
  if (!pem.includes("-----BEGIN ")) {
    throw new ConnectError(field, `file ${source} holds no PEM block`);
  }
  return pem;
}

/** A client of the admission service; every method returns a promise and throws `AdmissionRejected` for a typed rejection. */
export class AdmissionClient {
  /** DeployAdmission: admit or preview a deployment. */
  readonly deploy: {
    /** Decides whether the deployment may run; consumes one use of each approval that admits it. */
    admit(request: DeepPartial<DeployRequest>, settings?: CallSettings): Promise<Admission>;
    /** Evaluates the deployment without credentials and without consuming anything. */
    preview(request: DeepPartial<DeployRequest>, settings?: CallSettings): Promise<Preview>;
  };
  /** ReplayAdmission: admit or preview a replay. */
  readonly replay: {
    /** Decides whether the replay may run; consumes one use of each approval that admits it. */
    admit(request: DeepPartial<ReplayRequest>, settings?: CallSettings): Promise<Admission>;
    /** Evaluates the replay without credentials and without consuming anything. */
    preview(request: DeepPartial<ReplayRequest>, settings?: CallSettings): Promise<Preview>;
  };
  /** Approvals: request, decide, read, list and revoke approvals. */
  readonly approvals: {
    /** Creates a pending approval request (orchestrator role). */
    create(request: DeepPartial<CreateApprovalRequest>, settings?: CallSettings): Promise<Approval>;
    /** Approves or denies a pending approval (reviewer role). */
    decide(request: DeepPartial<DecideApprovalRequest>, settings?: CallSettings): Promise<Approval>;
    /** Reads one approval. */
    get(request: DeepPartial<GetApprovalRequest>, settings?: CallSettings): Promise<Approval>;
    /** Lists the approvals that would admit an action now, newest first. */
    listEligible(request: DeepPartial<ListEligibleRequest>, settings?: CallSettings): Promise<ListEligibleResponse>;
    /** Revokes an approval (reviewer role). */
    revoke(request: DeepPartial<RevokeApprovalRequest>, settings?: CallSettings): Promise<Approval>;
  };
  /** Audit: read and verify the audit trail (auditor role). */
  readonly audit: {
    /** Lists entries in seq order, one page at a time. */
    list(request?: DeepPartial<ListAuditRequest>, settings?: CallSettings): Promise<ListAuditResponse>;
    /** Walks the whole chain and recomputes every hash. */
    verify(settings?: CallSettings): Promise<VerifyAuditResponse>;
  };

  private readonly clients: Client[];
  private readonly healthStub: HealthClient;
  private readonly timeoutMs: number;

  /** Use `connect` rather than this constructor. */
  constructor(target: string, channelCredentials: ChannelCredentials, options: ClientOptions, timeoutMs: number) {
    this.timeoutMs = timeoutMs;
    const deploy = new DeployAdmissionClient(target, channelCredentials, options);
    // The other stubs share the first one's channel, so one connection carries every service.
    const shared = { ...options, channelOverride: deploy.getChannel() };
    const replay = new ReplayAdmissionClient(target, channelCredentials, shared);
    const approvals = new ApprovalsClient(target, channelCredentials, shared);
    const audit = new AuditClient(target, channelCredentials, shared);
    this.healthStub = new HealthClient(target, channelCredentials, shared);
    this.clients = [deploy, replay, approvals, audit, this.healthStub];

    this.deploy = {
      admit: (r, s) => this.call(deploy, deploy.admit, DeployRequest.fromPartial(r), s),
      preview: (r, s) => this.call(deploy, deploy.preview, DeployRequest.fromPartial(r), s),
    };
    this.replay = {
      admit: (r, s) => this.call(replay, replay.admit, ReplayRequest.fromPartial(r), s),
      preview: (r, s) => this.call(replay, replay.preview, ReplayRequest.fromPartial(r), s),
    };
    this.approvals = {
      create: (r, s) => this.call(approvals, approvals.create, CreateApprovalRequest.fromPartial(r), s),
      decide: (r, s) => this.call(approvals, approvals.decide, DecideApprovalRequest.fromPartial(r), s),
      get: (r, s) => this.call(approvals, approvals.get, GetApprovalRequest.fromPartial(r), s),
      listEligible: (r, s) => this.call(approvals, approvals.listEligible, ListEligibleRequest.fromPartial(r), s),
      revoke: (r, s) => this.call(approvals, approvals.revoke, RevokeApprovalRequest.fromPartial(r), s),
    };
    this.audit = {
      list: (r, s) => this.call(audit, audit.list, ListAuditRequest.fromPartial(r ?? {}), s),
      verify: (s) => this.call(audit, audit.verify, VerifyAuditRequest.fromPartial({}), s),
    };
  }

  /** The serving status of the whole server (`grpc.health.v1.Health/Check`). */
  async health(settings?: CallSettings): Promise<HealthCheckResponse_ServingStatus> {
    const response = await this.call(this.healthStub, this.healthStub.check, { service: "" }, settings);
    return response.status;
  }

  /** Closes the channel; calls made afterwards fail. */
  close(): void {
    for (const client of this.clients) {
      client.close();
    }
  }

  private call<Req, Res>(
    client: Client,
    method: UnaryMethod<Req, Res>,
    request: Req,
    settings: CallSettings | undefined,
  ): Promise<Res> {
    const timeoutMs = settings?.timeoutMs ?? this.timeoutMs;
    const metadata = settings?.metadata ?? new Metadata();
    return new Promise((resolve, reject) => {
      method.call(client, request, metadata, { deadline: Date.now() + timeoutMs }, (error, response) => {
        if (error !== null) {
          reject(rejectionFromError(error));
        } else {
          resolve(response);
        }
      });
    });
  }
}
