/**
 * The datasets plugin's data: tables, row mapping, content-addressed blobs, commits and the one
 * place a version is made ({@link finishCommit}). Route handlers pass `ctx.db`; background work
 * (imports, uploads finishing, the expiry sweep) passes the plugin's handle.
 *
 * A version's files are rows `(version, path, sha256, size, kind)`; the content is the blob
 * `blobs/<sha256>` in the plugin's storage, written once whoever uploads it again. A new version
 * copies its parent's rows in one `INSERT … SELECT` and applies the commit's changes, so a
 * 10,000-file version with one changed file writes one blob and 10,000 small rows.
 */
import { createReadStream } from 'node:fs';
import { randomUUID } from 'node:crypto';
import {
  AiplatError,
  coreServices,
  type BlobStore,
  type Knex,
  type PluginContext,
} from '@aiplat/plugin-sdk';
import type { Dataset, DatasetVersion, FileKind, TaskType, VersionFile } from '../api/index.js';
import { fileKind } from './inspect/index.js';
import { lineageOf } from '@aiplat-plugins/lineage/api';

export const T = {
  datasets: 'p_datasets_datasets',
  versions: 'p_datasets_versions',
  tags: 'p_datasets_version_tags',
  files: 'p_datasets_files',
  blobs: 'p_datasets_blobs',
  commits: 'p_datasets_commits',
  changes: 'p_datasets_commit_changes',
} as const;

export interface DatasetRow {
  id: string;
  name: string;
  description: string;
  team_id: string;
  tags: string[] | string;
  task_type: TaskType;
  keep_versions: number | null;
  created_by: string | null;
  created_at: Date | string;
  updated_at: Date | string;
}
export interface VersionRow {
  id: string;
  dataset_id: string;
  number: number;
  message: string;
  parent_id: string | null;
  source_kind: 'upload' | 'import';
  source_ref: string | null;
  file_count: number | string;
  total_size: number | string;
  bytes_added: number | string;
  added: number;
  removed: number;
  changed: number;
  formats: Record<string, number> | string;
  created_by: string | null;
  created_at: Date | string;
}
export interface CommitRow {
  id: string;
  dataset_id: string;
  team_id: string;
  base_id: string | null;
  message: string;
  source_kind: 'upload' | 'import';
  source_ref: string | null;
  created_by: string | null;
  created_at: Date | string;
  expires_at: Date | string;
}
export interface ChangeRow {
  commit_id: string;
  path: string;
  op: 'put' | 'delete';
  sha256: string | null;
  size: number | string | null;
  kind: FileKind | null;
  new_blob: boolean;
}
interface FileRow {
  version_id: string;
  path: string;
  sha256: string;
  size: number | string;
  kind: FileKind;
}

const iso = (d: Date | string) => new Date(d).toISOString();
const parseJson = <V>(v: V | string): V => (typeof v === 'string' ? (JSON.parse(v) as V) : v);

export const blobKey = (sha256: string) => `blobs/${sha256}`;

export function storeOf(plugin: PluginContext): BlobStore {
  return plugin.service(coreServices.storage);
}

/** The lineage service when the lineage plugin is enabled (lineage is an optional dependency). */
export { lineageOf };

