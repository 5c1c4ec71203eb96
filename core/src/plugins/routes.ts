import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import semver from 'semver';
import { AiplatError, PLUGIN_API_VERSION, type Operation, type RouteContext, type RouteDefinition } from '@aiplat/plugin-sdk';
import { SearchQueryError, compareVersionsNewestFirst, searchIndex, type IndexEntry, type IndexVersion } from '@aiplat/plugin-sdk/package';
import type { Kernel } from '../kernel/kernel.js';
import type { PluginInstaller, Requester } from './installer.js';
import { operationSchema } from '../operations/routes.js';

const idPattern = '^[a-z][a-z0-9-]{1,38}[a-z0-9]$';
const idParams = { type: 'object', properties: { id: { type: 'string', pattern: idPattern } } };
const versionField = { type: 'string', minLength: 1, maxLength: 100, description: 'a semver version or range (default: the newest that works with this core)' };
const sourceField = { type: 'string', minLength: 1, maxLength: 2000, description: "one of the core's registries (default: the first that has the plugin)" };
const operationReply = { 202: { description: 'The operation that does it (progress on the operations topic)', schema: { type: 'object', properties: { operation: operationSchema } } } };

function requester(ctx: RouteContext<unknown, unknown, unknown>): Requester {
  return { ...(ctx.user ? { principal: ctx.user } : {}), requestId: ctx.requestId, ip: ctx.ip };
}

const compatible = (v: IndexVersion) => semver.validRange(v.engines?.aiplat) !== null && semver.satisfies(PLUGIN_API_VERSION, v.engines.aiplat, { includePrerelease: true });

/** Start an operation once the request's transaction has committed, answering 202 with it. */
function accepted(ctx: RouteContext<unknown, unknown, unknown>, start: () => Promise<Operation>) {
  const body: { operation: Operation | null } = { operation: null };
  ctx.afterCommit(async () => {
    body.operation = await start();
  });
  return { __aiplatReply: true as const, status: 202, body };
}

