/**
 * The datasets plugin: datasets with immutable, content-addressed versions, on the public SDK.
 * A version is made by finishing a commit (uploads, reused content and removals staged on top of a
 * base version) or by importing a server folder. See README.md for the API.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import {
  AiplatError,
  checkRelativePath,
  coreServices,
  definePlugin,
  json,
  ownership,
  raw,
  reply,
  resolveUnderRoots,
  scoped,
  scopedOr404,
  tarReply,
  type Knex,
  type PluginContext,
  type RouteContext,
  type RouteDefinition,
} from '@aiplat/plugin-sdk';
import { DATASET_VERSION_NODE, TASK_TYPES, datasetsHooks, datasetsService, type DatasetsService, type VersionFile } from '../api/index.js';
import { DatasetInspectError, previewFile, validateFile } from './inspect/index.js';
import {
  T,
  applyRetention,
  blobKey,
  collectBlobs,
  commitChanges,
  finishCommit,
  lineageOf,
  migrations,
  shasOfVersions,
  stageChange,
  stageChanges,
  storeBlob,
  storeBlobs,
  storeOf,
  toCommit,
  toDataset,
  toFile,
  toVersion,
  toVersions,
  versionFiles,
  type CommitRow,
  type DatasetRow,
  type VersionRow,
} from './store.js';
import { UPLOADS_PATH, checkMetadata, createUploads, parseMetadataHeader, type Uploads } from './uploads.js';

export interface DatasetsConfig {
  importRoots: string[];
  maxUploadMiB: number;
  commitTtlHours: number;
}

type Ctx = RouteContext<any, any, any>;

/** Files an import hashes, stores and stages per database round. */
const IMPORT_BATCH = 500;

const configOf = (plugin: PluginContext): DatasetsConfig => plugin.config as unknown as DatasetsConfig;

const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', minLength: 1, maxLength: 64 } } } as const;
const nameSchema = { type: 'string', minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' } as const;
const tagSchema = { type: 'string', minLength: 1, maxLength: 40, pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]*$' } as const;
const tagsSchema = { type: 'array', items: tagSchema, maxItems: 32, uniqueItems: true } as const;
const datasetFields = {
  name: nameSchema,
  description: { type: 'string', maxLength: 2000 },
  tags: tagsSchema,
  taskType: { type: 'string', enum: [...TASK_TYPES] },
  keepVersions: { type: ['integer', 'null'], minimum: 1, maximum: 10000 },
} as const;
const sha256Schema = { type: 'string', pattern: '^[0-9a-fA-F]{64}$' } as const;
const pathSchema = { type: 'string', minLength: 1, maxLength: 1024 } as const;
const messageSchema = { type: 'string', maxLength: 2000 } as const;

const CONTENT_TYPES: Record<string, string> = {
  jsonl: 'application/x-ndjson',
  json: 'application/json',
  csv: 'text/csv; charset=utf-8',
  tsv: 'text/tab-separated-values; charset=utf-8',
  txt: 'text/plain; charset=utf-8',
  md: 'text/markdown; charset=utf-8',
  parquet: 'application/vnd.apache.parquet',
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
  bmp: 'image/bmp',
};
const contentTypeOf = (p: string) => CONTENT_TYPES[path.extname(p).slice(1).toLowerCase()] ?? 'application/octet-stream';
const attachmentName = (name: string) => name.replace(/[^A-Za-z0-9._-]/g, '_');

const datasetOr404 = (ctx: Ctx, id: string, permission = 'datasets:read') => scopedOr404<DatasetRow>(ctx, T.datasets, permission, { id }, `No dataset ${id}`);

/** A version and its dataset, when the caller may see the dataset. */
async function versionOr404(ctx: Ctx, id: string, permission = 'datasets:read'): Promise<{ version: VersionRow; dataset: DatasetRow }> {
  const version = (await ctx.db(T.versions).where({ id }).first()) as VersionRow | undefined;
  const dataset = await scopedOr404<DatasetRow>(ctx, T.datasets, permission, { id: version?.dataset_id ?? '' }, `No dataset version ${id}`, { id });
  return { version: version!, dataset };
}

async function commitOr404(ctx: Ctx, id: string): Promise<CommitRow> {
  const commit = (await ctx.db(T.commits).where({ id }).first()) as CommitRow | undefined;
  if (!commit || !ctx.can('datasets:write', commit.team_id)) throw new AiplatError('not_found', `No open commit ${id} (finished, abandoned, expired, or not yours to write)`, { id });
  if (new Date(commit.expires_at).getTime() < Date.now()) throw new AiplatError('not_found', `The commit ${id} has expired: open a new one`, { id });
  return commit;
}

async function fileOr404(db: Knex, versionId: string, filePath: string): Promise<VersionFile> {
  const row = await db(T.files).where({ version_id: versionId, path: filePath }).first();
  if (!row) throw new AiplatError('not_found', `The version has no file ${filePath}`, { path: filePath });
  return toFile(row);
}

/** Calls the hook after commit; a tap's throw is logged, not passed on. */
async function announce(plugin: PluginContext, dataset: DatasetRow, row: VersionRow): Promise<void> {
  const version = await toVersion(plugin.db, row);
  const lineage = lineageOf(plugin);
  if (lineage && row.parent_id) {
    const node = (id: string, n: number) => ({ kind: DATASET_VERSION_NODE, id, label: `${dataset.name} v${n}`, team: dataset.team_id });
    const parent = (await plugin.db(T.versions).where({ id: row.parent_id }).first()) as VersionRow | undefined;
    if (parent) {
      await lineage
        .record({ from: node(parent.id, parent.number), to: node(row.id, row.number), relation: 'derived-from' }, { createdBy: row.created_by ?? 'datasets' })
        .catch((err: unknown) => plugin.logger.warn({ err }, 'the lineage of a dataset version could not be recorded'));
    }
  }
  try {
    await plugin.hooks.call(datasetsHooks.versionCreated, { dataset: await toDataset(plugin.db, dataset), version });
  } catch (err) {
    plugin.logger.warn({ err }, 'a tap of datasets.versionCreated failed');
  }
}

/** Blobs the pruned versions (or a deleted dataset or version) used and nothing else does, once the change is durable. */
function collectAfter(ctx: Ctx | undefined, plugin: PluginContext, shas: string[]): void {
  if (shas.length === 0) return;
  const run = () => collectBlobs(plugin, shas).catch((err: unknown) => plugin.logger.warn({ err }, 'unused dataset content could not be collected'));
  if (ctx) ctx.afterCommit(run);
  else void run();
}

/** 422 for content that cannot be previewed or validated, with the inspector's message. */
function inspectFailure(err: unknown): never {
  if (err instanceof DatasetInspectError) throw new AiplatError('unprocessable', err.message, err.details);
  throw err;
}

/** A server folder's files, recursively, in path order (links are not followed). */
async function walk(root: string, rel = ''): Promise<{ path: string; file: string; size: number }[]> {
  const out: { path: string; file: string; size: number }[] = [];
  const entries = await readdir(path.join(root, rel), { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await walk(root, r)));
    else if (e.isFile()) out.push({ path: checkRelativePath(r), file: path.join(root, r), size: (await stat(path.join(root, r))).size });
  }
  return out;
}

