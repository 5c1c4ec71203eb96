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