export function migrations() {
  return [
    {
      name: '0001_datasets',
      async up(db: Knex) {
        await db.schema.createTable(T.datasets, (t) => {
          t.text('id').primary();
          t.text('name').notNullable();
          t.text('description').notNullable().defaultTo('');
          t.text('team_id').notNullable().index();
          t.jsonb('tags').notNullable().defaultTo('[]');
          t.text('task_type').notNullable().defaultTo('other');
          t.integer('keep_versions');
          t.text('created_by');
          t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(db.fn.now());
          t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(db.fn.now());
          t.unique(['team_id', 'name'], { indexName: 'p_datasets_team_name' });
        });
        await db.schema.createTable(T.versions, (t) => {
          t.text('id').primary();
          t.text('dataset_id').notNullable().references('id').inTable(T.datasets).onDelete('CASCADE');
          t.integer('number').notNullable();
          t.text('message').notNullable().defaultTo('');
          t.text('parent_id');
          t.text('source_kind').notNullable();
          t.text('source_ref');
          t.integer('file_count').notNullable();
          t.bigInteger('total_size').notNullable();
          t.bigInteger('bytes_added').notNullable();
          t.integer('added').notNullable();
          t.integer('removed').notNullable();
          t.integer('changed').notNullable();
          t.jsonb('formats').notNullable().defaultTo('{}');
          t.text('created_by');
          t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(db.fn.now());
          t.unique(['dataset_id', 'number'], { indexName: 'p_datasets_versions_number' });
        });
        await db.schema.createTable(T.tags, (t) => {
          t.text('dataset_id').notNullable().references('id').inTable(T.datasets).onDelete('CASCADE');
          t.text('tag').notNullable();
          t.text('version_id').notNullable().references('id').inTable(T.versions).onDelete('CASCADE').index();
          t.primary(['dataset_id', 'tag']);
        });
        await db.schema.createTable(T.files, (t) => {
          t.text('version_id').notNullable().references('id').inTable(T.versions).onDelete('CASCADE');
          t.text('path').notNullable();
          t.text('sha256').notNullable().index();
          t.bigInteger('size').notNullable();
          t.text('kind').notNullable();
          t.primary(['version_id', 'path']);
        });
        await db.schema.createTable(T.blobs, (t) => {
          t.text('sha256').primary();
          t.bigInteger('size').notNullable();
          t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(db.fn.now());
        });
        await db.schema.createTable(T.commits, (t) => {
          t.text('id').primary();
          t.text('dataset_id').notNullable().references('id').inTable(T.datasets).onDelete('CASCADE').index();
          t.text('team_id').notNullable();
          t.text('base_id');
          t.text('message').notNullable().defaultTo('');
          t.text('source_kind').notNullable().defaultTo('upload');
          t.text('source_ref');
          t.text('created_by');
          t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(db.fn.now());
          t.timestamp('expires_at', { useTz: true }).notNullable().index();
        });
        await db.schema.createTable(T.changes, (t) => {
          t.text('commit_id').notNullable().references('id').inTable(T.commits).onDelete('CASCADE');
          t.text('path').notNullable();
          t.text('op').notNullable();
          t.text('sha256').index();
          t.bigInteger('size');
          t.text('kind');
          t.boolean('new_blob').notNullable().defaultTo(false);
          t.primary(['commit_id', 'path']);
        });
      },
    },
  ];
}

// ---- mapping ----

export async function toDataset(db: Knex, r: DatasetRow): Promise<Dataset> {
  const [stats] = (await db(T.versions).where({ dataset_id: r.id }).count({ n: '*' }).max({ top: 'number' })) as { n: number | string; top: number | null }[];
  const latest =
    stats?.top != null ? ((await db(T.versions).where({ dataset_id: r.id, number: stats.top }).first('id', 'number', 'total_size')) as { id: string; number: number; total_size: string | number } | undefined) : undefined;
  return {
    id: r.id,
    name: r.name,
    description: r.description,
    team: r.team_id,
    tags: parseJson(r.tags),
    taskType: r.task_type,
    keepVersions: r.keep_versions ?? null,
    latestVersion: latest ? { id: latest.id, number: Number(latest.number) } : null,
    versionCount: Number(stats?.n ?? 0),
    totalSize: Number(latest?.total_size ?? 0),
    createdBy: r.created_by,
    createdAt: iso(r.created_at),
    updatedAt: iso(r.updated_at),
  };
}

