/**
 * The models plugin: a model registry on the public SDK. Models (with a Markdown card) own versions;
 * a version holds files stored content-addressed (`blobs/<sha256>` in the plugin's storage), the
 * metadata read from those files, its source, its stage and metrics other plugins record.
 * See README.md for the API, the stages and the contract for other plugins.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { randomUUID } from 'node:crypto';
import {
  AiplatError,
  checkRelativePath,
  coreServices,
  definePlugin,
  json,
  multipart,
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
} from '@aiplat/plugin-sdk';
import { TRANSITIONS, modelsHooks, modelsService, type ModelStage, type ModelVersion, type ModelsService, type VersionSource } from '../api/index.js';
import { ModelMetadataError, inspectModelFolder, type ModelFolderInfo } from './metadata/index.js';
import {
  T,
  dropUnusedBlobs,
  fileRow,
  fileRows,
  folderFiles,
  inspect,
  insertVersion,
  lineageOf,
  listedFiles,
  loadVersion,
  migrations,
  recordMetrics,
  storeFiles,
  storeOf,
  summariseMetadata,
  toModel,
  versionSummary,
  type ModelRow,
  type VersionRow,
} from './store.js';
import { compareVersions } from './compare.js';

export interface ModelsConfig {
  importRoots: string[];
}

export { TRANSITIONS };

/** Most bytes per uploaded file, and files per upload (uploads are for small models; import the big ones). */
export const UPLOAD_FILE_LIMIT = 2 * 1024 ** 3;
export const UPLOAD_MAX_FILES = 64;

