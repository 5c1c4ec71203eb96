/**
 * What the training routes answer (plugins/training/README.md): the contract's shapes
 * (`../../api/types.ts`, free of backend imports) and what only the UI needs.
 */
export type { Checkpoint, RunState, TrainingMethod, TrainingRun } from '../../api/types.ts';
import type { Checkpoint, RunState, TrainingMethod, TrainingRun } from '../../api/types.ts';
export type { CompareCell, CompareRow, RunComparison, RunPage, TrainingTemplate } from '../../api/types.ts';
export type { CheckpointRegistration, RunMetrics, RunResources, TrainingAttempt } from '../../api/types.ts';
import type { TrainingAttempt } from '../../api/types.ts';
export type DatasetFormat = 'auto' | 'instruction' | 'chat' | 'text';

export const RUN_STATES: RunState[] = ['pending', 'running', 'succeeded', 'failed', 'cancelled'];
export const METHODS: TrainingMethod[] = ['full', 'lora', 'qlora'];
export const DATASET_FORMATS: DatasetFormat[] = ['auto', 'instruction', 'chat', 'text'];
export const SCHEDULES = ['cosine', 'linear', 'constant'] as const;
export const PRECISIONS = ['fp32', 'bf16', 'fp16'] as const;
export const LORA_MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;

/** How many runs the compare page takes. */
export const COMPARE_MIN = 2;
export const COMPARE_MAX = 6;

export const isFinished = (state: RunState) => state === 'succeeded' || state === 'failed' || state === 'cancelled';

export type RunDetails = TrainingRun & { checkpoints: Checkpoint[]; attemptList?: TrainingAttempt[] };

export interface Strategy {
  id: string;
  title: { en: string; 'zh-CN': string };
  cpu: boolean;
  optionsSchema: Record<string, unknown> | null;
}

/** `GET /api/v1/workloads/<id>/metrics`. */
export interface MetricSeries {
  name: string;
  points: { step: number | null; value: number; replica: number; at: string | null }[];
}

/** `GET /api/v1/workloads/<id>/logs`. */
export interface LogChunk {
  logId: number;
  replica: number;
  text: string;
}

/** Of the models plugin's answers, what the wizard reads. */
export interface ModelItem {
  id: string;
  name: string;
  team: string;
}
export interface ModelVersionItem {
  id: string;
  number: number;
  stage: string;
  metadata: {
    parameters: number | null;
    hiddenSize: number | null;
    layers: number | null;
    attentionHeads: number | null;
    keyValueHeads: number | null;
    vocabSize: number | null;
    contextLength: number | null;
    architecture: string | null;
    config: unknown;
  } | null;
}

/** Of the datasets plugin's answers, what the wizard reads. */
export interface DatasetItem {
  id: string;
  name: string;
  taskType: string;
  versionCount: number;
}
export interface DatasetVersionItem {
  id: string;
  number: number;
  message: string;
  fileCount: number;
}

/** The same rule as the API's run name. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
