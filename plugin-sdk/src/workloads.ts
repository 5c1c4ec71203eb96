/**
 * Workloads, the GPU ledger and the extension points of the scheduler (ARCHITECTURE §5, §7).
 * The core owns the scheduler: plugins submit through `coreServices.workloads`, amend specs with
 * the `workloads.beforeSubmit` hook, hear of state changes through `workloads.stateChanged`, and
 * contribute executors (`scheduler.executors`) and device providers (`scheduler.deviceProviders`).
 */
import { defineExtensionPoint, defineSeriesHook, defineWaterfallHook } from './hooks.js';
import type { JsonSchema } from './manifest.js';
import type { Principal, RouteContext } from './routes.js';

export type {
  WorkloadKind,
  WorkloadState,
  WorkloadResources,
  WorkloadPort,
  ReadinessCheck,
  WorkloadMount,
  WorkloadSpec,
  ReplicaPlacement,
  Workload,
} from './workload-types.js';
export { TERMINAL_WORKLOAD_STATES } from './workload-types.js';
import type { Workload, WorkloadSpec, WorkloadState } from './workload-types.js';

export interface WorkloadStateChange {
  workload: Workload;
  from: WorkloadState | null;
  to: WorkloadState;
  reason: string | null;
}

/** What plugins call: `ctx.plugin.service(coreServices.workloads)`. */
export interface WorkloadsService {
  /**
   * Submit on behalf of a user (their team, quotas and permissions apply). From a route handler
   * pass `within: ctx`: the workload is stored in the request's transaction (it exists only if the
   * request's change commits) and announced after the commit. Without it, the submission has a
   * transaction of its own — which, inside a mutating route on the embedded database, waits for
   * the connection the request holds.
   */
  submit(spec: WorkloadSpec, options: { user: Principal; within?: RouteContext<any, any, any> }): Promise<Workload>;
  get(id: string): Promise<Workload | undefined>;
  /**
   * GPU-hours each of these workloads (the caller's own; others are left out) held between `from`
   * and `to`: a whole card counts 1 per hour, a memory slice its share of the card. Open
   * reservations count up to now.
   */
  gpuHours(ids: string[], period: { from: Date; to: Date }): Promise<Record<string, number>>;
  /** Cancel (as `submit`: pass `within: ctx` from a route handler). */
  cancel(id: string, options?: { reason?: string; within?: RouteContext<any, any, any> }): Promise<Workload>;
}

/** One GPU as a device provider sees it. */
export interface DiscoveredDevice {
  index: number;
  uuid: string;
  model: string;
  memoryMiB: number;
  /** Free-form facts shown to people: driver, CUDA version, MIG mode, temperature... */
  details?: Record<string, unknown>;
}

export interface DiscoveredNode {
  /** Stable id (e.g. the host name). */
  id: string;
  name: string;
  /** Where replicas on it reach each other (MASTER_ADDR). */
  address: string;
  labels?: Record<string, string>;
  /** True for nodes made up for tests and development: shown as simulated in the API and UI. */
  simulated?: boolean;
  /** The executors that can run work on it. */
  executors: string[];
  devices: DiscoveredDevice[];
  cpu?: number;
  memoryMiB?: number;
}

/** A process on a card, as the vendor tool reports it. */
export interface DeviceProcess {
  pid: number;
  name: string | null;
  usedMemoryMiB: number | null;
}

/** One card's live state at one moment. Vendor-neutral: fields a tool cannot tell are null. */
export interface DeviceSample {
  /** The device's `index` as discovered. */
  index: number;
  utilizationPercent: number | null;
  memoryUsedMiB: number | null;
  memoryTotalMiB: number;
  temperatureC: number | null;
  powerW: number | null;
  processes: DeviceProcess[];
}

export interface NodeSample {
  nodeId: string;
  devices: DeviceSample[];
}

/**
 * Contributed to `scheduler.deviceProviders`: tells the ledger which nodes and cards exist and,
 * with `sample`, how they are doing. NVIDIA's (`nvidia-smi`) is the core's; other vendors (Ascend
 * `npu-smi`, ROCm `amd-smi`, Apple) are providers of the same shape.
 */
export interface DeviceProvider {
  name: string;
  discover(): Promise<DiscoveredNode[]>;
  /** Live state of every card of the provider's nodes (sampled every AIPLAT_GPU_SAMPLE_SECONDS). */
  sample?(): Promise<NodeSample[]>;
}

/** What `devices.sampled` taps receive after every sampling round. */
export interface DevicesSampledEvent {
  /** RFC 3339 time of the round. */
  at: string;
  samples: (DeviceSample & { deviceId: string; nodeId: string; model: string; simulated: boolean })[];
}

export const deviceHooks = {
  /** Every sampling round of every card (alerts tap it). */
  sampled: defineSeriesHook<[DevicesSampledEvent]>('devices.sampled'),
} as const;

/**
 * A host an administrator added with `POST /api/v1/nodes` (a remote Docker engine, ...), as its
 * connector gets it back: the settings it accepted and the secret ones decrypted.
 */
export interface NodeConnection {
  /** The node's id in the ledger. */
  nodeId: string;
  /** The connector's settings (`settingsSchema`), e.g. `{ url: "tcp://10.0.0.5:2376" }`. */
  settings: Record<string, unknown>;
  /** Secret settings (`secretFields`: TLS key, ...), decrypted; stored encrypted with AIPLAT_SECRET_KEY. */
  secrets: Record<string, string>;
}

