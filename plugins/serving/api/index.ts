/**
 * The contract of the serving plugin: what other plugins import (`@aiplat-plugins/serving/api`).
 *
 * - Extension point `serving.runtimes`: an inference engine that serves a model version as a
 *   scheduler `service` workload. First-party runtimes are plugins too: `serving-cpu`
 *   (transformers serve, OpenAI-compatible, runs anywhere), `serving-vllm`, `serving-triton`
 *   (KServe v2), `serving-tgi`.
 * - Hooks (series; a tap that throws is logged, not passed on): `serving.deploymentReady` (a
 *   deployment's traffic is all on ready revisions), `serving.deploymentFailed` (a revision failed:
 *   the deployment could not start, or a change could not roll out), `serving.revisionChanged`
 *   (cause `created`: a revision was made, by a deploy, a change or a rollback; then, when the
 *   traffic moves: `rollout` (a new revision took all of it), `canary` (it took its canary share),
 *   `rollback` (a rollback's revision took all of it), `traffic` (someone set the split)).
 */
import { defineExtensionPoint, defineSeriesHook, type ReadinessCheck, type WorkloadMount } from '@aiplat/plugin-sdk';

export * from './types.js';
import type { Deployment, Revision, RuntimeProtocol, ServingResources, TrafficEntry } from './types.js';

export const servingHooks = {
  deploymentReady: defineSeriesHook<[{ deployment: Deployment; revision: Revision }]>('serving.deploymentReady'),
  deploymentFailed: defineSeriesHook<[{ deployment: Deployment; revision: Revision; reason: string }]>('serving.deploymentFailed'),
  revisionChanged: defineSeriesHook<[{ deployment: Deployment; revision: Revision; traffic: TrafficEntry[]; cause: 'created' | 'rollout' | 'canary' | 'traffic' | 'rollback' }]>(
    'serving.revisionChanged',
  ),
  /**
   * An objective set on a deployment (`gateway.slo`) is broken over its window: called once when the
   * breach starts (again only after it has recovered). `objective` names which; `limit` what was set.
   */
  sloBreached: defineSeriesHook<[{ deployment: Deployment; objective: 'errorRate' | 'p99LatencyMs'; limit: number; observed: number; windowSeconds: number; requests: number }]>('serving.sloBreached'),
};

/** What a runtime is told when it checks or launches a revision. */
export interface RuntimeContext {
  deployment: { id: string; name: string; team: string };
  revision: number;
  /** The name clients use (`model` in OpenAI requests); runtimes that name the model serve it under this name. */
  servedModelName: string;
  model: {
    versionId: string;
    name: string;
    number: number;
    /**
     * The version's files in a Hugging Face-format folder on the machine that runs the replica
     * (materialised by the serving plugin). For a container executor it is mounted at `/model`:
     * use `modelPathIn(executor)`.
     */
    path: string;
    /** The version's metadata (architecture, parameters, dtype, context length, quantisation…). */
    metadata: Record<string, unknown>;
  };
  /** The revision's folder (absolute): files a runtime writes (`files` of its launch) go here. */
  revisionDir: string;
  /** `local` or a plugin's executor (`docker`). */
  executor: string;
  resources: ServingResources;
  replicas: number;
  /** The revision's runtime options, already validated against the runtime's `optionsSchema` (defaults filled in). */
  options: Record<string, unknown>;
  /** The most GPUs one node of the platform has (for checks such as tensor-parallel size). */
  maxGpusPerNode: number;
}

/** How a runtime starts one replica. */
export interface RuntimeLaunch {
  /** argv (never run through a shell). The replica's HTTP port is in `$PORT` (local executor) or `containerPort` (container). */
  command: string[];
  env?: Record<string, string>;
  /** A container image, for container executors. */
  image?: string;
  mounts?: WorkloadMount[];
  workingDir?: string;
  /** The port inside a container (container executors; the local executor picks a free host port). */
  containerPort?: number;
  /** The readiness check on the `http` port. */
  readiness: Omit<ReadinessCheck, 'tcpSocket' | 'httpGet'> & { path: string };
  /** Files written into the revision folder before the replicas start (name → content), e.g. a Triton model repository's `config.pbtxt`. */
  files?: Record<string, string>;
  /**
   * The name the engine knows the model by, when it is not `servedModelName` (an engine that
   * names a model by its folder): the `/v1` alias puts it into requests' `model` and puts
   * `servedModelName` back into answers.
   */
  upstreamModel?: string;
}

/**
 * How OpenAI requests reach a runtime that does not speak OpenAI itself (Triton's KServe v2):
 * the `/v1` alias turns a request into the runtime's, and its answer back.
 */
export interface OpenAiAdapter {
  /** The OpenAI paths it can answer (`/chat/completions`, `/completions`). */
  paths: string[];
  /** The upstream request for an OpenAI request body (path on the replica's port, JSON body). */
  request(path: string, body: Record<string, unknown>, context: { servedModelName: string }): { path: string; body: unknown };
  /** The OpenAI answer for the upstream's JSON answer. */
  response(path: string, upstream: unknown, context: { servedModelName: string; request: Record<string, unknown> }): Record<string, unknown>;
}

export interface EngineStatus {
  available: boolean;
  version: string | null;
  /** Why not, for people: `vllm is not installed in /path/venv (run plugins/serving-vllm/setup.sh)`. */
  reason: string | null;
}

/** An inference runtime, contributed to `serving.runtimes`. */
export interface ServingRuntime {
  /** `cpu`, `vllm`, `triton`, `tgi`… */
  id: string;
  title: { en: string; 'zh-CN': string };
  description: { en: string; 'zh-CN': string };
  protocol: RuntimeProtocol;
  gpu: 'required' | 'optional' | 'none';
  /** Executors it can run on; default `['local']`. */
  executors?: string[];
  /** JSON Schema of its options (the wizard renders it; the serving plugin validates with defaults). */
  optionsSchema: Record<string, unknown>;
  /** Whether its engine can run here (cached by the caller for a few seconds). */
  engine(executor: string): Promise<EngineStatus>;
  /** A reason to refuse the revision before anything starts (shown to the user), or undefined. */
  check?(context: RuntimeContext): string | undefined;
  launch(context: RuntimeContext): RuntimeLaunch | Promise<RuntimeLaunch>;
  /** The Prometheus metrics path on the http port (`/metrics`), if it has one. */
  metricsPath?: string;
  /** For a runtime whose protocol is not `openai`: how the `/v1` alias talks to it. */
  openai?: OpenAiAdapter;
  /** GPU memory one replica needs (MiB), for the wizard's estimate; default: weights + 20%. */
  estimateGpuMemoryMiB?(context: Pick<RuntimeContext, 'model' | 'options' | 'resources'>): number;
}

export const servingExtensionPoints = {
  runtimes: defineExtensionPoint<ServingRuntime>('serving.runtimes'),
};

/** The lineage node kind of a deployment revision (`<deployment id>@<revision number>`). */
export const REVISION_NODE = 'serving.revision';

/** Where a revision's model folder is inside a container replica. */
export const CONTAINER_MODEL_PATH = '/model';

/** The model path a runtime puts on its command line: the folder itself locally, `/model` in a container. */
export function modelPathIn(context: Pick<RuntimeContext, 'executor' | 'model'>): string {
  return context.executor === 'local' ? context.model.path : CONTAINER_MODEL_PATH;
}
