/**
 * The models plugin's data: tables, row mapping, content-addressed blobs and version registration.
 * Route handlers pass `ctx.db`; background work (imports, the service) passes the global handle.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { AiplatError, checkRelativePath, coreServices, type BlobStore, type Knex, type PluginContext } from '@aiplat/plugin-sdk';
import type {
  Model,
  ModelStage,
  ModelVersion,
  RecordMetricsInput,
  VersionFile,
  VersionMetadata,
  VersionMetrics,
  VersionSource,
} from '../api/index.js';
import { classifyModelFile, inspectModelFolder, ModelMetadataError, type ModelFolderInfo } from './metadata/index.js';
import { lineageOf } from '@aiplat-plugins/lineage/api';

export const T = {
  models: 'p_models_models',
  versions: 'p_models_versions',
  files: 'p_models_version_files',
  metrics: 'p_models_metrics',
  history: 'p_models_stage_history',
} as const;

/** The lineage service when the lineage plugin is enabled (lineage is an optional dependency). */
export { lineageOf };

export interface ModelRow {
  id: string;
  name: string;
  description: string;
  card: string;
  team_id: string;
  created_by: string | null;
  created_at: Date | string;
  updated_at: Date | string;
}
export interface VersionRow {
  id: string;
  model_id: string;
  number: number;
  stage: ModelStage;
  source_kind: VersionSource['kind'];
  source_ref: string | null;
  metadata: VersionMetadata | string;
  total_size: number | string;
  created_by: string | null;
  created_at: Date | string;
}
interface FileRow {
  version_id: string;
  path: string;
  size: number | string;
  sha256: string;
  kind: string;
  storage_key: string;
}
interface MetricRow {
  version_id: string;
  kind: 'evaluation' | 'speed';
  name: string;
  value: number | string;
  recorded_by: string;
  recorded_at: Date | string;
}

const iso = (d: Date | string) => new Date(d).toISOString();

export const toModel = (r: ModelRow): Model => ({
  id: r.id,
  name: r.name,
  description: r.description,
  team: r.team_id,
  createdBy: r.created_by,
  createdAt: iso(r.created_at),
  updatedAt: iso(r.updated_at),
});

export function migrations() {
  return [
    {
      name: '0001_registry',
      async up(db: Knex) {
        await db.schema.createTable(T.models, (t) => {
          t.text('id').primary();
          t.text('name').notNullable();
          t.text('description').notNullable().defaultTo('');
          t.text('card').notNullable().defaultTo('');
          t.text('team_id').notNullable().index();
          t.text('created_by');
          t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(db.fn.now());
          t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(db.fn.now());
          t.unique(['team_id', 'name'], { indexName: 'p_models_models_team_name' });
        });
        await db.schema.createTable(T.versions, (t) => {
          t.text('id').primary();
          t.text('model_id').notNullable().references('id').inTable(T.models).onDelete('CASCADE');
          t.integer('number').notNullable();
          t.text('stage').notNullable().defaultTo('draft');
          t.text('source_kind').notNullable();
          t.text('source_ref');
          t.jsonb('metadata').notNullable();
          t.bigInteger('total_size').notNullable();
          t.text('created_by');
          t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(db.fn.now());
          t.unique(['model_id', 'number'], { indexName: 'p_models_versions_model_number' });
          t.index(['model_id', 'stage'], 'p_models_versions_model_stage');
        });
        await db.schema.createTable(T.files, (t) => {
          t.text('version_id').notNullable().references('id').inTable(T.versions).onDelete('CASCADE');
          t.text('path').notNullable();
          t.bigInteger('size').notNullable();
          t.text('sha256').notNullable().index();
          t.text('kind').notNullable();
          t.text('storage_key').notNullable();
          t.primary(['version_id', 'path']);
        });
        await db.schema.createTable(T.metrics, (t) => {
          t.text('version_id').notNullable().references('id').inTable(T.versions).onDelete('CASCADE');
          t.text('kind').notNullable();
          t.text('name').notNullable();
          t.double('value').notNullable();
          t.text('recorded_by').notNullable();
          t.timestamp('recorded_at', { useTz: true }).notNullable().defaultTo(db.fn.now());
          t.primary(['version_id', 'kind', 'name']);
        });
        await db.schema.createTable(T.history, (t) => {
          t.bigIncrements('id').primary();
          t.text('version_id').notNullable().references('id').inTable(T.versions).onDelete('CASCADE');
          t.text('from_stage');
          t.text('to_stage').notNullable();
          t.text('changed_by');
          t.text('reason');
          t.timestamp('changed_at', { useTz: true }).notNullable().defaultTo(db.fn.now());
        });
      },
      async down(db: Knex) {
        for (const table of [T.history, T.metrics, T.files, T.versions, T.models]) await db.schema.dropTableIfExists(table);
      },
    },
  ];
}

