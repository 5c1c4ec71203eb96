/**
 * The shapes the training API answers. No imports, so browser code (the plugin's UI) can import
 * them too: `import type { TrainingRun } from '../../api/types.ts'`.
 */
export type RunState = 'pending' | 'running' | 'succeeded' | 'failed' | 'cancelled';
export type TrainingMethod = 'full' | 'lora' | 'qlora';

/** A training run, as the API answers it. */
export interface TrainingRun {
  id: string;
  name: string;
  team: string;
  state: RunState;
  /** Why it failed or what it waits for, from the scheduler. */
  reason: string | null;
  method: TrainingMethod;
  strategy: string;
  /** The base model version, or null for a from-scratch architecture. */
  baseModelVersion: string | null;
  datasetVersion: string;
  /** The model the result is registered into, and the version it became. */
  outputModel: string;
  resultModelVersion: string | null;
  /** LoRA / QLoRA over a registered base: the adapter (`out/adapter`), registered as a version of the output model too. */
  resultAdapterVersion: string | null;
  /** The current attempt's workload (its logs and metrics are the scheduler's). */
  workloadId: string | null;
  attempts: number;
  /** The request as given (hyper-parameters, resources, strategy options). */
  spec: Record<string, unknown>;
  createdBy: string | null;
  createdAt: string;
  finishedAt: string | null;
}

export interface Checkpoint {
  step: number;
  /** The checkpoint's folder on the node that ran the run. */
  path: string;
  savedAt: string;
}

export interface MetricPoint {
  name: string;
  step: number;
  value: number;
}

// ---- history, compare, templates ----

/** `GET /runs`: a page of runs and how many match the filters. */
export interface RunPage {
  items: TrainingRun[];
  total: number;
}

/** A request field's value in a comparison (lists joined with ", "; null: not given). */
export type CompareCell = string | number | boolean | null;

/** A row of `GET /runs/compare`: a request field (`hyper.learningRate`), its value per run (the runs' order), whether they differ. */
export interface CompareRow {
  key: string;
  values: CompareCell[];
  differs: boolean;
}

/** `GET /runs/compare?ids=a,b`. */
export interface RunComparison {
  runs: TrainingRun[];
  rows: CompareRow[];
}

/** Saved wizard choices: a run request without its name and output model. */
export interface TrainingTemplate {
  id: string;
  name: string;
  team: string;
  description: string;
  body: Record<string, unknown>;
  createdBy: string | null;
  createdAt: string;
}

// ---- checkpoints, attempts, metrics ----

/** One attempt of a run: its start, and each resume or retry, each with its own workload. */
export interface TrainingAttempt {
  /** 1, 2, … (the run's `attempts` is the latest). */
  attempt: number;
  workloadId: string;
  /** The checkpoint step it went on from; null: from the start. */
  fromStep: number | null;
  state: RunState;
  startedAt: string;
  endedAt: string | null;
}

/** `GET /runs/:id/metrics`: every attempt's points (rank 0) in one series per metric, step order. */
export interface RunMetrics {
  series: { name: string; points: { step: number; value: number; attempt: number }[] }[];
  attempts: TrainingAttempt[];
  /** The current attempt's live metric topic (`workloads/<id>/metrics`), or null. */
  topic: string | null;
}

/** `GET /runs/:id/resources`: where the current attempt runs, and its cards' use when the scheduler samples them. */
export interface RunResources {
  workloadId: string | null;
  /** GPUs asked for per replica (0: CPU only). */
  gpusPerReplica: number;
  cpuOnly: boolean;
  replicas: {
    replica: number;
    nodeId: string | null;
    nodeName: string | null;
    state: string;
    restarts: number;
    exitCode: number | null;
    devices: { id: string; index: number; model: string | null; memoryMiB: number; whole: boolean }[];
  }[];
  /** Per card of the replicas: samples over the attempt (at most the latest 500). */
  gpus: { deviceId: string; nodeId: string; index: number; model: string | null; memoryMiB: number | null; points: { at: string; utilizationPercent: number | null; memoryUsedMiB: number | null }[] }[];
}

/** `POST /runs/:id/checkpoints/:step/register`. */
export interface CheckpointRegistration {
  step: number;
  /** The checkpoint holds a LoRA adapter only (over `baseModelVersion`). */
  adapter: boolean;
  baseModelVersion: string | null;
  description: string | null;
  /** The new model version (the models plugin's answer). */
  version: { id: string; modelId: string; number: number; [key: string]: unknown };
}
