/** What datasets' routes answer (plugins/datasets/README.md). */

export const TASK_TYPES = ['instruction', 'chat', 'preference', 'pretraining', 'classification', 'image', 'other'] as const;
export type TaskType = (typeof TASK_TYPES)[number];

export interface Dataset {
  id: string;
  name: string;
  description: string;
  team: string;
  tags: string[];
  taskType: TaskType;
  keepVersions: number | null;
  latestVersion: { id: string; number: number } | null;
  versionCount: number;
  /** Bytes of the latest version's files. */
  totalSize: number;
  createdBy: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface DatasetVersion {
  id: string;
  datasetId: string;
  number: number;
  message: string;
  tags: string[];
  parent: string | null;
  source: { kind: 'upload' | 'import'; ref: string | null };
  fileCount: number;
  totalSize: number;
  bytesAdded: number;
  changes: { added: number; removed: number; changed: number };
  formats: Record<string, number>;
  createdBy: string | null;
  createdAt: string;
}

export type DatasetWithVersions = Dataset & { versions: DatasetVersion[] };

export type FileKind = 'jsonl' | 'json' | 'csv' | 'parquet' | 'text' | 'image' | 'other';

export interface VersionFile {
  path: string;
  size: number;
  sha256: string;
  kind: FileKind;
}

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

export type Preview =
  | {
      kind: 'jsonl' | 'csv' | 'parquet';
      path: string;
      columns: { name: string; type: string }[];
      rows: Record<string, unknown>[];
      rowCount: number;
      rowCountExact: boolean;
      errors: LineError[];
    }
  | { kind: 'text'; path: string; lines: string[]; lineCount: number; rowCountExact: boolean }
  | { kind: 'image'; path: string; format: string; width: number; height: number; contentUrl: string }
  | { kind: 'other'; path: string; size: number; message: string };

export type ValidationFormat = 'auto' | 'instruction' | 'chat';

export interface ValidationReport {
  path: string;
  format: 'instruction' | 'chat';
  detected: boolean;
  lines: number;
  valid: number;
  invalid: number;
  errors: LineError[];
  errorsTruncated: boolean;
}

/** A core operation (`GET /api/v1/operations/:id`), as far as this UI reads it. */
export interface Operation<R = unknown> {
  id: string;
  title: string;
  state: 'running' | 'succeeded' | 'failed' | 'cancelled';
  progress: number;
  message: string | null;
  result: R;
  error: { code: string; message: string } | null;
  updatedAt: string;
}

/** What an import's operation results in. */
export interface ImportResult {
  versionId: string;
  number: number;
}

/** The files a validation report makes sense for. */
export const VALIDATABLE: FileKind[] = ['jsonl', 'json'];
