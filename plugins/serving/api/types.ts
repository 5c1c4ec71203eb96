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
  createdBy: string | null;
  createdAt: string;
  updatedAt: string;
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