function metricsOf(rows: MetricRow[]): VersionMetrics {
  const out: VersionMetrics = { evaluation: {}, speed: {} };
  for (const r of rows) out[r.kind][r.name] = { value: Number(r.value), recordedBy: r.recorded_by, at: iso(r.recorded_at) };
  return out;
}

/** A version with its files and metrics. */
export async function loadVersion(db: Knex, row: VersionRow): Promise<ModelVersion> {
  const files = (await db(T.files).where({ version_id: row.id }).orderBy('path')) as FileRow[];
  const metrics = (await db(T.metrics).where({ version_id: row.id }).orderBy(['kind', 'name'])) as MetricRow[];
  return {
    ...versionSummary(row),
    files: files.map((f) => ({ path: f.path, size: Number(f.size), sha256: f.sha256, kind: f.kind })),
    metrics: metricsOf(metrics),
  };
}

export function versionSummary(row: VersionRow): Omit<ModelVersion, 'files' | 'metrics'> {
  return {
    id: row.id,
    modelId: row.model_id,
    number: Number(row.number),
    stage: row.stage,
    source: { kind: row.source_kind, ref: row.source_ref },
    metadata: (typeof row.metadata === 'string' ? JSON.parse(row.metadata) : row.metadata) as VersionMetadata,
    totalSize: Number(row.total_size),
    createdBy: row.created_by,
    createdAt: iso(row.created_at),
  };
}

export async function fileRow(db: Knex, versionId: string, filePath: string): Promise<FileRow | undefined> {
  return (await db(T.files).where({ version_id: versionId, path: filePath }).first()) as FileRow | undefined;
}
export async function fileRows(db: Knex, versionId: string): Promise<FileRow[]> {
  return (await db(T.files).where({ version_id: versionId }).orderBy('path')) as FileRow[];
}

/** The metadata kept for a version: the inspection without per-tensor headers and local paths. */
export function summariseMetadata(info: ModelFolderInfo): VersionMetadata {
  return {
    format: info.format,
    formats: info.formats,
    architecture: info.architecture,
    modelType: info.modelType,
    parameters: info.parameters,
    parametersSource: info.parametersSource,
    dtype: info.dtype,
    dtypes: info.dtypes,
    torchDtype: info.torchDtype,
    quantisation: info.quantisation,
    contextLength: info.contextLength,
    hiddenSize: info.hiddenSize,
    layers: info.layers,
    attentionHeads: info.attentionHeads,
    keyValueHeads: info.keyValueHeads,
    vocabSize: info.vocabSize,
    sizes: { totalBytes: info.sizes.totalBytes, weightBytes: info.sizes.weightBytes, byKind: info.sizes.byKind as Record<string, number> },
    tokenizer: info.tokenizer,
    generationConfig: info.generationConfig,
    config: info.config,
    warnings: info.warnings,
    ...(info.adapter ? { adapter: info.adapter } : {}),
  };
}

export const blobKey = (sha256: string) => `blobs/${sha256}`;

async function sha256OfFile(file: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file), hash, { signal });
  return hash.digest('hex');
}

/** A file of a version being registered: where it is on disk, and what it becomes. */
export interface LocalFile {
  path: string;
  file: string;
  size: number;
  kind: string;
}

