/**
 * The shapes the models API answers, its stages and their allowed changes. No imports, so browser
 * code (the plugin's UI) can import them too: `import type { Model } from '../../api/types.ts'`.
 */
/** The stages of a version. */
export type ModelStage = 'draft' | 'staging' | 'production' | 'archived';
export const MODEL_STAGES: readonly ModelStage[] = ['draft', 'staging', 'production', 'archived'];

/** Where a version comes from. */
export type VersionSourceKind = 'upload' | 'training' | 'optimisation' | 'import';
export interface VersionSource {
  kind: VersionSourceKind;
  /**
   * What it comes from: for `training` the training run's id, for `optimisation` the id of the
   * model version it was optimised from, for `import` the server folder, for `upload` nothing.
   */
  ref?: string | null;
}

/** A model, as the API answers it. */
export interface Model {
  id: string;
  name: string;
  description: string;
  team: string;
  createdBy: string | null;
  createdAt: string;
  updatedAt: string;
}

/** One file of a version. */
export interface VersionFile {
  path: string;
  size: number;
  sha256: string;
  /** `safetensors`, `gguf`, `pytorch`, `onnx`, `tokenizer`, `config`, `other`, … */
  kind: string;
}

/** The metadata read from a version's files (a summary of `inspectModelFolder`'s answer). */
export interface VersionMetadata {
  format: string;
  formats: string[];
  architecture: string | null;
  modelType: string | null;
  parameters: number | null;
  parametersSource: string | null;
  dtype: string | null;
  dtypes: Record<string, { tensors: number; parameters: number; bytes: number }>;
  torchDtype: string | null;
  quantisation: { method: string; bits: number | null; name: string | null; source: string } | null;
  contextLength: number | null;
  hiddenSize: number | null;
  layers: number | null;
  attentionHeads: number | null;
  keyValueHeads: number | null;
  vocabSize: number | null;
  sizes: { totalBytes: number; weightBytes: number; byKind: Record<string, number> };
  tokenizer: unknown;
  generationConfig: unknown;
  config: unknown;
  warnings: string[];
  /**
   * Only for a PEFT adapter (a folder with `adapter_config.json`, e.g. a LoRA checkpoint): the
   * weights are the adapter's, to be applied over a base model; `config` is the base's.
   */
  adapter?: { peftType: string | null; baseModel: string | null; r: number | null; alpha: number | null; targetModules: string[]; taskType: string | null };
}

/** The latest value of each metric of a version. */
export interface VersionMetrics {
  evaluation: Record<string, { value: number; recordedBy: string; at: string }>;
  speed: Record<string, { value: number; recordedBy: string; at: string }>;
}

/** A version, as the API answers it. */
export interface ModelVersion {
  id: string;
  modelId: string;
  /** 1, 2, 3, … per model. */
  number: number;
  stage: ModelStage;
  source: VersionSource;
  metadata: VersionMetadata;
  totalSize: number;
  createdBy: string | null;
  createdAt: string;
  files: VersionFile[];
  metrics: VersionMetrics;
}

/** Allowed stage changes. Promoting to production moves the model's current production version to archived. */
export const TRANSITIONS: Record<ModelStage, ModelStage[]> = {
  draft: ['staging', 'archived'],
  staging: ['production', 'archived'],
  production: ['staging', 'archived'],
  archived: ['staging'],
};

/** A model as `GET /models` lists it: with its version count, newest and production versions. */
export interface ModelListItem extends Model {
  versionCount: number;
  latestVersion: { id: string; number: number; stage: ModelStage } | null;
  productionVersion: { id: string; number: number; stage: ModelStage } | null;
}

/** One compared field (`GET /compare`): its value in each version (in the order asked), and whether they differ. */
export interface ComparedRow {
  group: 'metadata' | 'size' | 'evaluation' | 'speed';
  field: string;
  values: unknown[];
  differs: boolean;
}

/** `GET /compare`: versions side by side. */
export interface Comparison {
  versions: { id: string; model: string; number: number; stage: ModelStage; source: VersionSource }[];
  rows: ComparedRow[];
  /** How many rows differ. */
  differences: number;
}
