import { remoteName, type LocalizedText, type Principal, type RouteDefinition, type WebContribution } from '@aiplat/plugin-sdk';
import type { Kernel } from '../kernel/kernel.js';
import { remoteDir } from './static.js';

export interface UiRemote {
  pluginId: string;
  version: string;
  displayName: LocalizedText;
  /** The federation container name (`aiplat_<id with _>`). */
  name: string;
  /** URL path of the remote's entry, with PUBLIC_URL's prefix and the version as a cache key. */
  entry: string;
  contributions: WebContribution[];
}

const localized = { type: 'object', properties: { en: { type: 'string' }, 'zh-CN': { type: 'string' } } };
const remoteSchema = {
  type: 'object',
  properties: {
    pluginId: { type: 'string' },
    version: { type: 'string' },
    displayName: localized,
    name: { type: 'string', description: 'module-federation container name' },
    entry: { type: 'string', description: 'URL path of remoteEntry.js' },
    contributions: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          kind: { enum: ['page', 'nav', 'dashboardWidget', 'tab', 'settings'] },
          id: { type: 'string' },
          title: localized,
          route: { type: 'string' },
          icon: { type: 'string' },
          permission: { type: 'string' },
          target: { type: 'string' },
          size: { type: 'string' },
          order: { type: 'number' },
        },
      },
    },
  },
};

/** The UI remotes of the enabled plugins, with the contributions this caller may see. */
export function uiRemotes(kernel: Kernel, principal: Principal, can: (p: Principal, permission: string) => boolean, basePath: string): UiRemote[] {
  const remotes: UiRemote[] = [];
  for (const status of kernel.list()) {
    const manifest = kernel.manifestOf(status.id);
    if (!manifest?.web || !remoteDir(kernel, status.id)) continue;
    const file = manifest.web.remoteEntry.split('/').pop()!;
    remotes.push({
      pluginId: status.id,
      version: manifest.version,
      displayName: manifest.displayName,
      name: remoteName(status.id),
      entry: `${basePath}/_remotes/${status.id}/${file}?v=${encodeURIComponent(manifest.version)}`,
      contributions: (manifest.web.contributions ?? [])
        .filter((c) => !c.permission || can(principal, c.permission))
        .sort((a, b) => (a.order ?? 0) - (b.order ?? 0)),
    });
  }
  return remotes;
}

/** `GET /api/v1/ui/remotes`: what the shell loads at run time. */
export function uiRoutes(kernel: Kernel, can: (p: Principal, permission: string) => boolean, basePath: string): RouteDefinition[] {
  return [
    {
      method: 'GET',
      path: '/ui/remotes',
      summary: "The enabled plugins' UI remotes and the contributions (pages, navigation, widgets, tabs, settings) the caller may see",
      tags: ['ui'],
      permission: 'self:read',
      responses: { 200: { description: 'Remotes', schema: { type: 'object', properties: { items: { type: 'array', items: remoteSchema }, nextCursor: { type: 'null' } } } } },
      handler: (ctx) => ({ items: uiRemotes(kernel, ctx.user!, can, basePath), nextCursor: null }),
    },
  ];
}
