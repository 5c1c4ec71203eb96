/**
 * The shapes the serving API answers. No imports, so browser code (the plugin's UI) can import
 * them too: `import type { Deployment } from '../../api/types.ts'`.
 */

/** A deployment's state, derived from its revisions. */
export type DeploymentState =
  /** Its first revision is starting (no revision has been ready yet). */
  | 'deploying'
  /** Every revision in its traffic is ready. */
  | 'ready'
  /** It serves, but a revision in its traffic lost a replica (restarting) or a new revision is rolling out. */
  | 'degraded'
  /** No revision can serve: the last one failed (see `reason`). */
  | 'failed'
  /** Stopped by a user: no replica runs; `start` brings the live revision back. */
  | 'stopped';

/** A revision's state. */
export type RevisionState =
  /** Submitted; its replicas start (or wait for resources). */
  | 'starting'
  /** Every replica passes its readiness check. */
  | 'ready'
  /** Running, but not every replica is ready (one died and is restarting). */
  | 'degraded'
  /** It could not start, or its replicas keep failing (`reason`). */
  | 'failed'
  /** Replaced by a later revision, rolled back from, or the deployment was stopped. */
  | 'retired';

/** The API a runtime speaks on its HTTP port. */
export type RuntimeProtocol = 'openai' | 'kserve-v2' | 'tgi';

/** Resources per replica. */
export interface ServingResources {
  /** Whole cards per replica (0: CPU only). */
  gpus: number;
  /** Instead of whole cards: a slice of one card's memory (MiB). */
  gpuMemoryMiB?: number;
  cpu?: number;
  memoryMiB?: number;
}

/** A revision: one immutable configuration of a deployment (model version, runtime, options, resources). */
export interface Revision {
  id: string;
  deploymentId: string;
  /** 1, 2, 3, … per deployment. */
  number: number;
  state: RevisionState;
  reason: string | null;
  modelVersion: string;
  /** The model's name and the version's number, for people. */
  modelName: string;
  modelVersionNumber: number;
  runtime: string;
  executor: string;
  resources: ServingResources;
  replicas: number;
  options: Record<string, unknown>;
  /** What changed against the revision before it, in words (`options.dtype: float32 → bfloat16`), or `rollback to revision 2`. */
  change: string;
  /** The revision it restores, when it was made by a rollback. */
  rollbackOf: number | null;
  workloadId: string | null;
  createdBy: string | null;
  createdAt: string;
  readyAt: string | null;
  retiredAt: string | null;
}

/** A replica of a revision, from its workload. */
export interface ReplicaStatus {
  revision: number;
  replica: number;
  /** The scheduler's replica state: `placed`, `starting`, `running`, `ready`, `exited`, `lost`. */
  state: string;
  /** Whether the gateway sends it traffic (it is ready). */
  inRotation: boolean;
  nodeId: string;
  port: number | null;
  devices: { index: number; memoryMiB: number; whole: boolean }[];
  restarts: number;
}

/** One entry of a deployment's traffic split: a revision and its weight (weights add up to 100). */
export interface TrafficEntry {
  revision: number;
  weight: number;
}

export interface Deployment {
  id: string;
  name: string;
  team: string;
  /** The model name clients put in OpenAI requests (`model`); unique on the platform. */
  servedModelName: string;
  state: DeploymentState;
  reason: string | null;
  /** The newest revision (the one a change or a rollback made). */
  latestRevision: number;
  /** The revisions that get requests, with weights (one entry, or two during a canary). */
  traffic: TrafficEntry[];
  /** A revision being rolled out: it gets traffic once ready (`canaryWeight` % when it is a canary, else all). */
  pending: { revision: number; canaryWeight: number | null } | null;
  runtime: string;
  modelVersion: string;
  modelName: string;
  modelVersionNumber: number;
  /** How the gateway spreads requests and what it watches (`PUT /deployments/:id/gateway`). */
  gateway: GatewaySettings;
  /** The most tokens (prompt + answer) the model takes, from its config; `max_tokens` beyond it is refused. Null when unknown. */
  maxModelLen: number | null;
  createdBy: string | null;
  createdAt: string;
  updatedAt: string;
}

/** A deployment's gateway settings. */
export interface GatewaySettings {
  /** `round-robin` (default) or `least-outstanding` (the replica with fewest requests in flight). */
  balancing: 'round-robin' | 'least-outstanding';
  /** Objectives over a sliding window; breaking one calls `serving.sloBreached` (once per breach). */
  slo: {
    /** Highest acceptable share of failed requests (0–1), or null. */
    errorRate: number | null;
    /** Highest acceptable p99 latency (ms), or null. */
    p99LatencyMs: number | null;
    /** The window the objectives are measured over (seconds, 10–3600; default 60). */
    windowSeconds: number;
  };
}

