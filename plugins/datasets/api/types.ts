/**
 * The shapes the datasets API answers, and its task types. No imports, so browser code (the plugin's
 * UI) can import them too: `import type { Dataset } from '../../api/types.ts'`.
 */
export const TASK_TYPES = ['instruction', 'chat', 'preference', 'pretraining', 'classification', 'image', 'other'] as const;
export type TaskType = (typeof TASK_TYPES)[number];

/** A dataset, as the API answers it. */
export interface Dataset {
  id: string;
  name: string;
  description: string;
  team: string;
  /** Labels on the dataset. */
  tags: string[];
  taskType: TaskType;
  /** Retention: the newest N untagged versions are kept, older untagged ones are deleted (null: keep all). */
  keepVersions: number | null;
  latestVersion: { id: string; number: number } | null;
  versionCount: number;
  /** The size of the latest version's files (0 without versions). */
  totalSize: number;
  createdBy: string | null;
  createdAt: string;
  updatedAt: string;
}

export type FileKind = 'jsonl' | 'json' | 'csv' | 'parquet' | 'text' | 'image' | 'other';

/** One file of a version. */
export interface VersionFile {
  path: string;
  size: number;
  sha256: string;
  kind: FileKind;
}

/** Where a version comes from: uploads through a commit, or an import of a server folder (`ref`). */
export interface DatasetVersionSource {
  kind: 'upload' | 'import';
  ref: string | null;
}

/** A version, as the API answers it. Immutable once created (only its tags change). */
export interface DatasetVersion {
  id: string;
  datasetId: string;
  /** 1, 2, 3, … per dataset. */
  number: number;
  message: string;
  /** Version tags, unique within a dataset. Tagged versions are never pruned by retention. */
  tags: string[];
  /** The version it was made from. */
  parent: string | null;
  source: DatasetVersionSource;
  fileCount: number;
  totalSize: number;
  /** Bytes of content this version stored that the platform did not hold before. */
  bytesAdded: number;
  /** Against the parent. */
  changes: { added: number; removed: number; changed: number };
  /** Files per kind. */
  formats: Partial<Record<FileKind, number>>;
  createdBy: string | null;
  createdAt: string;
}


/** `GET /versions/:id/preview`: the first rows (or lines) of a file, its columns and row count, or an image's size. */
export type Preview =
  | {
      kind: 'jsonl' | 'csv' | 'parquet'; path: string; columns: { name: string; type: string }[]; rows: Record<string, unknown>[];
      rowCount: number; rowCountExact: boolean; errors: { line: number; message: string }[];
    }
  | { kind: 'text'; path: string; lines: string[]; lineCount: number; rowCountExact: boolean }
  | { kind: 'image'; path: string; format: string; width: number; height: number; contentUrl: string }
  | { kind: 'other'; path: string; size: number; message: string };

/** The tabular previews: JSONL, CSV/TSV and Parquet. */
export type TablePreview = Extract<Preview, { kind: 'jsonl' | 'csv' | 'parquet' }>;

export interface ValidationReport {
  path: string; format: 'instruction' | 'chat'; detected: boolean; // detected: chosen by `auto`
  lines: number; valid: number; invalid: number;
  errors: { line: number; message: string }[]; // at most maxErrors, in line order
  errorsTruncated: boolean;
}