/** Versions with their tags (one query for the tags of all of them). */
export async function toVersions(db: Knex, rows: VersionRow[]): Promise<DatasetVersion[]> {
  const tags = rows.length ? ((await db(T.tags).whereIn('version_id', rows.map((r) => r.id)).orderBy('tag')) as { version_id: string; tag: string }[]) : [];
  return rows.map((r) => ({
    id: r.id,
    datasetId: r.dataset_id,
    number: Number(r.number),
    message: r.message,
    tags: tags.filter((t) => t.version_id === r.id).map((t) => t.tag),
    parent: r.parent_id,
    source: { kind: r.source_kind, ref: r.source_ref },
    fileCount: Number(r.file_count),
    totalSize: Number(r.total_size),
    bytesAdded: Number(r.bytes_added),
    changes: { added: r.added, removed: r.removed, changed: r.changed },
    formats: parseJson(r.formats),
    createdBy: r.created_by,
    createdAt: iso(r.created_at),
  }));
}

export async function toVersion(db: Knex, row: VersionRow): Promise<DatasetVersion> {
  return (await toVersions(db, [row]))[0]!;
}

export const toFile = (r: Pick<FileRow, 'path' | 'sha256' | 'size' | 'kind'>): VersionFile => ({ path: r.path, size: Number(r.size), sha256: r.sha256, kind: r.kind });

export function toCommit(row: CommitRow, changes: ChangeRow[]) {
  return {
    id: row.id,
    datasetId: row.dataset_id,
    base: row.base_id,
    message: row.message,
    changes: changes.map((c) => ({ path: c.path, op: c.op, size: c.size === null ? null : Number(c.size), sha256: c.sha256 })),
    createdBy: row.created_by,
    createdAt: iso(row.created_at),
    expiresAt: iso(row.expires_at),
  };
}

export async function versionFiles(db: Knex, versionId: string): Promise<VersionFile[]> {
  return ((await db(T.files).where({ version_id: versionId }).orderBy('path').select('path', 'sha256', 'size', 'kind')) as FileRow[]).map(toFile);
}

// ---- blobs ----

/**
 * Puts a local file's content into storage as `blobs/<sha256>` unless it is there already, and
 * records it. `sha256` must be the file's real checksum (the caller computed it); storage checks
 * it again while writing. Answers whether this call stored new content.
 */
export async function storeBlob(plugin: PluginContext, file: string, sha256: string, size: number): Promise<boolean> {
  const known = await plugin.db(T.blobs).where({ sha256 }).first();
  if (known) return false;
  await storeOf(plugin).put(blobKey(sha256), createReadStream(file), { expectedSha256: sha256 });
  const inserted = (await plugin.db(T.blobs).insert({ sha256, size }).onConflict('sha256').ignore().returning('sha256')) as unknown[];
  return inserted.length > 0;
}

/**
 * {@link storeBlob} for many local files at once (one query for what is stored already, one insert
 * for what was new). Answers the SHA-256s this call stored.
 */
export async function storeBlobs(plugin: PluginContext, files: { file: string; sha256: string; size: number }[]): Promise<Set<string>> {
  const wanted = [...new Map(files.map((f) => [f.sha256, f])).values()];
  const known = new Set(((await plugin.db(T.blobs).whereIn('sha256', wanted.map((f) => f.sha256)).select('sha256')) as { sha256: string }[]).map((r) => r.sha256));
  const missing = wanted.filter((f) => !known.has(f.sha256));
  // A few writes at a time: each waits mostly on fsync, so they overlap well.
  const queue = [...missing];
  const worker = async () => {
    for (let f = queue.shift(); f; f = queue.shift()) await storeOf(plugin).put(blobKey(f.sha256), createReadStream(f.file), { expectedSha256: f.sha256 });
  };
  await Promise.all(Array.from({ length: Math.min(8, queue.length) }, worker));
  if (missing.length === 0) return new Set();
  const inserted = (await plugin.db(T.blobs)
    .insert(missing.map((f) => ({ sha256: f.sha256, size: f.size })))
    .onConflict('sha256')
    .ignore()
    .returning('sha256')) as { sha256: string }[];
  return new Set(inserted.map((r) => r.sha256));
}

/**
 * Deletes the blobs among `shas` that no version and no open commit uses any more: the row first
 * (one statement, so a blob that gained a user meanwhile stays), then the stored object.
 */
