/** What datasets' routes answer (plugins/datasets/README.md). */

// The shapes the backend's contract package defines.
export { TASK_TYPES } from '../../api/types.ts';
export type { Dataset, DatasetVersion, FileKind, Preview, TaskType, ValidationReport, VersionFile } from '../../api/types.ts';
import type { Dataset, DatasetVersion, FileKind, VersionFile } from '../../api/types.ts';

export type DatasetWithVersions = Dataset & { versions: DatasetVersion[] };

export interface CommitChange {
  path: string;
  op: 'put' | 'delete';
  size: number | null;
  sha256: string | null;
}

export interface Commit {
  id: string;
  datasetId: string;
  base: string | null;
  message: string;
  changes: CommitChange[];
  createdBy: string | null;
  createdAt: string;
  expiresAt: string;
}

export interface Diff {
  from: DatasetVersion | null;
  to: DatasetVersion;
  added: VersionFile[];
  removed: VersionFile[];
  changed: { path: string; before: VersionFile; after: VersionFile }[];
  unchanged: number;
}

export interface LineError {
  line: number;
  message: string;
}

export type ValidationFormat = 'auto' | 'instruction' | 'chat';

/** An operation (an import) as the core's operations API answers it. */
export type { Operation } from '@aiplat/plugin-sdk/web';

/** What an import's operation results in. */
export interface ImportResult {
  versionId: string;
  number: number;
}

/** The files a validation report makes sense for. */
export const VALIDATABLE: FileKind[] = ['jsonl', 'json'];
