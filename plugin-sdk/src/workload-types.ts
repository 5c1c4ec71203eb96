/**
 * The shapes of workloads as the API and the stream carry them: plain data, no Node types, so the
 * web part of the SDK (and the shell) can use them too. The scheduler's contracts are in workloads.ts.
 */
export type WorkloadKind = 'job' | 'service';

export type WorkloadState = 'pending' | 'scheduled' | 'running' | 'ready' | 'succeeded' | 'failed' | 'cancelled' | 'lost';

export const TERMINAL_WORKLOAD_STATES: readonly WorkloadState[] = ['succeeded', 'failed', 'cancelled', 'lost'];

export interface WorkloadResources {
  /** Whole cards per replica (0 for CPU-only work, or with `gpuMemoryMiB` for a shared slice of one card). */
  gpus?: number;
  /** A slice of one card's memory: the replica shares a card with others (needs `gpus` 0 or 1). */
  gpuMemoryMiB?: number;
  cpu?: number;
  memoryMiB?: number;
}

export interface WorkloadPort {
  name: string;
  /** The port inside a container; the local executor gives each port a free host port (env `PORT_<NAME>`, and `PORT` for the first). */
  containerPort?: number;
}

export interface ReadinessCheck {
  /** An HTTP GET on a named port answering 2xx/3xx, or a TCP connect. */
  httpGet?: { port: string; path: string };
  tcpSocket?: { port: string };
  initialDelaySeconds?: number;
  periodSeconds?: number;
  timeoutSeconds?: number;
  failureThreshold?: number;
}

export interface WorkloadMount {
  source: string;
  target: string;
  readOnly?: boolean;
}

/** What a submitter asks for (ARCHITECTURE §5). */
export interface WorkloadSpec {
  name: string;
  kind: WorkloadKind;
  /** Defaults to the submitter's default team. */
  team?: string;
  /** `local` (the core's) unless a plugin contributes another. */
  executor?: string;
  image?: string;
  /** argv, never run through a shell. */
  command: string[];
  env?: Record<string, string>;
  workingDir?: string;
  mounts?: WorkloadMount[];
  resources?: WorkloadResources;
  replicas?: number;
  /** A priority class name (`low`, `normal`, `high`, or an admin's own). */
  priority?: string;
  /** How often a failed job is tried again. */
  retries?: number;
  timeoutSeconds?: number;
  /** Services: named ports. */
  ports?: WorkloadPort[];
  readiness?: ReadinessCheck;
  /** Services: `always` (default), `on-failure`, `never`. */
  restartPolicy?: 'always' | 'on-failure' | 'never';
  /** Pin to nodes whose labels match. */
  nodeSelector?: Record<string, string>;
  /** Free-form labels for finding it again (`{ "training.run": "42" }`). */
  labels?: Record<string, string>;
}

export interface ReplicaPlacement {
  replica: number;
  nodeId: string;
  devices: { id: string; index: number; memoryMiB: number; whole: boolean }[];
  state: string;
  /** Services: the host port given to each named port. */
  ports?: Record<string, number>;
  exitCode?: number | null;
  /** The image the replica runs, as its executor resolved it (e.g. the engine's `sha256:` id). */
  image?: string;
}

export interface Workload {
  id: string;
  name: string;
  kind: WorkloadKind;
  team: string;
  userId: string | null;
  /** The plugin that submitted it, or `core` for the API. */
  owner: string;
  executor: string;
  state: WorkloadState;
  /** Why it is in its state: why it waits, why it failed. */
  reason: string | null;
  priority: string;
  spec: WorkloadSpec;
  attempt: number;
  epoch: number;
  exitCode: number | null;
  placements: ReplicaPlacement[];
  createdAt: string;
  updatedAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}
