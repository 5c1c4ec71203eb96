import type { Knex } from 'knex';
import type { ExtensionPointRef, HookRef, HookRegistry, TapFn, TapOptions } from './hooks.js';
import type { PluginManifest } from './manifest.js';
import type { RouteDefinition } from './routes.js';
import type { Logger, PlatformInfo, ServiceRef } from './services.js';

/** A schema migration of a plugin's own tables (prefixed `p_<id>_`). Migrations run in name order, once. */
export interface PluginMigration {
  name: string;
  up(db: Knex): Promise<void>;
  down?(db: Knex): Promise<void>;
}

/**
 * What `register` may do. It only declares: nothing here touches the database,
 * the network or another plugin's state. The core collects the declarations, then starts the plugin.
 */
export interface PluginRegisterEnv {
  readonly id: string;
  readonly manifest: PluginManifest;
  /** Add a route under `/api/plugins/<id>/` (and under the plugin's manifest aliases). */
  route(route: RouteDefinition): void;
  /** Declare a hook this plugin owns, so others can tap it. */
  declareHook(ref: HookRef<any[], any>): void;
  /** Declare an extension point this plugin owns, so others can contribute to it. */
  declareExtensionPoint(ref: ExtensionPointRef<any>): void;
  /** Tap a hook owned by the core or by a plugin this plugin depends on. */
  tap<TArgs extends unknown[], TResult>(ref: HookRef<TArgs, TResult>, fn: NoInfer<TapFn<TArgs, TResult>>, options?: TapOptions): void;
  /** Contribute an implementation to an extension point owned by the core or a dependency. */
  contribute<T>(ref: ExtensionPointRef<T>, item: T): void;
  /** Provide a service other plugins (that depend on this one) can use. The factory runs at start. */
  provideService<T>(ref: ServiceRef<T>, factory: (ctx: PluginContext) => T | Promise<T>): void;
  /** Schema migrations of this plugin's tables. */
  migrations(list: PluginMigration[]): void;
}

/** What `start` and `stop` receive. */
export interface PluginContext<TConfig = Record<string, unknown>> {
  readonly id: string;
  readonly manifest: PluginManifest;
  readonly logger: Logger;
  /** The plugin's settings, validated against its manifest `config` schema, defaults applied. */
  readonly config: TConfig;
  /** The database for background work. Inside a request handler use `ctx.db` instead. */
  readonly db: Knex;
  readonly hooks: HookRegistry;
  readonly platform: PlatformInfo;
  /** A core service or a service provided by a dependency. Fails with a clear message if it is missing. */
  service<T>(ref: ServiceRef<T>): T;
}

export interface PluginDefinition<TConfig = Record<string, unknown>> {
  register(env: PluginRegisterEnv): void;
  start?(ctx: PluginContext<TConfig>): void | Promise<void>;
  stop?(ctx: PluginContext<TConfig>): void | Promise<void>;
  /** Called with the new settings when an administrator changes them; without it the plugin is restarted. */
  configChanged?(ctx: PluginContext<TConfig>): void | Promise<void>;
}

const PLUGIN_MARK = Symbol.for('aiplat.plugin');

export type DefinedPlugin<TConfig = Record<string, unknown>> = PluginDefinition<TConfig> & { readonly [PLUGIN_MARK]: true };

/** Define a plugin backend: the default export of the manifest's `backend.entry`. */
export function definePlugin<TConfig = Record<string, unknown>>(definition: PluginDefinition<TConfig>): DefinedPlugin<TConfig> {
  if (typeof definition?.register !== 'function') {
    throw new Error('definePlugin needs a register(env) function');
  }
  return Object.freeze({ ...definition, [PLUGIN_MARK]: true as const });
}

export function isDefinedPlugin(value: unknown): value is DefinedPlugin {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[PLUGIN_MARK] === true;
}
