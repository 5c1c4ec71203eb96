/** What the models plugin's routes answer (see plugins/models/api/index.ts and README.md). */

export type ModelStage = 'draft' | 'staging' | 'production' | 'archived';
export const MODEL_STAGES: readonly ModelStage[] = ['draft', 'staging', 'production', 'archived'];

/** Allowed stage changes (the backend's TRANSITIONS; anything else is answered 409). */
export const TRANSITIONS: Record<ModelStage, ModelStage[]> = {
  draft: ['staging', 'archived'],
  staging: ['production', 'archived'],
  production: ['staging', 'archived'],
  archived: ['staging'],
};

/** The tag colour of each stage. */
export const STAGE_TAG: Record<ModelStage, 'info' | 'warning' | 'success' | 'danger' | 'primary'> = {
  draft: 'info',
  staging: 'warning',
  production: 'success',
  archived: 'danger',
};

export type VersionSourceKind = 'upload' | 'training' | 'optimisation' | 'import';
export interface VersionSource {
  kind: VersionSourceKind;
  ref?: string | null;
}

export interface Model {
  id: string;
  name: string;
  description: string;
  team: string;
  createdBy: string | null;
  createdAt: string;
  updatedAt: string;
}

/** A model as `GET /models` lists it: with its version count, newest and production versions. */
export interface ModelListItem extends Model {
  versionCount: number;
  latestVersion: { id: string; number: number; stage: ModelStage } | null;
  productionVersion: { id: string; number: number; stage: ModelStage } | null;
}

export interface VersionFile {
  path: string;
  size: number;
  sha256: string;
  kind: string;
}

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
}

export interface MetricValue {
  value: number;
  recordedBy: string;
  at: string;
}

export interface VersionMetrics {
  evaluation: Record<string, MetricValue>;
  speed: Record<string, MetricValue>;
}

/** A version as `GET /models/:id` and `GET /models/:id/versions` list it. */
export interface VersionSummary {
  id: string;
  modelId: string;
  number: number;
  stage: ModelStage;
  source: VersionSource;
  metadata: VersionMetadata;
  totalSize: number;
  createdBy: string | null;
  createdAt: string;
}

export interface StageChange {
  from: ModelStage | null;
  to: ModelStage;
  by: string | null;
  at: string;
}

/** `GET /versions/:id`. */
export interface VersionDetails extends VersionSummary {
  files: VersionFile[];
  metrics: VersionMetrics;
  model: Model;
  stageHistory: StageChange[];
  lineage: { kind: string; id: string; graph: string } | null;
}

/** `GET /models/:id`. */
export interface ModelDetails extends Model {
  card: string;
  versions: VersionSummary[];
}

/** `GET /compare`. */
export interface ComparedRow {
  group: 'metadata' | 'size' | 'evaluation' | 'speed';
  field: string;
  values: unknown[];
  differs: boolean;
}
export interface Comparison {
  versions: { id: string; model: string; number: number; stage: ModelStage; source: VersionSource }[];
  rows: ComparedRow[];
  differences: number;
}

/** The node kind the backend records versions under in lineage. */
export const LINEAGE_KIND = 'models.version';

/** The same rule as the API's: letters, digits, `.`, `_`, `-`, starting with a letter or digit. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
export const NAME_MAX = 100;
export const DESCRIPTION_MAX = 2000;
