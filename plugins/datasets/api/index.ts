/**
 * The contract of the datasets plugin: what other plugins import (`@aiplat-plugins/datasets/api`)
 * instead of the plugin itself.
 *
 * - Hook `datasets.versionCreated` (series): after a version has committed. A tap that throws is
 *   logged and ignored.
 * - Service `datasets.service` ({@link datasetsService}): read a version and its files, and write a
 *   version's files into a folder (a training job's input). Depend on `datasets` in your manifest
 *   (`dependencies` or `optionalDependencies`) to use it.
 *
 * ```ts
 * import { datasetsService } from '@aiplat-plugins/datasets/api';
 * const version = await ctx.plugin.service(datasetsService).get(versionId);
 * await ctx.plugin.service(datasetsService).materialise(versionId, '/scratch/job-17/data');
 * ```
 */
import { createServiceRef, defineSeriesHook, type Knex } from '@aiplat/plugin-sdk';

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

/** `datasets.versionCreated`: called after a version has committed. */
export interface VersionCreatedEvent {
  dataset: Dataset;
  version: DatasetVersion;
}

export const datasetsHooks = {
  versionCreated: defineSeriesHook<[VersionCreatedEvent]>('datasets.versionCreated'),
};

export interface DatasetsService {
  /** A version, or undefined. */
  get(versionId: string, options?: { db?: Knex }): Promise<(DatasetVersion & { dataset: Dataset }) | undefined>;
  /** A version's files in path order; `not_found` when there is no such version. */
  files(versionId: string, options?: { db?: Knex }): Promise<VersionFile[]>;
  /**
   * Writes the version's files into `folder` (created if needed) at their paths; answers the files
   * written. For a job's input: the folder is the caller's to delete.
   */
  materialise(versionId: string, folder: string, options?: { signal?: AbortSignal }): Promise<VersionFile[]>;
}

export const datasetsService = createServiceRef<DatasetsService>({ id: 'datasets.service' });

/** The lineage node kind of a dataset version (`{ kind: 'datasets.version', id: versionId }`). */
export const DATASET_VERSION_NODE = 'datasets.version';