async function sha256OfFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file), hash);
  return hash.digest('hex');
}

function registerService(plugin: PluginContext): DatasetsService {
  return {
    async get(versionId, options) {
      const db = options?.db ?? plugin.db;
      const row = (await db(T.versions).where({ id: versionId }).first()) as VersionRow | undefined;
      if (!row) return undefined;
      const dataset = (await db(T.datasets).where({ id: row.dataset_id }).first()) as DatasetRow;
      return { ...(await toVersion(db, row)), dataset: await toDataset(db, dataset) };
    },
    async files(versionId, options) {
      const db = options?.db ?? plugin.db;
      if (!(await db(T.versions).where({ id: versionId }).first())) throw new AiplatError('not_found', `No dataset version ${versionId}`, { id: versionId });
      return versionFiles(db, versionId);
    },
    async materialise(versionId, folder, options) {
      const files = await this.files(versionId);
      const store = storeOf(plugin);
      for (const f of files) {
        options?.signal?.throwIfAborted();
        const target = path.join(folder, ...checkRelativePath(f.path).split('/'));
        await mkdir(path.dirname(target), { recursive: true });
        const { stream } = await store.get(blobKey(f.sha256));
        await pipeline(stream, createWriteStream(target), { signal: options?.signal });
      }
      return files;
    },
    async validate(versionId, options) {
      const files = (await this.files(versionId)).filter((f) => (options.path ? f.path === options.path : f.kind === 'jsonl' || f.kind === 'json'));
      if (options.path && files.length === 0) throw new AiplatError('not_found', `The version has no file ${options.path}`, { path: options.path });
      const reports = [];
      for (const f of files) {
        const local = await storeOf(plugin).materialise(blobKey(f.sha256));
        reports.push(await validateFile(local, { path: f.path, format: options.format }).catch(inspectFailure));
      }
      return reports;
    },
  };
}

let uploads: Uploads | undefined;
let sweeper: NodeJS.Timeout | undefined;

/** Deletes expired commits (their staged content goes with them unless a version uses it) and stale staged uploads. */
async function sweep(plugin: PluginContext): Promise<void> {
  const expired = (await plugin.db(T.commits).where('expires_at', '<', new Date().toISOString()).select('id')) as { id: string }[];
  for (const { id } of expired) {
    const shas = (await commitChanges(plugin.db, id)).flatMap((c) => (c.sha256 ? [c.sha256] : []));
    await plugin.db(T.commits).where({ id }).delete();
    await uploads?.dropForCommit(id);
    await collectBlobs(plugin, shas);
  }
  await uploads?.server.cleanUpExpiredUploads().catch(() => 0);
}