/**
 * Copies files into storage under `blobs/<sha256>` (a file whose content is already stored is not
 * written again) and answers their rows. Streams; never holds a file in memory.
 */
export async function storeFiles(
  store: BlobStore,
  files: LocalFile[],
  options: { signal?: AbortSignal; progress?: (fraction: number, message: string) => void; written?: string[] } = {},
): Promise<(VersionFile & { storageKey: string })[]> {
  const total = files.reduce((n, f) => n + f.size, 0) || 1;
  let done = 0;
  const out: (VersionFile & { storageKey: string })[] = [];
  for (const f of files) {
    options.signal?.throwIfAborted();
    const sha256 = await sha256OfFile(f.file, options.signal);
    const key = blobKey(sha256);
    const existing = await store.stat(key);
    if (!existing) {
      await store.put(key, createReadStream(f.file), { expectedSha256: sha256, contentType: 'application/octet-stream' });
      options.written?.push(key);
    }
    done += f.size;
    options.progress?.(Math.min(0.99, done / total), `stored ${f.path}`);
    out.push({ path: f.path, size: f.size, sha256, kind: f.kind, storageKey: key });
  }
  return out;
}

/** The files of an inspected folder, as {@link LocalFile}s. */
export function folderFiles(info: ModelFolderInfo): LocalFile[] {
  // `root` is a file for a single .gguf.
  const single = info.files.length === 1 && path.basename(info.root) === info.files[0]!.path && info.format === 'gguf';
  return info.files.map((f) => ({ path: f.path, file: single ? info.root : path.join(info.root, f.path), size: f.size, kind: f.kind }));
}