export async function collectBlobs(plugin: PluginContext, shas: Iterable<string>): Promise<number> {
  const all = [...new Set(shas)];
  let deleted = 0;
  for (let i = 0; i < all.length; i += 500) {
    const batch = all.slice(i, i + 500);
    const gone = (await plugin
      .db(T.blobs)
      .whereIn('sha256', batch)
      .whereNotExists((q) => q.select(plugin.db.raw('1')).from(T.files).whereRaw(`${T.files}.sha256 = ${T.blobs}.sha256`))
      .whereNotExists((q) => q.select(plugin.db.raw('1')).from(T.changes).whereRaw(`${T.changes}.sha256 = ${T.blobs}.sha256`))
      .delete()
      .returning('sha256')) as { sha256: string }[];
    for (const { sha256 } of gone) {
      try {
        await storeOf(plugin).delete(blobKey(sha256));
        deleted++;
      } catch (err) {
        plugin.logger.warn({ err, sha256 }, 'an unused dataset blob could not be deleted');
      }
    }
  }
  return deleted;
}

/** The SHA-256s a set of versions uses (for {@link collectBlobs} after deleting them). */
export async function shasOfVersions(db: Knex, versionIds: string[]): Promise<string[]> {
  if (versionIds.length === 0) return [];
  return ((await db(T.files).whereIn('version_id', versionIds).distinct('sha256')) as { sha256: string }[]).map((r) => r.sha256);
}

// ---- commits ----

/** Stages `path` in a commit: content (put) or a removal (delete). A path staged twice keeps the last. */
export async function stageChange(db: Knex, commitId: string, change: { path: string; op: 'put' | 'delete'; sha256?: string; size?: number; newBlob?: boolean }): Promise<void> {
  await stageChanges(db, commitId, [change]);
}

/** {@link stageChange} for many paths in one statement. */
export async function stageChanges(db: Knex, commitId: string, changes: { path: string; op: 'put' | 'delete'; sha256?: string; size?: number; newBlob?: boolean }[]): Promise<void> {
  if (changes.length === 0) return;
  await db(T.changes)
    .insert(
      changes.map((change) => ({
        commit_id: commitId,
        path: change.path,
        op: change.op,
        sha256: change.sha256 ?? null,
        size: change.size ?? null,
        kind: change.op === 'put' ? fileKind(change.path) : null,
        new_blob: change.newBlob ?? false,
      })),
    )
    .onConflict(['commit_id', 'path'])
    .merge();
}

export async function commitChanges(db: Knex, commitId: string): Promise<ChangeRow[]> {
  return (await db(T.changes).where({ commit_id: commitId }).orderBy('path')) as ChangeRow[];
}

/**
 * Turns a commit into a version, in `db`'s transaction: the parent's files minus the staged paths,
 * plus the staged content; the counts against the parent; retention. `conflict` when nothing
 * differs from the parent. Answers the new row and the versions retention removed (their blobs
 * are for {@link collectBlobs} once the transaction has committed).
 */
