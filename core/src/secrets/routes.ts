import { AiplatError, json, type JsonSchema, type RouteDefinition } from '@aiplat/plugin-sdk';
import type { Kernel } from '../kernel/kernel.js';
import type { SecretSettings } from './store.js';

const idParams = {
  type: 'object',
  properties: { id: { type: 'string', minLength: 1, maxLength: 100 } },
};

const viewSchema = {
  type: 'object',
  properties: {
    values: { type: 'object', description: 'The settings, defaults applied; a set secret shows as "••••", an unset one is absent' },
    secrets: {
      type: 'object',
      description: 'Each x-secret field (dotted path) and whether it is set',
      additionalProperties: { type: 'object', properties: { set: { type: 'boolean' } } },
    },
    schema: { type: 'object', description: "The plugin manifest's config schema" },
  },
};

/** The manifest's settings schema; a plugin without a valid manifest has none to write. */
function schemaOf(kernel: Kernel, id: string): JsonSchema | undefined {
  const manifest = kernel.manifestOf(id);
  if (!manifest) {
    throw new AiplatError('plugin_failed', `Plugin ${id} has no valid manifest, so its settings cannot be read or written: ${kernel.status(id).reason ?? ''}`, { id });
  }
  return manifest.config;
}

/** `GET` and `PUT /api/v1/plugins/:id/config`: plugin settings, secrets write-only. */
export function pluginSettingsRoutes(kernel: Kernel, settings: SecretSettings): RouteDefinition[] {
  return [
    {
      method: 'GET',
      path: '/plugins/:id/config',
      summary: "A plugin's settings (secrets shown as \"••••\" when set) and its settings schema",
      tags: ['plugins'],
      permission: 'plugins:read',
      params: idParams,
      responses: { 200: { description: 'The settings', schema: viewSchema } },
      handler: (ctx) => settings.view(ctx.db, ctx.params.id, schemaOf(kernel, ctx.params.id)),
    },
    {
      method: 'PUT',
      path: '/plugins/:id/config',
      auditResource: ({ params }) => ({ type: 'plugin', id: params.id }),
      summary: "Replace a plugin's settings; the running plugin sees them without a restart of the core",
      description:
        'The body is the whole settings object, validated against the plugin\'s config schema. A secret field given as "••••" or left out keeps its stored value; null clears it.',
      tags: ['plugins'],
      permission: 'plugins:manage',
      params: idParams,
      audit: 'explicit',
      body: json({ type: 'object', additionalProperties: true }),
      responses: { 200: { description: 'The settings now stored', schema: viewSchema } },
      handler: async (ctx) => {
        const id = ctx.params.id;
        const wasFailed = kernel.status(id).state === 'failed';
        const change = await settings.write(ctx.db, id, schemaOf(kernel, id), ctx.body as Record<string, unknown>);
        await ctx.audit('core:PUT /plugins/:id/config', {
          plugin: id,
          changed: change.changed,
          secretsSet: change.secretsSet,
          secretsCleared: change.secretsCleared,
          values: change.view.values,
        }, { resource: { type: 'plugin', id } });
        ctx.afterCommit(async () => {
          await kernel.applyConfig(id);
          const status = kernel.status(id);
          if (status.state === 'failed' && !wasFailed) {
            throw new AiplatError('plugin_failed', `The settings were saved, but plugin ${id} did not restart with them: ${status.reason ?? 'unknown reason'}`, {
              id,
              reason: status.reason,
            });
          }
        });
        return change.view;
      },
    },
  ];
}