/** A version's relative file path: `/`-separated plain segments. */
/** Files named explicitly (the service's `files` form), checked and classified. */
export async function listedFiles(files: { path: string; file: string }[]): Promise<LocalFile[]> {
  const out: LocalFile[] = [];
  const seen = new Set<string>();
  for (const f of files) {
    checkRelativePath(f.path);
    if (seen.has(f.path)) throw new AiplatError('validation_failed', `The file path ${f.path} is given twice`);
    seen.add(f.path);
    const st = await stat(f.file).catch(() => undefined);
    if (!st?.isFile()) throw new AiplatError('validation_failed', `${f.file} is not a readable file`);
    out.push({ path: f.path, file: f.file, size: st.size, kind: classifyModelFile(f.path) });
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Inspect a folder, turning the reader's refusal into a 400 the caller sees. */
export async function inspect(folder: string): Promise<ModelFolderInfo> {
  try {
    return await inspectModelFolder(folder);
  } catch (err) {
    if (err instanceof ModelMetadataError) throw new AiplatError('bad_request', err.message, { file: err.file });
    throw err;
  }
}

export interface NewVersion {
  model: ModelRow;
  files: (VersionFile & { storageKey: string })[];
  metadata: VersionMetadata;
  source: VersionSource;
  createdBy: string | null;
}

function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  return e?.code === '23505' || /unique|duplicate key/i.test(e?.message ?? '');
}

/**
 * Inserts a version (stored files already in place) in one transaction on `db` (nested: a
 * savepoint inside a request's transaction), with its lineage edge when lineage is there.
 */
export async function insertVersion(db: Knex, plugin: PluginContext, input: NewVersion): Promise<VersionRow> {
  const id = randomUUID();
  const totalSize = input.files.reduce((n, f) => n + f.size, 0);
  const insertOnce = () =>
    db.transaction(async (trx) => {
      const max = (await trx(T.versions).where({ model_id: input.model.id }).max({ n: 'number' }).first()) as { n: number | string | null } | undefined;
      const number = Number(max?.n ?? 0) + 1;
      const [row] = (await trx(T.versions)
        .insert({
          id,
          model_id: input.model.id,
          number,
          stage: 'draft',
          source_kind: input.source.kind,
          source_ref: input.source.ref ?? null,
          metadata: JSON.stringify(input.metadata),
          total_size: totalSize,
          created_by: input.createdBy,
        })
        .returning('*')) as VersionRow[];
      if (input.files.length > 0) {
        await trx(T.files).insert(
          input.files.map((f) => ({ version_id: id, path: f.path, size: f.size, sha256: f.sha256, kind: f.kind, storage_key: f.storageKey })),
        );
      }
      await trx(T.history).insert({ version_id: id, from_stage: null, to_stage: 'draft', changed_by: input.createdBy });
      await recordLineage(trx, plugin, input.model, row!);
      return row!;
    });
  for (let attempt = 0; ; attempt++) {
    try {
      return await insertOnce();
    } catch (err) {
      if (attempt < 4 && isUniqueViolation(err)) continue; // another version took the number meanwhile
      throw err;
    }
  }
}

const SOURCE_KIND: Partial<Record<VersionSource['kind'], { kind: string; relation: string }>> = {
  training: { kind: 'training.run', relation: 'trained-from' },
  optimisation: { kind: 'models.version', relation: 'optimised-from' },
};

/** Records `source → models.version` when the lineage plugin is there and the source names something. */
async function recordLineage(db: Knex, plugin: PluginContext, model: ModelRow, row: VersionRow): Promise<void> {
  const source = SOURCE_KIND[row.source_kind];
  if (!source || !row.source_ref) return;
  const lineage = lineageOf(plugin);
  if (!lineage) return;
  // In a savepoint: lineage refusing the edge (say, a cycle) is logged and does not lose the version.
  try {
    await db.transaction((sp) =>
      lineage.record(
        {
          from: { kind: source.kind, id: row.source_ref! },
          to: { kind: 'models.version', id: row.id, label: `${model.name} v${row.number}`, team: model.team_id },
          relation: source.relation,
        },
        { db: sp, createdBy: 'models' },
      ),
    );
  } catch (err) {
    plugin.logger.warn({ err, version: row.id, source: row.source_ref }, 'the lineage edge of a model version could not be recorded');
  }
}

export async function recordMetrics(db: Knex, versionId: string, input: RecordMetricsInput): Promise<VersionMetrics> {
  const version = await db(T.versions).where({ id: versionId }).first();
  if (!version) throw new AiplatError('not_found', `No model version ${versionId}`, { id: versionId });
  const rows: Omit<MetricRow, 'recorded_at'>[] = [];
  for (const kind of ['evaluation', 'speed'] as const) {
    for (const [name, value] of Object.entries(input[kind] ?? {})) {
      if (!/^[A-Za-z0-9_.:/@+-]{1,100}$/.test(name)) throw new AiplatError('validation_failed', `The metric name ${JSON.stringify(name)} is not valid (letters, digits and _ . : / @ + -, at most 100)`);
      if (typeof value !== 'number' || !Number.isFinite(value)) throw new AiplatError('validation_failed', `The metric ${name} is not a finite number`);
      rows.push({ version_id: versionId, kind, name, value, recorded_by: input.recordedBy });
    }
  }
  if (rows.length === 0) throw new AiplatError('validation_failed', 'No metric given: pass evaluation or speed figures');
  const now = new Date().toISOString();
  await db(T.metrics)
    .insert(rows.map((r) => ({ ...r, recorded_at: now })))
    .onConflict(['version_id', 'kind', 'name'])
    .merge(['value', 'recorded_by', 'recorded_at']);
  return metricsOf((await db(T.metrics).where({ version_id: versionId }).orderBy(['kind', 'name'])) as MetricRow[]);
}

export function storeOf(plugin: PluginContext): BlobStore {
  return plugin.service(coreServices.storage);
}

/**
 * After a registration failed outside any request's transaction: deletes the blobs it wrote that no
 * version uses. Best effort (logged).
 */
export async function dropUnusedBlobs(plugin: PluginContext, keys: string[]): Promise<void> {
  for (const key of new Set(keys)) {
    try {
      if (!(await plugin.db(T.files).where({ storage_key: key }).first())) await storeOf(plugin).delete(key);
    } catch (err) {
      plugin.logger.warn({ err, key }, 'an unused model blob could not be deleted');
    }
  }
}