const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', minLength: 1, maxLength: 64 } } } as const;
const nameSchema = { type: 'string', minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' } as const;
const descriptionSchema = { type: 'string', maxLength: 2000 } as const;
const CARD_LIMIT = 1024 * 1024;

type Ctx = RouteContext<any, any, any>;

/** A model's versions, newest first. */
async function versionsOf(db: Knex, modelId: string): Promise<VersionRow[]> {
  return (await db(T.versions).where({ model_id: modelId }).orderBy('number', 'desc')) as VersionRow[];
}

/**
 * Models with their version count, newest version and production version, for lists: two queries
 * for the whole page.
 */
async function withVersionSummary(db: Knex, rows: ModelRow[]) {
  const ids = rows.map((r) => r.id);
  const versions = ids.length
    ? ((await db(T.versions).whereIn('model_id', ids).orderBy('number', 'desc').select('id', 'model_id', 'number', 'stage')) as Pick<VersionRow, 'id' | 'model_id' | 'number' | 'stage'>[])
    : [];
  return rows.map((r) => {
    const own = versions.filter((v) => v.model_id === r.id);
    const brief = (v: (typeof own)[number] | undefined) => (v ? { id: v.id, number: Number(v.number), stage: v.stage } : null);
    return { ...toModel(r), versionCount: own.length, latestVersion: brief(own[0]), productionVersion: brief(own.find((v) => v.stage === 'production')) };
  });
}

const modelOr404 = (ctx: Ctx, id: string, permission = 'models:read') => scopedOr404<ModelRow>(ctx, T.models, permission, { id }, `No model ${id}`);

/** A version and its model, when the caller may see the model. */
async function versionOr404(ctx: Ctx, id: string, permission = 'models:read'): Promise<{ version: VersionRow; model: ModelRow }> {
  const version = (await ctx.db(T.versions).where({ id }).first()) as VersionRow | undefined;
  const model = await scopedOr404<ModelRow>(ctx, T.models, permission, { id: version?.model_id ?? '' }, `No model version ${id}`, { id });
  return { version: version!, model };
}

/** Calls a hook after commit; a tap's throw is logged, not passed on. */
async function callHook<A>(plugin: PluginContext, hook: Parameters<PluginContext['hooks']['call']>[0], arg: A): Promise<void> {
  try {
    await (plugin.hooks.call as (h: unknown, a: A) => Promise<unknown>)(hook, arg);
  } catch (err) {
    plugin.logger.warn({ err, hook: hook.id }, 'a tap of a models hook failed');
  }
}

/** The real folder a request names, refused unless it lies under a configured import root. */
function importFolder(plugin: PluginContext, given: string): Promise<string> {
  return resolveUnderRoots(given, (plugin.config as unknown as ModelsConfig).importRoots ?? [], '"importRoots" of the models plugin');
}

/** 422 with the metadata reader's message: the folder is not a model we can register. */
function unprocessable(ctx: Ctx, err: ModelMetadataError) {
  return reply(422, { error: { code: 'unprocessable', message: err.message, details: { file: err.file }, requestId: ctx.requestId } });
}

function registerService(plugin: PluginContext): ModelsService {
  return {
    async registerVersion(input) {
      const model = (await plugin.db(T.models).where({ id: input.model }).first()) as ModelRow | undefined;
      if (!model) throw new AiplatError('not_found', `No model ${input.model}`, { id: input.model });
      checkSource(input.source);
      if (input.source.kind === 'optimisation' && input.source.ref && !(await plugin.db(T.versions).where({ id: input.source.ref }).first())) {
        throw new AiplatError('validation_failed', `The source version ${input.source.ref} does not exist`, { ref: input.source.ref });
      }
      let files;
      let metadata;
      if ('folder' in input.files) {
        const info = await inspect(input.files.folder);
        files = folderFiles(info);
        metadata = summariseMetadata(info);
      } else {
        files = await listedFiles(input.files.files);
        metadata = await metadataOfListed(files);
      }
      const written: string[] = [];
      let row: VersionRow;
      try {
        const stored = await storeFiles(storeOf(plugin), files, { written });
        row = await insertVersion(plugin.db, plugin, { model, files: stored, metadata, source: input.source, createdBy: input.createdBy ?? null });
      } catch (err) {
        await dropUnusedBlobs(plugin, written);
        throw err;
      }
      const version = await loadVersion(plugin.db, row);
      await callHook(plugin, modelsHooks.versionRegistered, { model: toModel(model), version });
      return version;
    },
    recordMetrics: (versionId, metrics, options) => recordMetrics(options?.db ?? plugin.db, versionId, metrics),
    async model(modelId, options) {
      const row = (await (options?.db ?? plugin.db)(T.models).where({ id: modelId }).first()) as ModelRow | undefined;
      return row ? toModel(row) : undefined;
    },
    async get(versionId, options) {
      const db = options?.db ?? plugin.db;
      const row = (await db(T.versions).where({ id: versionId }).first()) as VersionRow | undefined;
      return row ? loadVersion(db, row) : undefined;
    },
    async materialise(versionId, folder, options) {
      if (!(await plugin.db(T.versions).where({ id: versionId }).first())) throw new AiplatError('not_found', `No model version ${versionId}`, { id: versionId });
      const files = await fileRows(plugin.db, versionId);
      const store = storeOf(plugin);
      for (const f of files) {
        options?.signal?.throwIfAborted();
        const target = path.join(folder, ...checkRelativePath(f.path).split('/'));
        await mkdir(path.dirname(target), { recursive: true });
        await pipeline((await store.get(f.storage_key)).stream, createWriteStream(target), { signal: options?.signal });
      }
      return files.map((f) => ({ path: f.path, size: Number(f.size), sha256: f.sha256, kind: f.kind }));
    },
  };
}

function checkSource(source: VersionSource): void {
  if (!['upload', 'training', 'optimisation', 'import'].includes(source.kind)) {
    throw new AiplatError('validation_failed', `Unknown source kind ${JSON.stringify(source.kind)}: upload, training, optimisation or import`);
  }
}

/** Metadata for files named one by one: inspect them as a folder of links would be, best effort. */
async function metadataOfListed(files: { path: string; file: string; size: number; kind: string }[]) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'aiplat-models-list-'));
  try {
    const { symlink } = await import('node:fs/promises');
    for (const f of files) {
      await mkdir(path.dirname(path.join(dir, f.path)), { recursive: true });
      await symlink(path.resolve(f.file), path.join(dir, f.path));
    }
    const info = await inspectModelFolder(dir, { symlinkRoots: [...new Set(files.map((f) => path.dirname(path.resolve(f.file))))] }).catch((err: unknown) => {
      if (err instanceof ModelMetadataError) throw new AiplatError('bad_request', err.message.split(dir).join('<files>'));
      throw err;
    });
    return summariseMetadata(info);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export default definePlugin<ModelsConfig>({
  register(env) {
    env.declareHook(modelsHooks.versionRegistered);
    env.declareHook(modelsHooks.stageChanged);
    env.migrations(migrations());
    env.provideService(modelsService, (ctx) => registerService(ctx));

    // ---- models ----
    env.route({
      method: 'GET',
      path: '/models',
      summary: 'The models of your teams',
      permission: 'models:read',
      query: {
        type: 'object',
        properties: { q: { type: 'string', maxLength: 100 }, limit: { type: 'integer', minimum: 1, maximum: 500, default: 100 }, offset: { type: 'integer', minimum: 0, default: 0 } },
      },
      handler: async (ctx) => {
        let query = scoped(ctx, T.models, 'models:read');
        if (ctx.query.q) query = query.whereRaw('lower(name) like ?', [`%${String(ctx.query.q).toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`]);
        const rows = (await query.orderBy('name').limit(ctx.query.limit).offset(ctx.query.offset)) as ModelRow[];
        return { items: await withVersionSummary(ctx.db, rows) };
      },
    });

    env.route({
      method: 'POST',
      path: '/models',
      summary: 'Create a model',
      permission: 'models:write',
      body: json({
        type: 'object',
        required: ['name'],
        properties: { name: nameSchema, description: descriptionSchema, card: { type: 'string', maxLength: CARD_LIMIT }, team: { type: 'string', minLength: 1 } },
      }),
      handler: async (ctx) => {
        const owner = ownership(ctx, 'models:write', ctx.body.team);
        const clash = await ctx.db(T.models).where({ team_id: owner.team_id, name: ctx.body.name }).first();
        if (clash) throw new AiplatError('conflict', `Team ${owner.team_id} already has a model named ${ctx.body.name}`, { name: ctx.body.name });
        const [row] = (await ctx
          .db(T.models)
          .insert({ id: randomUUID(), name: ctx.body.name, description: ctx.body.description ?? '', card: ctx.body.card ?? '', ...owner })
          .returning('*')) as ModelRow[];
        ctx.auditInfo = { resource: { type: 'model', id: row!.id }, team: row!.team_id };
        return reply(201, toModel(row!));
      },
    });

    env.route({
      method: 'GET',
      path: '/models/:id',
      summary: 'A model with its card and its versions',
      permission: 'models:read',
      params: idParams,
      handler: async (ctx) => {
        const row = await modelOr404(ctx, ctx.params.id);
        const versions = await versionsOf(ctx.db, row.id);
        return { ...toModel(row), card: row.card, versions: versions.map(versionSummary) };
      },
    });

    env.route({
      method: 'PATCH',
      path: '/models/:id',
      summary: 'Rename a model or change its description',
      permission: 'models:write',
      params: idParams,
      body: json({ type: 'object', minProperties: 1, properties: { name: nameSchema, description: descriptionSchema } }),
      handler: async (ctx) => {
        const row = await modelOr404(ctx, ctx.params.id, 'models:write');
        if (ctx.body.name && ctx.body.name !== row.name) {
          const clash = await ctx.db(T.models).where({ team_id: row.team_id, name: ctx.body.name }).first();
          if (clash) throw new AiplatError('conflict', `Team ${row.team_id} already has a model named ${ctx.body.name}`, { name: ctx.body.name });
        }
        const [updated] = (await ctx
          .db(T.models)
          .where({ id: row.id })
          .update({ ...ctx.body, updated_at: new Date().toISOString() })
          .returning('*')) as ModelRow[];
        ctx.auditInfo = { resource: { type: 'model', id: row.id }, team: row.team_id };
        return toModel(updated!);
      },
    });

    env.route({
      method: 'DELETE',
      path: '/models/:id',
      summary: 'Delete a model and its versions (stored file content shared with other versions stays)',
      permission: 'models:write',
      params: idParams,
      handler: async (ctx) => {
        const row = await modelOr404(ctx, ctx.params.id, 'models:write');
        const production = await ctx.db(T.versions).where({ model_id: row.id, stage: 'production' }).first();
        if (production) throw new AiplatError('conflict', `Model ${row.name} has a version in production: archive it first`, { version: production.id });
        const versionIds = ((await ctx.db(T.versions).where({ model_id: row.id }).select('id')) as { id: string }[]).map((v) => v.id);
        const keys = versionIds.length ? ((await ctx.db(T.files).whereIn('version_id', versionIds).distinct('storage_key')) as { storage_key: string }[]).map((k) => k.storage_key) : [];
        await ctx.db(T.models).where({ id: row.id }).delete();
        ctx.auditInfo = { resource: { type: 'model', id: row.id }, team: row.team_id, details: { name: row.name, versions: versionIds.length } };
        // Blobs no other version uses go once the delete is durable.
        const db = ctx.plugin.db;
        const store = storeOf(ctx.plugin);
        ctx.afterCommit(async () => {
          for (const key of keys) {
            const used = await db(T.files).where({ storage_key: key }).first();
            if (!used) await store.delete(key);
          }
        });
      },
    });

    env.route({
      method: 'GET',
      path: '/models/:id/card',
      summary: "The model's card (Markdown)",
      permission: 'models:read',
      params: idParams,
      handler: async (ctx) => {
        const row = await modelOr404(ctx, ctx.params.id);
        return reply(200, row.card, { 'content-type': 'text/markdown; charset=utf-8' });
      },
    });

    env.route({
      method: 'PUT',
      path: '/models/:id/card',
      summary: "Replace the model's card (Markdown, text/markdown or text/plain, at most 1 MiB)",
      permission: 'models:write',
      params: idParams,
      body: raw({ limit: CARD_LIMIT, contentTypes: ['text/markdown', 'text/plain'] }),
      handler: async (ctx) => {
        const row = await modelOr404(ctx, ctx.params.id, 'models:write');
        const card = (ctx.body as Buffer).toString('utf8');
        await ctx.db(T.models).where({ id: row.id }).update({ card, updated_at: new Date().toISOString() });
        ctx.auditInfo = { resource: { type: 'model', id: row.id }, team: row.team_id, details: { bytes: (ctx.body as Buffer).length } };
      },
    });

    // ---- versions ----
    env.route({
      method: 'GET',
      path: '/models/:id/versions',
      summary: "A model's versions, newest first",
      permission: 'models:read',
      params: idParams,
      handler: async (ctx) => {
        const row = await modelOr404(ctx, ctx.params.id);
        const versions = await versionsOf(ctx.db, row.id);
        return { items: versions.map(versionSummary) };
      },
    });

    env.route({
      method: 'POST',
      path: '/models/:id/versions/import',
      summary: 'Import a Hugging Face-format folder (or a .gguf file) from the server disk as a new version, in the background',
      permission: 'models:write',
      params: idParams,
      body: json({ type: 'object', required: ['path'], properties: { path: { type: 'string', minLength: 1, maxLength: 4096 } } }),
      handler: async (ctx) => {
        const model = await modelOr404(ctx, ctx.params.id, 'models:write');
        if (!ctx.can('models:write', model.team_id)) throw new AiplatError('forbidden', `You do not hold "models:write" in team "${model.team_id}"`);
        const folder = await importFolder(ctx.plugin, ctx.body.path);
        let info: ModelFolderInfo;
        try {
          info = await inspectModelFolder(folder);
        } catch (err) {
          if (err instanceof ModelMetadataError) return unprocessable(ctx, err);
          throw err;
        }
        const plugin = ctx.plugin;
        const userId = ctx.user!.id;
        const source: VersionSource = { kind: 'import', ref: ctx.body.path };
        const op = await plugin.service(coreServices.operations).start(
          'models.import',
          async ({ signal, progress }) => {
            const written: string[] = [];
            let row: VersionRow;
            try {
              const stored = await storeFiles(storeOf(plugin), folderFiles(info), { signal, progress, written });
              signal.throwIfAborted();
              row = await insertVersion(plugin.db, plugin, { model, files: stored, metadata: summariseMetadata(info), source, createdBy: userId });
            } catch (err) {
              await dropUnusedBlobs(plugin, written); // cancelled or failed: leave no content behind
              throw err;
            }
            const version = await loadVersion(plugin.db, row);
            await callHook(plugin, modelsHooks.versionRegistered, { model: toModel(model), version });
            return { versionId: row.id, number: Number(row.number) };
          },
          { title: `Import ${model.name} from ${ctx.body.path}`, userId },
        );
        ctx.auditInfo = { resource: { type: 'model', id: model.id }, team: model.team_id, details: { operationId: op.id, files: info.files.length, bytes: info.sizes.totalBytes } };
        return reply(202, { operationId: op.id });
      },
    });

    env.route({
      method: 'POST',
      path: '/models/:id/versions',
      summary: 'Upload a small model as a new version: multipart/form-data, one file part per file, its filename the path in the version (a/b.json)',
      permission: 'models:write',
      params: idParams,
      body: multipart({ limit: UPLOAD_FILE_LIMIT, maxFiles: UPLOAD_MAX_FILES }),
      handler: async (ctx) => {
        const model = await modelOr404(ctx, ctx.params.id, 'models:write');
        if (!ctx.can('models:write', model.team_id)) throw new AiplatError('forbidden', `You do not hold "models:write" in team "${model.team_id}"`);
        const dir = await mkdtemp(path.join(os.tmpdir(), 'aiplat-models-upload-'));
        try {
          const seen = new Set<string>();
          // The multipart parser keeps only a file's base name: a field "path" just before a file part gives its path in the version (a/b.json).
          let nextPath: string | undefined;
          for await (const part of ctx.parts()) {
            if (part.kind === 'field') {
              if (part.name === 'path') nextPath = part.value;
              continue;
            }
            const given = nextPath ?? (part.filename || part.name);
            nextPath = undefined;
            let rel: string;
            try {
              rel = checkRelativePath(given);
            } catch (err) {
              part.stream.resume();
              throw err;
            }
            if (seen.has(rel)) {
              part.stream.resume();
              throw new AiplatError('validation_failed', `The file ${rel} is given twice`);
            }
            seen.add(rel);
            const target = path.join(dir, rel);
            await mkdir(path.dirname(target), { recursive: true });
            await pipeline(part.stream, createWriteStream(target));
          }
          if (seen.size === 0) throw new AiplatError('validation_failed', 'No file uploaded: send the model files as file parts');
          let info: ModelFolderInfo;
          try {
            info = await inspectModelFolder(dir);
          } catch (err) {
            if (err instanceof ModelMetadataError) {
              return unprocessable(ctx, new ModelMetadataError(err.message.split(dir).join('the upload'), err.file.split(dir).join('')));
            }
            throw err;
          }
          const stored = await storeFiles(storeOf(ctx.plugin), folderFiles(info));
          const row = await insertVersion(ctx.db, ctx.plugin, { model, files: stored, metadata: summariseMetadata(info), source: { kind: 'upload' }, createdBy: ctx.user!.id });
          const version = await loadVersion(ctx.db, row);
          ctx.auditInfo = { resource: { type: 'model-version', id: row.id }, team: model.team_id, details: { number: version.number, files: version.files.length } };
          const plugin = ctx.plugin;
          ctx.afterCommit(() => callHook(plugin, modelsHooks.versionRegistered, { model: toModel(model), version }));
          return reply(201, version);
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      },
    });

    env.route({
      method: 'GET',
      path: '/versions/:id',
      summary: 'A version: metadata, files, metrics, stage history and lineage link',
      permission: 'models:read',
      params: idParams,
      handler: async (ctx) => {
        const { version, model } = await versionOr404(ctx, ctx.params.id);
        const full = await loadVersion(ctx.db, version);
        const history = (await ctx.db(T.history).where({ version_id: version.id }).orderBy('id')) as {
          from_stage: string | null;
          to_stage: string;
          changed_by: string | null;
          changed_at: Date | string;
        }[];
        return {
          ...full,
          model: toModel(model),
          stageHistory: history.map((h) => ({ from: h.from_stage, to: h.to_stage, by: h.changed_by, at: new Date(h.changed_at).toISOString() })),
          lineage: lineageOf(ctx.plugin) ? { kind: 'models.version', id: version.id, graph: `/api/plugins/lineage/graph?kind=models.version&id=${version.id}` } : null,
        };
      },
    });

    env.route({
      method: 'GET',
      path: '/versions/:id/files/*path',
      summary: 'Download one file of a version',
      permission: 'models:read',
      handler: async (ctx) => {
        const id = String(ctx.params.id);
        const rawPath = Array.isArray(ctx.params.path) ? (ctx.params.path as string[]).join('/') : String(ctx.params.path ?? '');
        const { version } = await versionOr404(ctx, id);
        const file = await fileRow(ctx.db, version.id, rawPath);
        if (!file) throw new AiplatError('not_found', `Version ${id} has no file ${rawPath}`, { path: rawPath });
        const { info, stream } = await storeOf(ctx.plugin).get(file.storage_key);
        return reply(200, stream, {
          'content-type': 'application/octet-stream',
          'content-length': String(info.size),
          'content-disposition': `attachment; filename="${path.basename(file.path).replace(/[^A-Za-z0-9._-]/g, '_')}"`,
          etag: `"${file.sha256}"`,
        });
      },
    });

    env.route({
      method: 'GET',
      path: '/versions/:id/download',
      summary: 'Download a version as a tar archive (streamed)',
      permission: 'models:read',
      params: idParams,
      handler: async (ctx) => {
        const { version, model } = await versionOr404(ctx, ctx.params.id);
        const files = await fileRows(ctx.db, version.id);
        const store = storeOf(ctx.plugin);
        const prefix = `${model.name}-v${version.number}`;
        const entries = files.map((f) => ({ name: `${prefix}/${f.path}`, size: Number(f.size), open: async () => (await store.get(f.storage_key)).stream }));
        return tarReply(entries, prefix, (err) => ctx.plugin.logger.warn({ err, version: version.id }, 'the archive of a model version could not be written'));
      },
    });

    env.route({
      method: 'DELETE',
      path: '/versions/:id',
      summary: 'Delete a version that is not in production',
      permission: 'models:write',
      params: idParams,
      handler: async (ctx) => {
        const { version, model } = await versionOr404(ctx, ctx.params.id, 'models:write');
        if (version.stage === 'production') throw new AiplatError('conflict', 'The version is in production: archive it first');
        const keys = (await fileRows(ctx.db, version.id)).map((f) => f.storage_key);
        await ctx.db(T.versions).where({ id: version.id }).delete();
        ctx.auditInfo = { resource: { type: 'model-version', id: version.id }, team: model.team_id };
        const db = ctx.plugin.db;
        const store = storeOf(ctx.plugin);
        ctx.afterCommit(async () => {
          for (const key of new Set(keys)) if (!(await db(T.files).where({ storage_key: key }).first())) await store.delete(key);
        });
      },
    });

    env.route({
      method: 'POST',
      path: '/versions/:id/stage',
      summary: 'Move a version to another stage (models:promote); promoting to production archives the current production version',
      permission: 'models:promote',
      audit: 'explicit',
      params: idParams,
      body: json({
        type: 'object',
        required: ['to'],
        properties: { to: { type: 'string', enum: ['draft', 'staging', 'production', 'archived'] }, reason: { type: 'string', maxLength: 1000 } },
      }),
      handler: async (ctx) => {
        const { version, model } = await versionOr404(ctx, ctx.params.id);
        if (!ctx.can('models:promote', model.team_id)) throw new AiplatError('forbidden', `You do not hold "models:promote" in team "${model.team_id}"`);
        const from = version.stage;
        const to = ctx.body.to as ModelStage;
        if (!TRANSITIONS[from].includes(to)) {
          throw new AiplatError('conflict', `A version cannot go from ${from} to ${to}: from ${from} it may go to ${TRANSITIONS[from].join(' or ')}`, {
            from,
            to,
            allowed: TRANSITIONS[from],
          });
        }
        const userId = ctx.user!.id;
        const changes: { id: string; from: ModelStage; to: ModelStage; by: string }[] = [];
        if (to === 'production') {
          const current = (await ctx.db(T.versions).where({ model_id: model.id, stage: 'production' }).whereNot({ id: version.id })) as VersionRow[];
          for (const c of current) changes.push({ id: c.id, from: 'production', to: 'archived', by: 'models' });
        }
        changes.push({ id: version.id, from, to, by: userId });
        for (const c of changes) {
          const n = await ctx.db(T.versions).where({ id: c.id, stage: c.from }).update({ stage: c.to });
          if (n !== 1) throw new AiplatError('conflict', `Version ${c.id} changed stage meanwhile: try again`);
          const reason = c.id === version.id ? (ctx.body.reason ?? null) : `replaced in production by ${model.name} v${version.number}`;
          await ctx.db(T.history).insert({ version_id: c.id, from_stage: c.from, to_stage: c.to, changed_by: userId, reason });
          await ctx.audit('models:version.stage', { model: model.name, modelId: model.id, from: c.from, to: c.to, reason }, { resource: { type: 'model-version', id: c.id }, team: model.team_id });
        }
        const plugin = ctx.plugin;
        const db = plugin.db;
        ctx.afterCommit(async () => {
          for (const c of changes) {
            const row = (await db(T.versions).where({ id: c.id }).first()) as VersionRow | undefined;
            if (row) await callHook(plugin, modelsHooks.stageChanged, { model: toModel(model), version: await loadVersion(db, row), from: c.from, to: c.to, by: c.by });
          }
        });
        const updated = (await ctx.db(T.versions).where({ id: version.id }).first()) as VersionRow;
        return { ...versionSummary(updated), archived: changes.filter((c) => c.id !== version.id).map((c) => c.id) };
      },
    });

    env.route({
      method: 'POST',
      path: '/versions/:id/metrics',
      summary: 'Record evaluation or speed metrics of a version (a metric given again replaces its value)',
      permission: 'models:write',
      params: idParams,
      body: json({
        type: 'object',
        minProperties: 1,
        properties: {
          evaluation: { type: 'object', maxProperties: 200, additionalProperties: { type: 'number' } },
          speed: { type: 'object', maxProperties: 200, additionalProperties: { type: 'number' } },
        },
      }),
      handler: async (ctx) => {
        const { version, model } = await versionOr404(ctx, ctx.params.id, 'models:write');
        if (!ctx.can('models:write', model.team_id)) throw new AiplatError('forbidden', `You do not hold "models:write" in team "${model.team_id}"`);
        ctx.auditInfo = { resource: { type: 'model-version', id: version.id }, team: model.team_id };
        return recordMetrics(ctx.db, version.id, { ...ctx.body, recordedBy: `user:${ctx.user!.id}` });
      },
    });

    env.route({
      method: 'GET',
      path: '/compare',
      summary: 'Two to ten versions side by side: metadata, sizes, metrics, with differences flagged',
      permission: 'models:read',
      query: { type: 'object', required: ['versions'], properties: { versions: { type: 'string', minLength: 3, maxLength: 1000 } } },
      handler: async (ctx) => {
        const ids = [...new Set(String(ctx.query.versions).split(',').map((s) => s.trim()).filter(Boolean))];
        if (ids.length < 2 || ids.length > 10) throw new AiplatError('validation_failed', 'Name two to ten different versions: ?versions=a,b', { versions: ids });
        const versions: (ModelVersion & { model: string })[] = [];
        for (const id of ids) {
          const { version, model } = await versionOr404(ctx, id);
          versions.push({ ...(await loadVersion(ctx.db, version)), model: model.name });
        }
        return compareVersions(versions);
      },
    });
  },

  start(ctx) {
    lineageOf(ctx)?.describeKind('models.version', { route: '/models/versions/{id}' });
  },

  // Settings are read per request: nothing to restart.
  configChanged() {},
});

export type { Knex };