export async function finishCommit(db: Knex, commit: CommitRow, message: string): Promise<{ row: VersionRow; pruned: Pruned }> {
  const dataset = (await db(T.datasets).where({ id: commit.dataset_id }).forUpdate().first()) as DatasetRow | undefined;
  if (!dataset) throw new AiplatError('not_found', `The dataset of commit ${commit.id} no longer exists`);
  const latest = (await db(T.versions).where({ dataset_id: dataset.id }).max({ top: 'number' }).first()) as { top: number | null } | undefined;
  const parent = commit.base_id;
  if (parent && !(await db(T.versions).where({ id: parent }).first())) {
    throw new AiplatError('conflict', `The base version of this commit was deleted meanwhile: open a new commit`, { base: parent });
  }
  const id = randomUUID();
  // Counts against the parent, from the staged changes alone.
  const parentFiles = (q: Knex.QueryBuilder) => q.from(T.files).where(`${T.files}.version_id`, parent ?? '').whereRaw(`${T.files}.path = c.path`);
  const [counts] = (await db
    .from({ c: T.changes })
    .where('c.commit_id', commit.id)
    .select(
      db.raw(`count(*) filter (where c.op = 'put' and not exists (?)) as added`, [db.select(db.raw('1')).modify(parentFiles)]),
      db.raw(`count(*) filter (where c.op = 'put' and exists (?)) as changed`, [db.select(db.raw('1')).modify(parentFiles).whereRaw(`${T.files}.sha256 <> c.sha256`)]),
      db.raw(`count(*) filter (where c.op = 'delete' and exists (?)) as removed`, [db.select(db.raw('1')).modify(parentFiles)]),
      db.raw(`coalesce(sum(c.size) filter (where c.op = 'put' and c.new_blob), 0) as bytes_added`),
    )) as { added: string | number; changed: string | number; removed: string | number; bytes_added: string | number }[];
  const added = Number(counts!.added);
  const changed = Number(counts!.changed);
  const removed = Number(counts!.removed);
  if (added + changed + removed === 0 && parent !== null) {
    throw new AiplatError('conflict', 'Nothing changed: the commit stages no file that differs from its base version', { commit: commit.id, base: parent });
  }
  await db(T.versions).insert({
    id,
    dataset_id: dataset.id,
    number: Number(latest?.top ?? 0) + 1,
    message,
    parent_id: parent,
    source_kind: commit.source_kind,
    source_ref: commit.source_ref,
    file_count: 0,
    total_size: 0,
    bytes_added: Number(counts!.bytes_added),
    added,
    removed,
    changed,
    formats: JSON.stringify({}),
    created_by: commit.created_by,
  });
  if (parent) {
    await db.raw(
      `insert into ${T.files} (version_id, path, sha256, size, kind)
       select ?, f.path, f.sha256, f.size, f.kind from ${T.files} f
       where f.version_id = ? and not exists (select 1 from ${T.changes} c where c.commit_id = ? and c.path = f.path)`,
      [id, parent, commit.id],
    );
  }
  await db.raw(
    `insert into ${T.files} (version_id, path, sha256, size, kind)
     select ?, c.path, c.sha256, c.size, c.kind from ${T.changes} c where c.commit_id = ? and c.op = 'put'`,
    [id, commit.id],
  );
  const kinds = (await db(T.files).where({ version_id: id }).select('kind').count({ n: '*' }).sum({ bytes: 'size' }).groupBy('kind')) as { kind: string; n: string | number; bytes: string | number }[];
  const fileCount = kinds.reduce((s, k) => s + Number(k.n), 0);
  if (fileCount === 0) throw new AiplatError('conflict', 'A version needs at least one file: the commit would leave the dataset empty', { commit: commit.id });
  const [row] = (await db(T.versions)
    .where({ id })
    .update({
      file_count: fileCount,
      total_size: kinds.reduce((s, k) => s + Number(k.bytes), 0),
      formats: JSON.stringify(Object.fromEntries(kinds.map((k) => [k.kind, Number(k.n)]))),
    })
    .returning('*')) as VersionRow[];
  await db(T.commits).where({ id: commit.id }).delete();
  const pruned = await applyRetention(db, dataset);
  return { row: row!, pruned };
}

export interface Pruned {
  /** The versions deleted. */
  ids: string[];
  /** The content they used, for {@link collectBlobs} after the transaction. */
  shas: string[];
}

/** Deletes the untagged versions beyond the dataset's `keep_versions` newest. */
export async function applyRetention(db: Knex, dataset: Pick<DatasetRow, 'id' | 'keep_versions'>): Promise<Pruned> {
  if (dataset.keep_versions == null) return { ids: [], shas: [] };
  const untagged = (await db(T.versions)
    .where({ dataset_id: dataset.id })
    .whereNotExists((q) => q.select(db.raw('1')).from(T.tags).whereRaw(`${T.tags}.version_id = ${T.versions}.id`))
    .orderBy('number', 'desc')
    .select('id')) as { id: string }[];
  const doomed = untagged.slice(dataset.keep_versions).map((v) => v.id);
  const shas = await shasOfVersions(db, doomed);
  if (doomed.length) await db(T.versions).whereIn('id', doomed).delete();
  return { ids: doomed, shas };
}
