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
