/**
 * The static plugin manifest (`aiplat-plugin.json`): everything the core, the
 * marketplace and the web shell need to know about a plugin without running it.
 */

/** The one plugin API version of this SDK. Plugins declare a semver range against it in `engines.aiplat`. */
export const PLUGIN_API_VERSION = '1.0.0';

export const PLUGIN_ID_PATTERN = '^[a-z][a-z0-9-]{1,38}[a-z0-9]$';

export const MANIFEST_FILE = 'aiplat-plugin.json';

export interface LocalizedText {
  en: string;
  'zh-CN': string;
}

export interface PermissionDeclaration {
  /** `resource:action`, e.g. `greetings:write`. */
  id: string;
  title: LocalizedText;
  /** Roles that get this permission by default (`admin` always has every permission). */
  defaultRoles?: string[];
}

export interface WebContribution {
  /** Where the contribution goes: a navigation page, a dashboard widget, a settings panel. */
  kind: 'page' | 'widget' | 'settings';
  id: string;
  title: LocalizedText;
  /** The federated module exposed by the remote, e.g. `./Page`. */
  module: string;
  /** For pages: the route path under the shell, e.g. `/datasets`. */
  path?: string;
  icon?: string;
  /** Permission the user needs to see the contribution. */
  permission?: string;
  order?: number;
}

/** A JSON Schema object (draft 2020-12); `x-secret: true` marks a secret field. */
export type JsonSchema = Record<string, unknown>;

export interface PluginManifest {
  id: string;
  version: string;
  displayName: LocalizedText;
  description?: LocalizedText;
  engines: { aiplat: string };
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  permissions?: PermissionDeclaration[];
  backend?: { entry: string };
  web?: { remoteEntry: string; contributions?: WebContribution[] };
  http?: { aliases?: string[] };
  config?: JsonSchema;
  runtime?: Record<string, unknown>;
  icon?: string;
  categories?: string[];
  license?: string;
}

const localizedText = {
  type: 'object',
  required: ['en', 'zh-CN'],
  additionalProperties: false,
  properties: {
    en: { type: 'string', minLength: 1, maxLength: 400 },
    'zh-CN': { type: 'string', minLength: 1, maxLength: 400 },
  },
} as const;

const dependencyMap = {
  type: 'object',
  propertyNames: { pattern: PLUGIN_ID_PATTERN },
  additionalProperties: { type: 'string', minLength: 1 },
} as const;

/** JSON Schema of `aiplat-plugin.json`. The core validates every manifest against it before loading any code. */
export const manifestSchema = {
  $id: 'https://aiplat.dev/schemas/aiplat-plugin.json',
  type: 'object',
  required: ['id', 'version', 'displayName', 'engines'],
  additionalProperties: false,
  properties: {
    $schema: { type: 'string' },
    id: { type: 'string', pattern: PLUGIN_ID_PATTERN },
    version: {
      type: 'string',
      pattern: '^(0|[1-9]\\d*)\\.(0|[1-9]\\d*)\\.(0|[1-9]\\d*)(-[0-9A-Za-z.-]+)?(\\+[0-9A-Za-z.-]+)?$',
    },
    displayName: localizedText,
    description: localizedText,
    engines: {
      type: 'object',
      required: ['aiplat'],
      additionalProperties: false,
      properties: { aiplat: { type: 'string', minLength: 1 } },
    },
    dependencies: dependencyMap,
    optionalDependencies: dependencyMap,
    permissions: {
      type: 'array',
      items: {
        type: 'object',
        required: ['id', 'title'],
        additionalProperties: false,
        properties: {
          id: { type: 'string', pattern: '^[a-z][a-z0-9-]*(\\.[a-z][a-z0-9-]*)*:[a-z][a-z0-9-]*$' },
          title: localizedText,
          defaultRoles: { type: 'array', items: { type: 'string', minLength: 1 } },
        },
      },
    },
    backend: {
      type: 'object',
      required: ['entry'],
      additionalProperties: false,
      properties: { entry: { type: 'string', minLength: 1 } },
    },
    web: {
      type: 'object',
      required: ['remoteEntry'],
      additionalProperties: false,
      properties: {
        remoteEntry: { type: 'string', minLength: 1 },
        contributions: {
          type: 'array',
          items: {
            type: 'object',
            required: ['kind', 'id', 'title', 'module'],
            additionalProperties: false,
            properties: {
              kind: { enum: ['page', 'widget', 'settings'] },
              id: { type: 'string', minLength: 1 },
              title: localizedText,
              module: { type: 'string', minLength: 1 },
              path: { type: 'string', pattern: '^/' },
              icon: { type: 'string' },
              permission: { type: 'string' },
              order: { type: 'number' },
            },
          },
        },
      },
    },
    http: {
      type: 'object',
      additionalProperties: false,
      properties: {
        aliases: {
          type: 'array',
          items: { type: 'string', pattern: '^/[a-z0-9][a-z0-9-]*$' },
        },
      },
    },
    config: { type: 'object' },
    runtime: { type: 'object' },
    icon: { type: 'string' },
    categories: { type: 'array', items: { type: 'string' } },
    license: { type: 'string' },
  },
} as const;

/** The prefix of every table a plugin owns: `p_<id with - as _>_`. */
export function pluginTablePrefix(pluginId: string): string {
  return `p_${pluginId.replace(/-/g, '_')}_`;
}
