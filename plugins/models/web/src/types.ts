/** What the models plugin's routes answer: the contract's types (plugins/models/api/types.ts), and what only the UI needs. */
export { MODEL_STAGES, TRANSITIONS } from '../../api/types.ts';
export type { ComparedRow, Comparison, Model, ModelListItem, ModelStage, VersionFile, VersionMetadata, VersionMetrics, VersionSource, VersionSourceKind } from '../../api/types.ts';
import type { Model, ModelStage, ModelVersion, VersionFile, VersionMetrics } from '../../api/types.ts';

/** One metric's latest value. */
export type MetricValue = VersionMetrics['evaluation'][string];

/** The tag colour of each stage. */
export const STAGE_TAG: Record<ModelStage, 'info' | 'warning' | 'success' | 'danger' | 'primary'> = {
  draft: 'info',
  staging: 'warning',
  production: 'success',
  archived: 'danger',
};

/** A version as `GET /models/:id` and `GET /models/:id/versions` list it: without its files and metrics. */
export type VersionSummary = Omit<ModelVersion, 'files' | 'metrics'>;

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

/** The node kind the backend records versions under in lineage. */
export const LINEAGE_KIND = 'models.version';

/** The same rule as the API's: letters, digits, `.`, `_`, `-`, starting with a letter or digit. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
export const NAME_MAX = 100;
export const DESCRIPTION_MAX = 2000;