/** The tus endpoint's routes: the core authenticates; the caller must hold datasets:write in the commit's team. */
function uploadRoutes(): RouteDefinition[] {
  const authorise = async (ctx: Ctx, meta: { commit: string } | undefined) => {
    if (!meta) return;
    await commitOr404(ctx, meta.commit);
  };
  const handle = async (ctx: Ctx) => {
    if (!uploads) throw new AiplatError('unavailable', 'Uploads are not ready yet');
    ctx.takeOver();
    await uploads.server.handle(ctx.req, ctx.res);
  };
  const common = { permission: 'datasets:write', mutates: false, tags: ['uploads'] };
  const passthrough = { mode: 'passthrough' as const };
  return [
    {
      ...common,
      method: 'POST',
      path: '/uploads',
      body: passthrough,
      summary: 'tus: create a resumable upload (Upload-Metadata: commit, path, optional sha256)',
      handler: async (ctx) => {
        const meta = checkMetadata(parseMetadataHeader(ctx.req.headers['upload-metadata'] as string | undefined));
        await authorise(ctx, meta);
        await handle(ctx);
      },
    },
    ...(['HEAD', 'PATCH', 'DELETE'] as const).map(
      (method): RouteDefinition => ({
        ...common,
        method,
        path: '/uploads/:uid',
        body: method === 'PATCH' ? passthrough : undefined,
        params: { type: 'object', required: ['uid'], properties: { uid: { type: 'string', minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_-]+$' } } },
        summary: method === 'HEAD' ? 'tus: the offset of an upload' : method === 'PATCH' ? 'tus: append bytes to an upload' : 'tus: cancel an upload',
        handler: async (ctx) => {
          const meta = await uploads?.metadataOf(ctx.params.uid);
          if (!meta) throw new AiplatError('not_found', `No upload ${ctx.params.uid}: it finished, expired or was cancelled`, { upload: ctx.params.uid });
          await authorise(ctx, meta);
          await handle(ctx);
        },
      }),
    ),
  ];
}

export default definePlugin({
  register(env) {
    env.declareHook(datasetsHooks.versionCreated);
    env.migrations(migrations());
    env.provideService(datasetsService, (ctx) => registerService(ctx));

    // ---- datasets ----
    env.route({
      method: 'GET',
      path: '/datasets',
      summary: 'The datasets of your teams',
      permission: 'datasets:read',
      query: {
        type: 'object',
        properties: {
          q: { type: 'string', maxLength: 100 },
          tag: { type: 'string', maxLength: 40 },
          taskType: { type: 'string', enum: [...TASK_TYPES] },
          limit: { type: 'integer', minimum: 1, maximum: 500, default: 100 },
          offset: { type: 'integer', minimum: 0, default: 0 },
        },
      },
      handler: async (ctx) => {
        let query = scoped(ctx, T.datasets, 'datasets:read');
        if (ctx.query.q) query = query.whereRaw('lower(name) like ?', [`%${String(ctx.query.q).toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`]);
        if (ctx.query.tag) query = query.whereRaw('tags @> ?::jsonb', [JSON.stringify([ctx.query.tag])]);
        if (ctx.query.taskType) query = query.where({ task_type: ctx.query.taskType });
        const rows = (await query.orderBy('name').limit(ctx.query.limit).offset(ctx.query.offset)) as DatasetRow[];
        const items = [];
        for (const r of rows) items.push(await toDataset(ctx.db, r));
        return { items };
      },
    });

    env.route({
      method: 'POST',
      path: '/datasets',
      summary: 'Create a dataset',
      permission: 'datasets:write',
      body: json({ type: 'object', required: ['name'], additionalProperties: false, properties: { ...datasetFields, team: { type: 'string', minLength: 1 } } }),
      handler: async (ctx) => {
        const owner = ownership(ctx, 'datasets:write', ctx.body.team);
        const clash = await ctx.db(T.datasets).where({ team_id: owner.team_id, name: ctx.body.name }).first();
        if (clash) throw new AiplatError('conflict', `Team ${owner.team_id} already has a dataset named ${ctx.body.name}`, { name: ctx.body.name });
        const [row] = (await ctx
          .db(T.datasets)
          .insert({
            id: randomUUID(),
            name: ctx.body.name,
            description: ctx.body.description ?? '',
            tags: JSON.stringify(ctx.body.tags ?? []),
            task_type: ctx.body.taskType ?? 'other',
            keep_versions: ctx.body.keepVersions ?? null,
            ...owner,
          })
          .returning('*')) as DatasetRow[];
        ctx.auditInfo = { resource: { type: 'dataset', id: row!.id }, team: row!.team_id };
        return reply(201, await toDataset(ctx.db, row!));
      },
    });

    env.route({
      method: 'GET',
      path: '/datasets/:id',
      summary: 'A dataset with its versions, newest first',
      permission: 'datasets:read',
      params: idParams,
      handler: async (ctx) => {
        const row = await datasetOr404(ctx, ctx.params.id);
        const versions = (await ctx.db(T.versions).where({ dataset_id: row.id }).orderBy('number', 'desc')) as VersionRow[];
        return { ...(await toDataset(ctx.db, row)), versions: await toVersions(ctx.db, versions) };
      },
    });

    env.route({
      method: 'PATCH',
      path: '/datasets/:id',
      summary: 'Rename a dataset, or change its description, tags, task type or retention (retention applies at once)',
      permission: 'datasets:write',
      params: idParams,
      body: json({ type: 'object', minProperties: 1, additionalProperties: false, properties: datasetFields }),
      handler: async (ctx) => {
        const row = await datasetOr404(ctx, ctx.params.id, 'datasets:write');
        if (ctx.body.name && ctx.body.name !== row.name) {
          const clash = await ctx.db(T.datasets).where({ team_id: row.team_id, name: ctx.body.name }).first();
          if (clash) throw new AiplatError('conflict', `Team ${row.team_id} already has a dataset named ${ctx.body.name}`, { name: ctx.body.name });
        }
        const patch: Record<string, unknown> = { updated_at: new Date().toISOString() };
        if (ctx.body.name !== undefined) patch.name = ctx.body.name;
        if (ctx.body.description !== undefined) patch.description = ctx.body.description;
        if (ctx.body.tags !== undefined) patch.tags = JSON.stringify(ctx.body.tags);
        if (ctx.body.taskType !== undefined) patch.task_type = ctx.body.taskType;
        if (ctx.body.keepVersions !== undefined) patch.keep_versions = ctx.body.keepVersions;
        const [updated] = (await ctx.db(T.datasets).where({ id: row.id }).update(patch).returning('*')) as DatasetRow[];
        const pruned = await applyRetention(ctx.db, updated!);
        collectAfter(ctx, ctx.plugin, pruned.shas);
        ctx.auditInfo = { resource: { type: 'dataset', id: row.id }, team: row.team_id, details: pruned.ids.length ? { prunedVersions: pruned.ids } : undefined };
        return toDataset(ctx.db, updated!);
      },
    });

    env.route({
      method: 'DELETE',
      path: '/datasets/:id',
      summary: 'Delete a dataset with its versions (content other datasets share stays)',
      permission: 'datasets:write',
      params: idParams,
      handler: async (ctx) => {
        const row = await datasetOr404(ctx, ctx.params.id, 'datasets:write');
        const versionIds = ((await ctx.db(T.versions).where({ dataset_id: row.id }).select('id')) as { id: string }[]).map((v) => v.id);
        const commitIds = ((await ctx.db(T.commits).where({ dataset_id: row.id }).select('id')) as { id: string }[]).map((c) => c.id);
        const shas = [
          ...(await shasOfVersions(ctx.db, versionIds)),
          ...(commitIds.length ? ((await ctx.db(T.changes).whereIn('commit_id', commitIds).whereNotNull('sha256').distinct('sha256')) as { sha256: string }[]).map((c) => c.sha256) : []),
        ];
        await ctx.db(T.datasets).where({ id: row.id }).delete();
        ctx.auditInfo = { resource: { type: 'dataset', id: row.id }, team: row.team_id, details: { name: row.name, versions: versionIds.length } };
        for (const id of commitIds) ctx.afterCommit(() => uploads?.dropForCommit(id));
        collectAfter(ctx, ctx.plugin, shas);
      },
    });

    env.route({
      method: 'GET',
      path: '/datasets/:id/diff',
      summary: 'What changed between two versions of a dataset: added, removed and changed files',
      permission: 'datasets:read',
      params: idParams,
      query: { type: 'object', required: ['to'], properties: { from: { type: 'string', maxLength: 64 }, to: { type: 'string', minLength: 1, maxLength: 64 } } },
      handler: async (ctx) => {
        const dataset = await datasetOr404(ctx, ctx.params.id);
        const to = (await ctx.db(T.versions).where({ id: ctx.query.to, dataset_id: dataset.id }).first()) as VersionRow | undefined;
        if (!to) throw new AiplatError('not_found', `Dataset ${dataset.name} has no version ${ctx.query.to}`, { to: ctx.query.to });
        const fromId = ctx.query.from ?? to.parent_id;
        const from = fromId ? ((await ctx.db(T.versions).where({ id: fromId, dataset_id: dataset.id }).first()) as VersionRow | undefined) : undefined;
        if (fromId && !from) throw new AiplatError('not_found', `Dataset ${dataset.name} has no version ${fromId}`, { from: fromId });
        const before = new Map((from ? await versionFiles(ctx.db, from.id) : []).map((f) => [f.path, f]));
        const after = await versionFiles(ctx.db, to.id);
        const added: VersionFile[] = [];
        const changed: { path: string; before: VersionFile; after: VersionFile }[] = [];
        let unchanged = 0;
        for (const f of after) {
          const old = before.get(f.path);
          before.delete(f.path);
          if (!old) added.push(f);
          else if (old.sha256 !== f.sha256) changed.push({ path: f.path, before: old, after: f });
          else unchanged++;
        }
        return {
          from: from ? await toVersion(ctx.db, from) : null,
          to: await toVersion(ctx.db, to),
          added,
          removed: [...before.values()],
          changed,
          unchanged,
        };
      },
    });

    env.route({
      method: 'POST',
      path: '/datasets/:id/import',
      summary: 'Import a server folder (under the importRoots setting) as a new version, in the background',
      permission: 'datasets:write',
      params: idParams,
      body: json({ type: 'object', required: ['path'], additionalProperties: false, properties: { path: { type: 'string', minLength: 1, maxLength: 4096 }, message: messageSchema } }),
      handler: async (ctx) => {
        const dataset = await datasetOr404(ctx, ctx.params.id, 'datasets:write');
        const plugin = ctx.plugin;
        const config = configOf(plugin);
        const folder = await resolveUnderRoots(ctx.body.path, config.importRoots ?? [], '"importRoots" of the datasets plugin');
        if (!(await stat(folder)).isDirectory()) throw new AiplatError('validation_failed', `${ctx.body.path} is not a folder`, { path: ctx.body.path });
        const files = await walk(folder).catch((err: unknown) => {
          if (err instanceof AiplatError) throw new AiplatError('unprocessable', `The folder holds a file whose name cannot be a dataset path: ${err.message}`);
          throw err;
        });
        if (files.length === 0) throw new AiplatError('unprocessable', `The folder ${ctx.body.path} holds no file`, { path: ctx.body.path });
        const userId = ctx.user!.id;
        const message = ctx.body.message ?? `Imported from ${ctx.body.path}`;
        const op = await plugin.service(coreServices.operations).start(
          'datasets.import',
          async ({ signal, progress }) => {
            const latest = (await plugin.db(T.versions).where({ dataset_id: dataset.id }).orderBy('number', 'desc').first()) as VersionRow | undefined;
            const commitId = randomUUID();
            await plugin.db(T.commits).insert({
              id: commitId,
              dataset_id: dataset.id,
              team_id: dataset.team_id,
              base_id: latest?.id ?? null,
              message,
              source_kind: 'import',
              source_ref: ctx.body.path,
              created_by: userId,
              expires_at: new Date(Date.now() + config.commitTtlHours * 3600_000).toISOString(),
            });
            try {
              const total = files.reduce((s, f) => s + f.size, 0) || 1;
              let done = 0;
              // In batches: hash, store what is new, stage the batch in one statement.
              for (let i = 0; i < files.length; i += IMPORT_BATCH) {
                const batch = files.slice(i, i + IMPORT_BATCH);
                const hashed: { path: string; file: string; size: number; sha256: string }[] = [];
                for (const f of batch) {
                  signal.throwIfAborted();
                  hashed.push({ ...f, sha256: await sha256OfFile(f.file) });
                }
                const fresh = await storeBlobs(plugin, hashed);
                await stageChanges(
                  plugin.db,
                  commitId,
                  hashed.map((f) => ({ path: f.path, op: 'put' as const, sha256: f.sha256, size: f.size, newBlob: fresh.has(f.sha256) })),
                );
                done += batch.reduce((s, f) => s + f.size, 0);
                progress(done / total, `${Math.min(i + IMPORT_BATCH, files.length)} of ${files.length} files`);
              }
              if (latest) {
                await plugin.db.raw(
                  `insert into ${T.changes} (commit_id, path, op) select ?, f.path, 'delete' from ${T.files} f
                   where f.version_id = ? and not exists (select 1 from ${T.changes} c where c.commit_id = ? and c.path = f.path)`,
                  [commitId, latest.id, commitId],
                );
              }
              signal.throwIfAborted();
              const commit = (await plugin.db(T.commits).where({ id: commitId }).first()) as CommitRow;
              const { row, pruned } = await plugin.db.transaction((trx) => finishCommit(trx, commit, message));
              collectAfter(undefined, plugin, pruned.shas);
              await announce(plugin, dataset, row);
              return { versionId: row.id, number: Number(row.number) };
            } catch (err) {
              // Failed or cancelled: the commit and the content only it staged go.
              const shas = (await commitChanges(plugin.db, commitId)).flatMap((c) => (c.sha256 ? [c.sha256] : []));
              await plugin.db(T.commits).where({ id: commitId }).delete();
              await collectBlobs(plugin, shas);
              throw err;
            }
          },
          { title: `Import ${dataset.name} from ${ctx.body.path}`, userId },
        );
        ctx.auditInfo = { resource: { type: 'dataset', id: dataset.id }, team: dataset.team_id, details: { operationId: op.id, files: files.length } };
        return reply(202, { operationId: op.id });
      },
    });

    // ---- versions ----
    env.route({
      method: 'GET',
      path: '/versions/:id',
      summary: 'A dataset version',
      permission: 'datasets:read',
      params: idParams,
      handler: async (ctx) => {
        const { version, dataset } = await versionOr404(ctx, ctx.params.id);
        return { ...(await toVersion(ctx.db, version)), dataset: await toDataset(ctx.db, dataset) };
      },
    });

    env.route({
      method: 'GET',
      path: '/versions/:id/files',
      summary: "A version's files in path order, a page at a time",
      permission: 'datasets:read',
      params: idParams,
      query: {
        type: 'object',
        properties: { prefix: { type: 'string', maxLength: 1024 }, limit: { type: 'integer', minimum: 1, maximum: 1000, default: 200 }, offset: { type: 'integer', minimum: 0, default: 0 } },
      },
      handler: async (ctx) => {
        const { version } = await versionOr404(ctx, ctx.params.id);
        let query = ctx.db(T.files).where({ version_id: version.id });
        if (ctx.query.prefix) query = query.whereRaw('path like ?', [`${String(ctx.query.prefix).replace(/[\\%_]/g, (c) => `\\${c}`)}%`]);
        const [{ n }] = (await query.clone().count({ n: '*' })) as [{ n: string | number }];
        const rows = await query.orderBy('path').limit(ctx.query.limit).offset(ctx.query.offset).select('path', 'sha256', 'size', 'kind');
        return { items: rows.map(toFile), total: Number(n) };
      },
    });

    env.route({
      method: 'GET',
      path: '/versions/:id/files/content',
      summary: 'One file of a version, streamed',
      permission: 'datasets:read',
      params: idParams,
      query: { type: 'object', required: ['path'], properties: { path: pathSchema } },
      handler: async (ctx) => {
        const { version } = await versionOr404(ctx, ctx.params.id);
        const file = await fileOr404(ctx.db, version.id, ctx.query.path);
        const { stream } = await storeOf(ctx.plugin).get(blobKey(file.sha256));
        return reply(200, stream, {
          'content-type': contentTypeOf(file.path),
          'content-length': String(file.size),
          'content-disposition': `inline; filename="${attachmentName(path.posix.basename(file.path))}"`,
          etag: `"${file.sha256}"`,
          'cache-control': 'private, max-age=31536000, immutable',
        });
      },
    });

    env.route({
      method: 'GET',
      path: '/versions/:id/preview',
      summary: 'The first rows of a file with its inferred columns and row count (JSONL, CSV, Parquet), its first lines (text), or its format and size (images)',
      permission: 'datasets:read',
      params: idParams,
      query: { type: 'object', required: ['path'], properties: { path: pathSchema, limit: { type: 'integer', minimum: 1, maximum: 200, default: 20 } } },
      handler: async (ctx) => {
        const { version } = await versionOr404(ctx, ctx.params.id);
        const file = await fileOr404(ctx.db, version.id, ctx.query.path);
        const local = await storeOf(ctx.plugin).materialise(blobKey(file.sha256));
        const preview = await previewFile(local, { path: file.path, limit: ctx.query.limit }).catch(inspectFailure);
        if (preview.kind === 'image') preview.contentUrl = `/api/plugins/datasets/versions/${version.id}/files/content?path=${encodeURIComponent(file.path)}`;
        return preview;
      },
    });

    env.route({
      method: 'GET',
      path: '/versions/:id/validate',
      summary: 'Check a JSONL file against an LLM training format (instruction or chat), line by line',
      permission: 'datasets:read',
      params: idParams,
      query: { type: 'object', required: ['path'], properties: { path: pathSchema, format: { type: 'string', enum: ['auto', 'instruction', 'chat'], default: 'auto' } } },
      handler: async (ctx) => {
        const { version } = await versionOr404(ctx, ctx.params.id);
        const file = await fileOr404(ctx.db, version.id, ctx.query.path);
        const local = await storeOf(ctx.plugin).materialise(blobKey(file.sha256));
        return validateFile(local, { path: file.path, format: ctx.query.format }).catch(inspectFailure);
      },
    });

    env.route({
      method: 'GET',
      path: '/versions/:id/archive',
      summary: 'A version as a tar archive, streamed',
      permission: 'datasets:read',
      params: idParams,
      handler: async (ctx) => {
        const { version, dataset } = await versionOr404(ctx, ctx.params.id);
        const files = await versionFiles(ctx.db, version.id);
        const store = storeOf(ctx.plugin);
        const prefix = `${dataset.name}-v${version.number}`;
        const entries = files.map((f) => ({ name: `${prefix}/${f.path}`, size: f.size, open: async () => (await store.get(blobKey(f.sha256))).stream }));
        return tarReply(entries, prefix, (err) => ctx.plugin.logger.warn({ err, version: version.id }, 'the archive of a dataset version could not be written'));
      },
    });

    env.route({
      method: 'PUT',
      path: '/versions/:id/tags/:tag',
      summary: 'Tag a version (a tag names one version per dataset: it moves here from another)',
      permission: 'datasets:write',
      params: { type: 'object', required: ['id', 'tag'], properties: { id: idParams.properties.id, tag: tagSchema } },
      handler: async (ctx) => {
        const { version, dataset } = await versionOr404(ctx, ctx.params.id, 'datasets:write');
        await ctx.db(T.tags).insert({ dataset_id: dataset.id, tag: ctx.params.tag, version_id: version.id }).onConflict(['dataset_id', 'tag']).merge(['version_id']);
        ctx.auditInfo = { resource: { type: 'dataset-version', id: version.id }, team: dataset.team_id, details: { tag: ctx.params.tag } };
        return toVersion(ctx.db, version);
      },
    });

    env.route({
      method: 'DELETE',
      path: '/versions/:id/tags/:tag',
      summary: 'Remove a tag from a version',
      permission: 'datasets:write',
      params: { type: 'object', required: ['id', 'tag'], properties: { id: idParams.properties.id, tag: tagSchema } },
      handler: async (ctx) => {
        const { version, dataset } = await versionOr404(ctx, ctx.params.id, 'datasets:write');
        const n = await ctx.db(T.tags).where({ dataset_id: dataset.id, tag: ctx.params.tag, version_id: version.id }).delete();
        if (!n) throw new AiplatError('not_found', `Version ${version.number} of ${dataset.name} has no tag ${ctx.params.tag}`, { tag: ctx.params.tag });
        ctx.auditInfo = { resource: { type: 'dataset-version', id: version.id }, team: dataset.team_id, details: { tag: ctx.params.tag } };
        return toVersion(ctx.db, version);
      },
    });

    env.route({
      method: 'DELETE',
      path: '/versions/:id',
      summary: 'Delete an untagged version (content other versions use stays)',
      permission: 'datasets:write',
      params: idParams,
      handler: async (ctx) => {
        const { version, dataset } = await versionOr404(ctx, ctx.params.id, 'datasets:write');
        const tags = (await ctx.db(T.tags).where({ version_id: version.id }).select('tag')) as { tag: string }[];
        if (tags.length) throw new AiplatError('conflict', `Version ${version.number} is tagged ${tags.map((t) => t.tag).join(', ')}: remove its tags first`, { tags: tags.map((t) => t.tag) });
        const shas = await shasOfVersions(ctx.db, [version.id]);
        await ctx.db(T.versions).where({ id: version.id }).delete();
        ctx.auditInfo = { resource: { type: 'dataset-version', id: version.id }, team: dataset.team_id, details: { dataset: dataset.name, number: version.number } };
        collectAfter(ctx, ctx.plugin, shas);
        const lineage = lineageOf(ctx.plugin);
        if (lineage) ctx.afterCommit(() => lineage.forget({ kind: DATASET_VERSION_NODE, id: version.id }).catch(() => undefined));
      },
    });

    // ---- commits ----
    env.route({
      method: 'POST',
      path: '/datasets/:id/commits',
      summary: 'Open a commit: stage uploads and removals on top of a base version (the latest by default), then finish it',
      permission: 'datasets:write',
      params: idParams,
      body: json({ type: 'object', additionalProperties: false, properties: { base: { type: ['string', 'null'], maxLength: 64 }, message: messageSchema } }),
      handler: async (ctx) => {
        const dataset = await datasetOr404(ctx, ctx.params.id, 'datasets:write');
        let base: string | null;
        if (ctx.body.base === undefined) {
          base = ((await ctx.db(T.versions).where({ dataset_id: dataset.id }).orderBy('number', 'desc').first('id')) as { id: string } | undefined)?.id ?? null;
        } else {
          base = ctx.body.base;
          if (base && !(await ctx.db(T.versions).where({ id: base, dataset_id: dataset.id }).first())) {
            throw new AiplatError('validation_failed', `Dataset ${dataset.name} has no version ${base}`, { field: 'base' });
          }
        }
        const ttl = configOf(ctx.plugin).commitTtlHours ?? 48;
        const [row] = (await ctx
          .db(T.commits)
          .insert({
            id: randomUUID(),
            dataset_id: dataset.id,
            team_id: dataset.team_id,
            base_id: base,
            message: ctx.body.message ?? '',
            source_kind: 'upload',
            created_by: ctx.user!.id,
            expires_at: new Date(Date.now() + ttl * 3600_000).toISOString(),
          })
          .returning('*')) as CommitRow[];
        ctx.auditInfo = { resource: { type: 'dataset', id: dataset.id }, team: dataset.team_id, details: { commit: row!.id } };
        return reply(201, toCommit(row!, []));
      },
    });

    env.route({
      method: 'GET',
      path: '/commits/:id',
      summary: 'An open commit with its staged changes',
      permission: 'datasets:write',
      params: idParams,
      handler: async (ctx) => {
        const commit = await commitOr404(ctx, ctx.params.id);
        return toCommit(commit, await commitChanges(ctx.db, commit.id));
      },
    });

    env.route({
      method: 'DELETE',
      path: '/commits/:id',
      summary: 'Abandon a commit; content only it staged is deleted',
      permission: 'datasets:write',
      params: idParams,
      handler: async (ctx) => {
        const commit = await commitOr404(ctx, ctx.params.id);
        const shas = (await commitChanges(ctx.db, commit.id)).flatMap((c) => (c.sha256 ? [c.sha256] : []));
        await ctx.db(T.commits).where({ id: commit.id }).delete();
        ctx.afterCommit(() => uploads?.dropForCommit(commit.id));
        collectAfter(ctx, ctx.plugin, shas);
      },
    });

    env.route({
      method: 'POST',
      path: '/commits/:id/files',
      summary: 'Stage content the platform already stores (by SHA-256), without uploading it again',
      permission: 'datasets:write',
      params: idParams,
      body: json({ type: 'object', required: ['path', 'sha256', 'size'], additionalProperties: false, properties: { path: pathSchema, sha256: sha256Schema, size: { type: 'integer', minimum: 0 } } }),
      handler: async (ctx) => {
        const commit = await commitOr404(ctx, ctx.params.id);
        const filePath = checkRelativePath(ctx.body.path);
        const sha256 = String(ctx.body.sha256).toLowerCase();
        const blob = (await ctx.db(T.blobs).where({ sha256 }).forUpdate().first()) as { size: number | string } | undefined;
        if (!blob || Number(blob.size) !== ctx.body.size) throw new AiplatError('not_found', `No stored content with sha256 ${sha256} and size ${ctx.body.size}: upload the file`, { sha256 });
        await stageChange(ctx.db, commit.id, { path: filePath, op: 'put', sha256, size: ctx.body.size });
        return toCommit(commit, await commitChanges(ctx.db, commit.id));
      },
    });

    env.route({
      method: 'PUT',
      path: '/commits/:id/files/content',
      summary: 'Upload one file in one request (for scripts; not resumable): the raw body is the content',
      permission: 'datasets:write',
      mutates: false,
      audit: 'explicit',
      params: idParams,
      query: { type: 'object', required: ['path'], properties: { path: pathSchema, sha256: sha256Schema } },
      body: raw({ stream: true, limit: 1024 ** 4, contentTypes: ['application/octet-stream'] }),
      handler: async (ctx) => {
        const plugin = ctx.plugin;
        const config = configOf(plugin);
        const commit = await commitOr404(ctx, ctx.params.id);
        const filePath = checkRelativePath(ctx.query.path);
        const limit = config.maxUploadMiB * 1024 * 1024;
        // Into storage under a temporary key (storage hashes while writing), then under its SHA-256.
        const temp = `incoming/${randomUUID()}`;
        const store = storeOf(plugin);
        const info = await store.put(temp, ctx.bodyStream!, { maxBytes: limit, expectedSha256: ctx.query.sha256?.toLowerCase() }).catch((err: unknown) => {
          if (err instanceof AiplatError && err.code === 'validation_failed' && ctx.query.sha256) {
            throw new AiplatError('unprocessable', `The checksum of ${filePath} does not match the sha256 you sent (${ctx.query.sha256}): nothing was stored`, { path: filePath });
          }
          throw err;
        });
        try {
          const local = await store.materialise(temp);
          const newBlob = await storeBlob(plugin, local, info.sha256, info.size);
          await stageChange(plugin.db, commit.id, { path: filePath, op: 'put', sha256: info.sha256, size: info.size, newBlob });
        } finally {
          await store.delete(temp).catch(() => undefined);
        }
        await ctx.audit('datasets:stage-file', { commit: commit.id, path: filePath, size: info.size, sha256: info.sha256 }, { resource: { type: 'dataset', id: commit.dataset_id }, team: commit.team_id });
        return toCommit(commit, await commitChanges(plugin.db, commit.id));
      },
    });

    env.route({
      method: 'DELETE',
      path: '/commits/:id/files',
      summary: "Remove a path from the new version (or unstage an upload when the base version does not have it)",
      permission: 'datasets:write',
      params: idParams,
      query: { type: 'object', required: ['path'], properties: { path: pathSchema } },
      handler: async (ctx) => {
        const commit = await commitOr404(ctx, ctx.params.id);
        const filePath = checkRelativePath(ctx.query.path);
        const staged = (await ctx.db(T.changes).where({ commit_id: commit.id, path: filePath }).first()) as { sha256: string | null } | undefined;
        const inBase = commit.base_id ? await ctx.db(T.files).where({ version_id: commit.base_id, path: filePath }).first() : undefined;
        if (inBase) await stageChange(ctx.db, commit.id, { path: filePath, op: 'delete' });
        else if (staged) await ctx.db(T.changes).where({ commit_id: commit.id, path: filePath }).delete();
        else throw new AiplatError('not_found', `Neither the base version nor this commit has a file ${filePath}`, { path: filePath });
        if (staged?.sha256) collectAfter(ctx, ctx.plugin, [staged.sha256]);
        return toCommit(commit, await commitChanges(ctx.db, commit.id));
      },
    });

    env.route({
      method: 'POST',
      path: '/commits/:id/finish',
      summary: 'Finish a commit: the new version appears, whole',
      permission: 'datasets:write',
      params: idParams,
      body: json({ type: 'object', additionalProperties: false, properties: { message: messageSchema } }),
      handler: async (ctx) => {
        const commit = await commitOr404(ctx, ctx.params.id);
        const { row, pruned } = await finishCommit(ctx.db, commit, ctx.body.message || commit.message);
        const dataset = (await ctx.db(T.datasets).where({ id: commit.dataset_id }).first()) as DatasetRow;
        ctx.auditInfo = { resource: { type: 'dataset-version', id: row.id }, team: dataset.team_id, details: { dataset: dataset.name, number: row.number, pruned: pruned.ids } };
        const plugin = ctx.plugin;
        collectAfter(ctx, plugin, pruned.shas);
        ctx.afterCommit(() => uploads?.dropForCommit(commit.id));
        ctx.afterCommit(() => announce(plugin, dataset, row));
        return reply(201, await toVersion(ctx.db, row));
      },
    });

    for (const route of uploadRoutes()) env.route(route);
  },

  async start(ctx) {
    const config = () => configOf(ctx);
    uploads = await createUploads(ctx, {
      maxBytes: () => config().maxUploadMiB * 1024 * 1024,
      expiryMs: () => config().commitTtlHours * 3600_000,
    });
    lineageOf(ctx)?.describeKind(DATASET_VERSION_NODE, { route: '/datasets/versions/{id}' });
    await sweep(ctx).catch((err: unknown) => ctx.logger.warn({ err }, 'the datasets sweep failed'));
    sweeper = setInterval(() => void sweep(ctx).catch((err: unknown) => ctx.logger.warn({ err }, 'the datasets sweep failed')), 15 * 60_000);
    sweeper.unref();
  },

  stop() {
    if (sweeper) clearInterval(sweeper);
    sweeper = undefined;
    uploads = undefined;
  },

  configChanged() {},
});

export { UPLOADS_PATH };
