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

export * from './types.js';
import type { Dataset, DatasetVersion, ValidationReport, VersionFile } from './types.js';

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
  /**
   * Checks the version's JSONL (and JSON) files against an LLM training format, one report per file
   * (or only `path`). A file whose format cannot be told (with `auto`) rejects with
   * `unprocessable`, naming it.
   */
  validate(versionId: string, options: { format: 'auto' | 'instruction' | 'chat'; path?: string }): Promise<ValidationReport[]>;
}

export const datasetsService = createServiceRef<DatasetsService>({ id: 'datasets.service' });

/** The lineage node kind of a dataset version (`{ kind: 'datasets.version', id: versionId }`). */
export const DATASET_VERSION_NODE = 'datasets.version';
