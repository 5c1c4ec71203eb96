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

/** Kinds of UI contribution a plugin's remote makes to the web shell. */
export const WEB_CONTRIBUTION_KINDS = ['page', 'nav', 'dashboardWidget', 'tab', 'settings'] as const;
export type WebContributionKind = (typeof WEB_CONTRIBUTION_KINDS)[number];

/**
 * One thing a plugin adds to the web shell. The shell reads these from the manifest (through
 * `GET /api/v1/ui/remotes`) to build navigation and routes without loading the plugin's code; the
 * component behind a contribution comes from the remote's `defineUiPlugin({ components: { [id]: … } })`.
 *
 * - `page`: a routed page at `route` (e.g. `/hello`), rendered in the shell's layout.
 * - `nav`: a navigation entry to `route` (a shell route, or an absolute `https://` URL opened in a new tab); `target` names the navigation group.
 * - `dashboardWidget`: a card on the dashboard; `size` is `small` | `medium` | `large`.
 * - `tab`: a tab added to another page; `target` is that page's id (`core.plugin-details`, or a contribution id of another plugin).
 * - `settings`: a panel on the plugin's own settings page (beside the form generated from its config schema).
 */
export interface WebContribution {
  kind: WebContributionKind;
  /** Unique within the plugin; the key of its component in `defineUiPlugin({ components })`. */
  id: string;
  title: LocalizedText;
  /** For `page` and `nav`: the path under the shell, e.g. `/hello`. */
  route?: string;
  /** Icon name from @element-plus/icons-vue (e.g. `ChatDotRound`); the shell shows a default for unknown names. */
  icon?: string;
  /** Permission the user needs to see the contribution. */
  permission?: string;
  /** Where it goes: the navigation group for `nav`, the page id for `tab`. */
  target?: string;
  /** For `dashboardWidget`: its width on the dashboard grid. */
  size?: 'small' | 'medium' | 'large';
  /** Sort key among contributions of the same kind (lower first). */
  order?: number;
}

/** A JSON Schema object (draft 2020-12); `x-secret: true` marks a secret field. */
export type JsonSchema = Record<string, unknown>;

/**
 * What a plugin's workers need, travelling inside its package under `runtime/` so an install never
 * reaches a network: a Python wheelhouse (`pip install --no-index --find-links <wheelhouse>`), and
 * container images as tarballs `docker load` imports, with the image id they must load as.
 */
export interface PluginRuntime {
  python?: {
    /** The Python version the wheels are built for, e.g. `3.11`. */
    version?: string;
    /** A pinned requirements file inside the package (`runtime/requirements.lock`). */
    requirements?: string;
    /** A folder of wheels inside the package (`runtime/wheels`). */
    wheelhouse: string;
  };
  images?: {
    /** The reference workloads use, e.g. `local/vllm-cpu:0.6`. */
    name: string;
    /** The image id `docker load` must give: `sha256:<64 hex>`. */
    digest: string;
    /** The image tarball inside the package (`runtime/images/vllm-cpu.tar`). */
    tarball: string;
  }[];
}

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
  runtime?: PluginRuntime;
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
            required: ['kind', 'id', 'title'],
            additionalProperties: false,
            properties: {
              kind: { enum: [...WEB_CONTRIBUTION_KINDS] },
              id: { type: 'string', pattern: '^[a-z][a-z0-9-]{0,62}$' },
              title: localizedText,
              route: { type: 'string', pattern: '^(/[A-Za-z0-9._~:@!$&()*+,;=-]*)+$|^https?://' },
              icon: { type: 'string', pattern: '^[A-Z][A-Za-z0-9]*$' },
              permission: { type: 'string' },
              target: { type: 'string', minLength: 1 },
              size: { enum: ['small', 'medium', 'large'] },
              order: { type: 'number' },
            },
            allOf: [
              { if: { properties: { kind: { enum: ['page', 'nav'] } } }, then: { required: ['route'] } },
              { if: { properties: { kind: { const: 'tab' } } }, then: { required: ['target'] } },
            ],
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
    runtime: {
      type: 'object',
      additionalProperties: false,
      properties: {
        python: {
          type: 'object',
          additionalProperties: false,
          required: ['wheelhouse'],
          properties: {
            version: { type: 'string', pattern: '^[0-9]+\\.[0-9]+$' },
            requirements: { type: 'string', pattern: '^runtime/' },
            wheelhouse: { type: 'string', pattern: '^runtime/' },
          },
        },
        images: {
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['name', 'digest', 'tarball'],
            properties: {
              name: { type: 'string', minLength: 1, maxLength: 255 },
              digest: { type: 'string', pattern: '^sha256:[0-9a-f]{64}$' },
              tarball: { type: 'string', pattern: '^runtime/' },
            },
          },
        },
      },
    },
    icon: { type: 'string' },
    categories: { type: 'array', items: { type: 'string' } },
    license: { type: 'string' },
  },
} as const;

/** The prefix of every table a plugin owns: `p_<id with - as _>_`. */
export function pluginTablePrefix(pluginId: string): string {
  return `p_${pluginId.replace(/-/g, '_')}_`;
}

/** The module-federation container name of a plugin's UI remote: `aiplat_<id with - as _>`. */
export function remoteName(pluginId: string): string {
  return `aiplat_${pluginId.replace(/-/g, '_')}`;
}
