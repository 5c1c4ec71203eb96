import { AiplatError, type RouteDefinition } from '@aiplat/plugin-sdk';
import type { Kernel, PluginStatus } from './kernel.js';

const idParams = {
  type: 'object',
  properties: { id: { type: 'string', minLength: 1, maxLength: 100 } },
};
const cascadeQuery = {
  type: 'object',
  properties: { cascade: { type: 'boolean', default: false, description: 'also disable enabled dependents (or enable disabled dependencies)' } },
};

const statusSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    version: { type: 'string' },
    state: { enum: ['enabled', 'disabled', 'failed'] },
    reason: { type: 'string' },
    dependencies: { type: 'array', items: { type: 'string' } },
    dependents: { type: 'array', items: { type: 'string' } },
  },
};

/** A plugin installed from a package: its version, the one before, who signed it, where it came from. */
export type InstalledFacts = Map<string, { version: string; previousVersion: string | null; signature: string; keyId: string | null; publisher: string | null; source: string; installedAt: string }>;

/** The run-time plugin admin API; `installed` tells which plugins came from packages (null for the repository's folders). */
export function pluginAdminRoutes(kernel: Kernel, installed: () => Promise<InstalledFacts> = async () => new Map()): RouteDefinition[] {
  const withInstalled = (status: PluginStatus, facts: InstalledFacts) => ({ ...status, installed: facts.get(status.id) ?? null });
  return [
    {
      method: 'GET',
      path: '/plugins',
      summary: 'List plugins with their state',
      tags: ['plugins'],
      permission: 'plugins:read',
      query: { type: 'object', properties: { state: { enum: ['enabled', 'disabled', 'failed'] } } },
      responses: { 200: { description: 'Plugins', schema: { type: 'object', properties: { items: { type: 'array', items: statusSchema }, nextCursor: { type: 'null' } } } } },
      handler: async (ctx) => {
        const facts = await installed();
        return {
          items: kernel
            .list()
            .filter((p) => !ctx.query.state || p.state === ctx.query.state)
            .map((p) => withInstalled(p, facts)),
          nextCursor: null,
        };
      },
    },
    {
      method: 'GET',
      path: '/plugins/:id',
      summary: 'One plugin, with its manifest (null when the manifest is invalid)',
      tags: ['plugins'],
      permission: 'plugins:read',
      params: idParams,
      responses: { 200: { description: 'The plugin', schema: { ...statusSchema, properties: { ...statusSchema.properties, manifest: { type: ['object', 'null'] } } } } },
      handler: async (ctx) => ({ ...withInstalled(kernel.status(ctx.params.id), await installed()), manifest: kernel.manifestOf(ctx.params.id) ?? null }),
    },
    {
      method: 'POST',
      path: '/plugins/:id/disable',
      auditResource: ({ params }) => ({ type: 'plugin', id: params.id }),
      summary: 'Disable a plugin at run time (409 while enabled plugins depend on it, unless cascade)',
      tags: ['plugins'],
      permission: 'plugins:manage',
      params: idParams,
      query: cascadeQuery,
      body: { mode: 'none' },
      handler: async (ctx) => {
        const ids = kernel.planDisable(ctx.params.id, ctx.query.cascade);
        await kernel.persist(ctx.db, ids.length > 0 ? ids : [ctx.params.id], false);
        ctx.auditInfo = { details: { changed: ids, cascade: ctx.query.cascade } };
        const response: { changed: string[]; items: unknown[] } = { changed: ids, items: [] };
        ctx.afterCommit(async () => {
          await kernel.applyDisable(ids);
          response.items = [ctx.params.id, ...ids.filter((i) => i !== ctx.params.id)].map((i) => kernel.status(i));
        });
        return response;
      },
    },
    {
      method: 'POST',
      path: '/plugins/:id/enable',
      auditResource: ({ params }) => ({ type: 'plugin', id: params.id }),
      summary: 'Enable a plugin at run time (409 while its dependencies are disabled, unless cascade)',
      tags: ['plugins'],
      permission: 'plugins:manage',
      params: idParams,
      query: cascadeQuery,
      body: { mode: 'none' },
      handler: async (ctx) => {
        const ids = kernel.planEnable(ctx.params.id, ctx.query.cascade);
        await kernel.persist(ctx.db, ids.length > 0 ? ids : [ctx.params.id], true);
        ctx.auditInfo = { details: { changed: ids, cascade: ctx.query.cascade } };
        const response: { changed: string[]; items: unknown[] } = { changed: ids, items: [] };
        ctx.afterCommit(async () => {
          await kernel.applyEnable(ids);
          response.items = [ctx.params.id, ...ids.filter((i) => i !== ctx.params.id)].map((i) => kernel.status(i));
          const failed = ids.map((i) => kernel.status(i)).find((s) => s.state === 'failed');
          if (failed) {
            throw new AiplatError('plugin_failed', `Plugin ${failed.id} did not start: ${failed.reason ?? 'unknown reason'}`, { id: failed.id, reason: failed.reason });
          }
        });
        return response;
      },
    },
  ];
}