/** One time step of a deployment's (or a revision's) traffic as the gateway saw it. */
export interface MetricsPoint {
  /** The step's start (ISO time). */
  at: string;
  requests: number;
  /** Requests per second over the step. */
  qps: number;
  /** Answers with status ≥ 500, upstream failures and cut streams (client errors are not the model's). */
  errors: number;
  /** errors / requests (0 when there were none). */
  errorRate: number;
  /** Latency to the last byte (ms), null when there were no requests. */
  p50Ms: number | null;
  p99Ms: number | null;
  /** Time to first token (first byte of the answer) of streamed requests, median (ms). */
  ttftMs: number | null;
  /** Completion tokens per second over the step. */
  tokensPerSecond: number;
  promptTokens: number;
  completionTokens: number;
}

/** `GET /deployments/:id/metrics?window=300`: the last `windowSeconds` in steps of `stepSeconds` (oldest first). */
export interface DeploymentMetrics {
  deploymentId: string;
  windowSeconds: number;
  stepSeconds: number;
  points: MetricsPoint[];
  /** Per revision that had traffic in the window. */
  revisions: { revision: number; points: MetricsPoint[] }[];
  /** The whole window as one point. */
  totals: MetricsPoint;
  /** The gateway's view of each replica: requests in flight and passive ejection. */
  replicas: { revision: number; replica: number; outstanding: number; ejected: boolean; ejectedUntil: string | null; consecutiveFailures: number }[];
  /** The callers with most requests in the window: an API key, or a platform user. */
  topKeys: { keyId: string | null; name: string; team: string | null; requests: number; totalTokens: number }[];
  /** The objectives and whether one is broken now. */
  slo: GatewaySettings['slo'] & { breached: boolean; breachedSince: string | null; observed: { errorRate: number; p99Ms: number | null; requests: number } };
}

/** A gateway API key (`/keys`). The secret is in the answer to its creation only. */
export interface ApiKey {
  id: string;
  name: string;
  team: string;
  /** The first characters of the secret (`sk-aiplat-AbCd…`), to tell keys apart. */
  prefix: string;
  /** Served model names it may call; empty: every model of its team. */
  models: string[];
  expiresAt: string | null;
  revokedAt: string | null;
  /** `active`, `expired` or `revoked`. */
  status: 'active' | 'expired' | 'revoked';
  /** Requests per minute, tokens (prompt + completion) per minute; null: no limit. */
  requestsPerMinute: number | null;
  tokensPerMinute: number | null;
  lastUsedAt: string | null;
  createdBy: string | null;
  createdAt: string;
}

/** `POST /keys` answers the key once with its secret. */
export interface CreatedApiKey extends ApiKey {
  secret: string;
}

/** `GET /usage?from=&to=&groupBy=team|key|deployment`: metered use, with the GPU-hours it stands for. */
export interface UsageReport {
  from: string;
  to: string;
  groupBy: 'team' | 'key' | 'deployment';
  /** The price of a GPU-hour (plugin setting `gpuHourPrice`) and its currency. */
  gpuHourPrice: number;
  currency: string;
  items: {
    /** The team, key or deployment id (null for calls by platform users without a key, in `key`). */
    id: string | null;
    /** Its name for people. */
    name: string;
    requests: number;
    errors: number;
    promptTokens: number;
    completionTokens: number;
    totalTokens: number;
    /** The deployments' GPU-hours in the period, shared out by each caller's share of their tokens. */
    gpuHours: number;
    cost: number;
  }[];
}

/** `GET /deployments/:id`: with its revisions (newest first) and the replicas of its running revisions. */
export interface DeploymentDetail extends Deployment {
  revisions: Revision[];
  replicas: ReplicaStatus[];
  /** The base URL of the OpenAI-compatible alias, e.g. `http://host:8080/v1`. */
  baseUrl: string;
}

/** A runtime as `GET /runtimes` lists it. */
export interface RuntimeInfo {
  id: string;
  title: { en: string; 'zh-CN': string };
  description: { en: string; 'zh-CN': string };
  protocol: RuntimeProtocol;
  /** `required`: needs at least one GPU; `optional`; `none`: CPU only. */
  gpu: 'required' | 'optional' | 'none';
  /** Executors it can run on (`local`, `docker`). */
  executors: string[];
  optionsSchema: Record<string, unknown>;
  /** Whether its engine is installed here; when not, `reason` says what is missing. */
  engine: { available: boolean; version: string | null; reason: string | null };
}

/** `GET /deployments/:id/api-docs`: how to call it. */
export interface ApiDocs {
  baseUrl: string;
  model: string;
  openapi: Record<string, unknown>;
  snippets: { id: 'curl' | 'python' | 'javascript'; title: string; language: string; code: string }[];
}
