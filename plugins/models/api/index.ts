/**
 * The contract of the models plugin: what other plugins import (`@aiplat-plugins/models/api`)
 * instead of the plugin itself.
 *
 * - Hooks: `models.versionRegistered` (after a version commits) and `models.stageChanged` (after a
 *   stage change commits). Both are series hooks; a tap that throws is logged and ignored.
 * - Service `models.service` ({@link modelsService}): register a version from files on the server,
 *   record evaluation or speed metrics, read a version. Depend on `models` in your manifest
 *   (`dependencies` or `optionalDependencies`) to use it.
 *
 * ```ts
 * import { modelsService } from '@aiplat-plugins/models/api';
 * await ctx.plugin.service(modelsService).recordMetrics(versionId, { evaluation: { mmlu: 0.61 }, recordedBy: 'evaluation' });
 * ```
 */
import { createServiceRef, defineSeriesHook, type Knex } from '@aiplat/plugin-sdk';

export * from './types.js';
import type { Model, ModelStage, ModelVersion, VersionFile, VersionMetrics, VersionSource } from './types.js';

/** `models.versionRegistered`: called after a version has committed. */
export interface VersionRegisteredEvent {
  model: Model;
  version: ModelVersion;
}
/** `models.stageChanged`: called after a stage change has committed (also for the version moved out of production). */
export interface StageChangedEvent {
  model: Model;
  version: ModelVersion;
  from: ModelStage;
  to: ModelStage;
  /** The user id who asked, or `models` when the change followed another version's promotion. */
  by: string;
}

export const modelsHooks = {
  versionRegistered: defineSeriesHook<[VersionRegisteredEvent]>('models.versionRegistered'),
  stageChanged: defineSeriesHook<[StageChangedEvent]>('models.stageChanged'),
};

/** What {@link ModelsService.registerVersion} takes. */
export interface RegisterVersionInput {
  /** The model's id. */
  model: string;
  /**
   * The files: a model folder on this server (inspected like an import: `config.json` needed, or a
   * `.gguf` file), or a list of files on this server with the paths they get in the version. Another
   * plugin's storage keys cannot be read by models (storage namespaces are private): `materialise`
   * them and pass the paths.
   */
  files: { folder: string } | { files: { path: string; file: string }[] };
  source: VersionSource;
  /** Who registers it (a user id or a plugin id), stored as `createdBy`. */
  createdBy?: string;
}

export interface RecordMetricsInput {
  evaluation?: Record<string, number>;
  speed?: Record<string, number>;
  /** The plugin (or user) that measured them. */
  recordedBy: string;
}

export interface ModelsService {
  /** Copy the files into storage and register the version (stage `draft`); resolves once it has committed and `versionRegistered` has run. */
  registerVersion(input: RegisterVersionInput): Promise<ModelVersion>;
  /** Record metrics of a version (a metric recorded again replaces the earlier value). `db`: the caller's transaction, to commit with it. */
  recordMetrics(versionId: string, metrics: RecordMetricsInput, options?: { db?: Knex }): Promise<VersionMetrics>;
  /** A model (without its card), or `undefined`. */
  model(modelId: string, options?: { db?: Knex }): Promise<Model | undefined>;
  /** A version with its files and metrics, or `undefined`. */
  get(versionId: string, options?: { db?: Knex }): Promise<ModelVersion | undefined>;
  /**
   * Writes the version's files into `folder` (created if needed) at their paths and answers them:
   * a Hugging Face-format folder a training or optimisation job can load. The folder is the
   * caller's to delete. `not_found` when there is no such version.
   */
  materialise(versionId: string, folder: string, options?: { signal?: AbortSignal }): Promise<VersionFile[]>;
}

export const modelsService = createServiceRef<ModelsService>({ id: 'models.service' });