/** The marketplace and the install API (docs/adr/0010). */
export function pluginPackageRoutes(kernel: Kernel, installer: PluginInstaller): RouteDefinition[] {
  /** Every source's plugins, the first source holding an id winning. */
  const merged = async (fresh = false) => {
    const indexes = await installer.indexes(fresh);
    const byId = new Map<string, { entry: IndexEntry; source: string }>();
    for (const { source, entries } of indexes) for (const entry of entries) if (!byId.has(entry.id)) byId.set(entry.id, { entry, source: source.location });
    return { byId, indexes };
  };
  const installedState = (id: string) => (kernel.has(id) ? { version: kernel.status(id).version, state: kernel.status(id).state } : null);
  const newerCompatible = (entry: IndexEntry, installed: string | undefined) => {
    if (!installed || !semver.valid(installed)) return null;
    const best = [...entry.versions].sort((a, b) => compareVersionsNewestFirst(a.version, b.version)).find((v) => compatible(v) && semver.prerelease(v.version) === null);
    return best && semver.gt(best.version, installed) ? best.version : null;
  };

  return [
    {
      method: 'GET',
      path: '/marketplace/plugins',
      summary: "Search the registries' plugins, with what is installed here and updates",
      tags: ['plugins'],
      permission: 'plugins:read',
      query: {
        type: 'object',
        properties: {
          q: { type: 'string', maxLength: 200 },
          category: { type: 'string', maxLength: 100 },
          limit: { type: 'integer', minimum: 1, maximum: 100, default: 24 },
          cursor: { type: 'string', maxLength: 200 },
        },
      },
      handler: async (ctx) => {
        const { byId, indexes } = await merged();
        const query = ctx.query as { q?: string; category?: string; limit: number; cursor?: string };
        let result;
        try {
          result = searchIndex(
            [...byId.values()].map((v) => v.entry),
            { ...(query.q ? { q: query.q } : {}), ...(query.category ? { category: query.category } : {}), limit: query.limit, ...(query.cursor ? { cursor: query.cursor } : {}) },
          );
        } catch (error) {
          if (error instanceof SearchQueryError) throw new AiplatError('validation_failed', error.message);
          throw error;
        }
        return {
          items: result.items.map((hit) => {
            const { entry, source } = byId.get(hit.id)!;
            const release = [...entry.versions].sort((a, b) => compareVersionsNewestFirst(a.version, b.version)).find(compatible);
            const installed = installedState(hit.id);
            return {
              id: hit.id,
              displayName: hit.displayName,
              description: hit.description,
              categories: hit.categories,
              publisher: hit.publisher ?? null,
              latest: hit.latest,
              compatibleVersion: release?.version ?? null,
              signed: (release ?? hit.release).signed,
              source,
              installed,
              updateAvailable: newerCompatible(entry, installed?.version),
            };
          }),
          nextCursor: result.nextCursor,
          sources: indexes.map(({ source, entries, error }) => ({ name: source.location, location: source.location, ok: !error, plugins: entries.length, ...(error ? { error } : {}) })),
        };
      },
    },
    {
      method: 'GET',
      path: '/marketplace/updates',
      summary: 'Installed plugins with a newer compatible version in a registry',
      tags: ['plugins'],
      permission: 'plugins:read',
      handler: async () => {
        // Read the registries now: an update published a moment ago shows at once.
        const { byId } = await merged(true);
        const items = [];
        for (const status of kernel.list()) {
          const found = byId.get(status.id);
          const latest = found && status.installed ? newerCompatible(found.entry, status.version) : null;
          if (latest) items.push({ id: status.id, installed: status.version, latest, source: found!.source });
        }
        return { items };
      },
    },
    {
      method: 'GET',
      path: '/marketplace/plugins/:id',
      summary: 'One plugin of the registries: versions, manifest, README, changelog, compatibility',
      tags: ['plugins'],
      permission: 'plugins:read',
      params: idParams,
      query: { type: 'object', properties: { version: { type: 'string', maxLength: 100 }, source: sourceField } },
      handler: async (ctx) => {
        const { byId } = await merged();
        const query = ctx.query as { version?: string; source?: string };
        let found = byId.get(ctx.params.id);
        if (query.source) {
          const index = (await installer.indexes()).find((i) => i.source.location === query.source);
          if (!index) throw new AiplatError('validation_failed', `"${query.source}" is not one of this core's registries`);
          const entry = index.entries.find((e) => e.id === ctx.params.id);
          found = entry ? { entry, source: index.source.location } : undefined;
        }
        if (!found) throw new AiplatError('not_found', `No registry has a plugin "${ctx.params.id}"`, { id: ctx.params.id });
        const { entry, source } = found;
        const versions = [...entry.versions].sort((a, b) => compareVersionsNewestFirst(a.version, b.version));
        const chosen = query.version ? versions.find((v) => v.version === query.version) : (versions.find(compatible) ?? versions[0]);
        if (!chosen) throw new AiplatError('version_not_found', `${entry.id} has no version ${query.version ?? ''}`.trim(), { id: entry.id, version: query.version });
        const registry = installer.sources.find((s) => s.location === source)!;
        const [manifest, readme, changelog] = await Promise.all([
          registry.manifest(entry.id, chosen.version),
          registry.text(entry.id, chosen.version, 'README.md'),
          registry.text(entry.id, chosen.version, 'CHANGELOG.md'),
        ]);
        const ok = compatible(chosen);
        const installedInfo = (await installer.installed()).get(entry.id) ?? null;
        const installed = installedState(entry.id);
        return {
          id: entry.id,
          source,
          version: chosen.version,
          versions: versions.map((v) => ({ ...v, compatible: compatible(v) })),
          manifest,
          readme,
          changelog,
          compatible: ok,
          compatibility: ok
            ? `${entry.id} ${chosen.version} works with this core (plugin API ${PLUGIN_API_VERSION} is within ${chosen.engines.aiplat})`
            : `${entry.id} ${chosen.version} needs plugin API ${chosen.engines.aiplat}; this core has ${PLUGIN_API_VERSION}`,
          installed: installed ? { ...installed, previousVersion: installedInfo?.previousVersion ?? null, signature: installedInfo?.signature ?? null, publisher: installedInfo?.publisher ?? null, keyId: installedInfo?.keyId ?? null, installedAt: installedInfo?.installedAt ?? null, fromPackage: installedInfo !== null } : null,
          updateAvailable: newerCompatible(entry, installed?.version),
        };
      },
    },
    {
      method: 'POST',
      path: '/plugins/install',
      summary: 'Install a plugin (and the plugins it needs) from a registry, without a restart',
      tags: ['plugins'],
      permission: 'plugins:manage',
      auditResource: ({ body }) => ({ type: 'plugin', id: (body as { id?: string } | undefined)?.id }),
      body: {
        mode: 'json',
        schema: { type: 'object', additionalProperties: false, required: ['id'], properties: { id: { type: 'string', pattern: idPattern }, version: versionField, source: sourceField } },
      },
      responses: operationReply,
      handler: (ctx) => {
        const body = ctx.body as { id: string; version?: string; source?: string };
        if (body.version !== undefined && semver.validRange(body.version) === null) throw new AiplatError('validation_failed', `version "${body.version}" is not a semver version or range`);
        if (kernel.has(body.id)) throw new AiplatError('plugin_exists', `Plugin "${body.id}" is already installed (${kernel.status(body.id).version}); upgrade it instead`, { id: body.id });
        return accepted(ctx, () => installer.install(requester(ctx), body));
      },
    },
    {
      method: 'POST',
      path: '/plugins/upload',
      summary: 'Install a plugin from an uploaded package file (.tgz); what it needs comes from the registries',
      tags: ['plugins'],
      permission: 'plugins:manage',
      body: { mode: 'raw', stream: true, limit: installer.maxUploadBytes, contentTypes: ['application/gzip', 'application/x-gzip', 'application/octet-stream'] },
      responses: operationReply,
      handler: async (ctx) => {
        const file = await installer.tempFile();
        try {
          await pipeline(ctx.bodyStream!, createWriteStream(file));
        } catch (error) {
          await rm(file, { force: true });
          throw error;
        }
        ctx.auditInfo = { resource: { type: 'plugin' }, details: { upload: true } };
        return accepted(ctx, async () => {
          try {
            return await installer.installUpload(requester(ctx), file);
          } catch (error) {
            await rm(file, { force: true });
            throw error;
          }
        });
      },
    },
    {
      method: 'POST',
      path: '/plugins/:id/upgrade',
      summary: 'Move an installed plugin to another version from a registry; its data is kept and migrated forward',
      tags: ['plugins'],
      permission: 'plugins:manage',
      auditResource: ({ params }) => ({ type: 'plugin', id: params.id }),
      params: idParams,
      body: { mode: 'json', schema: { type: 'object', additionalProperties: false, properties: { version: versionField, source: sourceField } } },
      responses: operationReply,
      handler: (ctx) => {
        const body = ctx.body as { version?: string; source?: string };
        if (!kernel.has(ctx.params.id)) throw new AiplatError('plugin_not_found', `No plugin "${ctx.params.id}" is installed`, { id: ctx.params.id });
        if (body.version !== undefined && semver.validRange(body.version) === null) throw new AiplatError('validation_failed', `version "${body.version}" is not a semver version or range`);
        return accepted(ctx, () => installer.upgrade(requester(ctx), ctx.params.id, body));
      },
    },
    {
      method: 'POST',
      path: '/plugins/:id/rollback',
      summary: 'Return an installed plugin to the version installed before; migrations the newer version added are undone',
      tags: ['plugins'],
      permission: 'plugins:manage',
      auditResource: ({ params }) => ({ type: 'plugin', id: params.id }),
      params: idParams,
      body: { mode: 'json', schema: { type: 'object', additionalProperties: false, properties: {} } },
      responses: operationReply,
      handler: (ctx) => {
        if (!kernel.has(ctx.params.id)) throw new AiplatError('plugin_not_found', `No plugin "${ctx.params.id}" is installed`, { id: ctx.params.id });
        return accepted(ctx, () => installer.rollback(requester(ctx), ctx.params.id));
      },
    },
    {
      method: 'POST',
      path: '/plugins/:id/uninstall',
      summary: 'Stop and remove an installed plugin; keepData keeps its tables and settings for a later install',
      tags: ['plugins'],
      permission: 'plugins:manage',
      auditResource: ({ params }) => ({ type: 'plugin', id: params.id }),
      params: idParams,
      body: { mode: 'json', schema: { type: 'object', additionalProperties: false, required: ['keepData'], properties: { keepData: { type: 'boolean' } } } },
      responses: operationReply,
      handler: (ctx) => {
        if (!kernel.has(ctx.params.id)) throw new AiplatError('plugin_not_found', `No plugin "${ctx.params.id}" is installed`, { id: ctx.params.id });
        const { keepData } = ctx.body as { keepData: boolean };
        return accepted(ctx, () => installer.uninstall(requester(ctx), ctx.params.id, keepData));
      },
    },
    {
      method: 'GET',
      path: '/plugins/unsigned-allowlist',
      summary: 'Plugins an administrator allowed to install without a trusted signature',
      tags: ['plugins'],
      permission: 'plugins:read',
      handler: async (ctx) => {
        const rows = (await ctx.db('plugin_unsigned_allowlist as a').leftJoin('users as u', 'u.id', 'a.created_by').select('a.*', 'u.username').orderBy('a.plugin_id')) as {
          plugin_id: string;
          note: string | null;
          created_by: string | null;
          username: string | null;
          created_at: Date;
        }[];
        return {
          items: rows.map((r) => ({ pluginId: r.plugin_id, note: r.note, createdBy: r.created_by, createdByName: r.username, createdAt: new Date(r.created_at).toISOString() })),
          nextCursor: null,
        };
      },
    },
    {
      method: 'POST',
      path: '/plugins/unsigned-allowlist',
      summary: 'Allow a plugin id to install without a trusted signature (its checksums are still checked)',
      tags: ['plugins'],
      permission: 'plugins:manage',
      auditResource: ({ body }) => ({ type: 'plugin', id: (body as { pluginId?: string } | undefined)?.pluginId }),
      body: {
        mode: 'json',
        schema: { type: 'object', additionalProperties: false, required: ['pluginId'], properties: { pluginId: { type: 'string', pattern: idPattern }, note: { type: 'string', maxLength: 500 } } },
      },
      handler: async (ctx) => {
        const body = ctx.body as { pluginId: string; note?: string };
        await ctx.db('plugin_unsigned_allowlist')
          .insert({ plugin_id: body.pluginId, note: body.note ?? null, created_by: ctx.user?.id ?? null })
          .onConflict('plugin_id')
          .merge(['note']);
        return { __aiplatReply: true as const, status: 201, body: { pluginId: body.pluginId, note: body.note ?? null } };
      },
    },
    {
      method: 'DELETE',
      path: '/plugins/unsigned-allowlist/:id',
      summary: 'Stop allowing a plugin id unsigned (what is installed keeps running)',
      tags: ['plugins'],
      permission: 'plugins:manage',
      auditResource: ({ params }) => ({ type: 'plugin', id: params.id }),
      params: idParams,
      handler: async (ctx) => {
        const removed = await ctx.db('plugin_unsigned_allowlist').where({ plugin_id: ctx.params.id }).delete();
        if (removed === 0) throw new AiplatError('not_found', `"${ctx.params.id}" is not in the unsigned allow-list`, { id: ctx.params.id });
        return { __aiplatReply: true as const, status: 204 };
      },
    },
    {
      method: 'GET',
      path: '/plugins/trusted-keys',
      summary: "The publisher keys whose signed packages this core installs (AIPLAT_TRUSTED_KEYS), and its registries",
      tags: ['plugins'],
      permission: 'plugins:read',
      handler: () => ({ items: installer.trustedKeys, registries: installer.sources.map((s) => s.location) }),
    },
  ];
}