/** What a connector reports about the host it reached. */
export interface ConnectedNode {
  name: string;
  /** Where replicas on it reach each other (MASTER_ADDR). */
  address: string;
  labels?: Record<string, string>;
  /** The executors that run work on it (e.g. `["docker"]`). */
  executors: string[];
  /** Its cards, discovered through the host itself (e.g. `nvidia-smi` in a probe container). */
  devices: DiscoveredDevice[];
  cpu?: number;
  memoryMiB?: number;
}

/**
 * Contributed to `scheduler.nodeConnectors`: reaches hosts of one `kind` that administrators add
 * with `POST /api/v1/nodes` (`{ kind, name, settings, secrets }`). The core stores the node, calls
 * `connect` when it is added (an error refuses the request: "the host does not answer") and again
 * at every discovery round (an error makes the node `not-ready`, with the message as its reason),
 * and `disconnect` when it is removed. The executor that runs work on such nodes is the
 * connector's own business (the docker plugin keeps one engine client per node).
 */
export interface NodeConnector {
  kind: string;
  /** JSON schema of `settings`. */
  settingsSchema: JsonSchema;
  /** Names of the secret settings the connector accepts (each a string). */
  secretFields: string[];
  connect(connection: NodeConnection): Promise<ConnectedNode>;
  /** Live state of the node's cards (sampled every AIPLAT_GPU_SAMPLE_SECONDS). */
  sample?(connection: NodeConnection): Promise<DeviceSample[]>;
  /** The node was removed (or the core stops): close clients. */
  disconnect?(nodeId: string): void | Promise<void>;
}

/** What the scheduler hands an executor for one replica. */
export interface ReplicaLaunch {
  workloadId: string;
  replica: number;
  /** The fencing epoch: the executor refuses to start a replica whose epoch it already ran or runs. */
  epoch: number;
  nodeId: string;
  spec: WorkloadSpec;
  /** The spec's env plus CUDA_VISIBLE_DEVICES, WORLD_SIZE, RANK, MASTER_ADDR, MASTER_PORT, PORT_<NAME>. */
  env: Record<string, string>;
  /** Host ports given to the spec's named ports. */
  ports: Record<string, number>;
  devices: { index: number; uuid: string }[];
  /** The node is simulated (a fake nvidia-smi): its `devices` do not exist, so ask the engine for no GPUs. */
  simulated: boolean;
  /** The node's labels. */
  nodeLabels: Record<string, string>;
  /**
   * Set when the replica is delivered again after a core restart (the same epoch): where its
   * stored output ends. An executor that finds the replica already started follows it from there
   * instead of starting it a second time.
   */
  outputOffset?: number;
}

/** What an executor tells the scheduler about a replica it runs. */
export interface ReplicaReporter {
  /** `image`: the image the replica really runs (e.g. the engine's `sha256:` id), recorded on the workload. */
  started(info: { pid?: number; image?: string }): void;
  /** Complete lines of output; `endOffset` is the byte offset in the replica's output just after them (kept to re-attach). */
  output(text: string, endOffset: number): void;
  exited(info: { exitCode: number | null; signal?: string | null }): void;
  lost(reason: string): void;
}

/** Contributed to `scheduler.executors`. `handle` is JSON the scheduler stores, to re-attach after a restart. */
export interface Executor {
  name: string;
  /**
   * Problems with a spec this executor would have (no image, a mount it cannot make, an image the
   * engine does not have), each a sentence a person can act on: the submission is refused with them
   * (422). Called at submission, before anything is stored.
   */
  validate?(spec: WorkloadSpec): string[] | Promise<string[]>;
  /** Runs on this core's machine (the local node and simulated nodes take it); false for remote engines and clusters. */
  local?: boolean;
  start(launch: ReplicaLaunch, reporter: ReplicaReporter): Promise<{ handle: Record<string, unknown> }>;
  /** After a core restart: follow a replica started earlier (its output from `outputOffset` on). */
  attach(handle: Record<string, unknown>, reporter: ReplicaReporter, options: { outputOffset: number }): Promise<void>;
  /** SIGTERM (or its equivalent), `graceSeconds`, then kill. Resolves once the stop is under way. */
  stop(handle: Record<string, unknown>, options: { graceSeconds: number }): Promise<void>;
  /** Remove what the replica left (run folder, container). */
  cleanup?(handle: Record<string, unknown>): Promise<void>;
  /**
   * Host process ids of a running replica (a container's processes as the host sees them): the GPU
   * sampler does not count their memory as held by processes outside aiplat.
   */
  processIds?(handle: Record<string, unknown>): Promise<number[]>;
}

export const schedulerExtensionPoints = {
  executors: defineExtensionPoint<Executor>('scheduler.executors'),
  deviceProviders: defineExtensionPoint<DeviceProvider>('scheduler.deviceProviders'),
  nodeConnectors: defineExtensionPoint<NodeConnector>('scheduler.nodeConnectors'),
} as const;

export const workloadHooks = {
  /** Amend a spec before it is validated and stored (add env, labels, mounts...). */
  beforeSubmit: defineWaterfallHook<WorkloadSpec, [{ user: Principal; owner: string }]>('workloads.beforeSubmit'),
  /** Every state transition, after it is committed. */
  stateChanged: defineSeriesHook<[WorkloadStateChange]>('workloads.stateChanged'),
} as const;
