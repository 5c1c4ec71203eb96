import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Knex } from 'knex';
import Router from '@koa/router';
import compose from 'koa-compose';
import type { Middleware } from 'koa';
import type { DependencyContainer } from 'tsyringe';
import {
  AiplatError,
  coreHooks,
  coreServices,
  isDefinedPlugin,
  pluginTablePrefix,
  type DefinedPlugin,
  type Logger,
  type PlatformInfo,
  type PluginContext,
  type PluginManifest,
  type PluginMigration,
  type PluginRegisterEnv,
  type RouteDefinition,
  type ServiceRef,
} from '@aiplat/plugin-sdk';
import semver from 'semver';
import { discoverPlugins, readManifest, type DiscoveredPlugin } from './manifest.js';
import { dependentsClosure, planStartOrder } from './order.js';
import type { KernelHooks } from './hooks.js';
import { compileRouteWays, isExactPath, type RequestState, type RouteRuntime } from '../http/route-contract.js';
import type { DirectLookup, DirectRoute } from '../http/direct.js';
import { configValidator } from '../http/validation.js';
import { migrationSource } from '../db/migrations.js';

export type PluginState = 'enabled' | 'disabled' | 'failed';

export interface PluginStatus {
  id: string;
  version: string;
  displayName?: PluginManifest['displayName'];
  state: PluginState;
  reason?: string;
  dependencies: string[];
  optionalDependencies: string[];
  dependents: string[];
  aliases: string[];
  source: string;
  /** Installed from a package (upgrade, rollback and uninstall apply), not found in a plugin folder. */
  installed: boolean;
}

interface PluginRecord {
  found: DiscoveredPlugin;
  id: string;
  manifest?: PluginManifest;
  state: PluginState;
  reason?: string;
  /** Failures found before any code ran (manifest, order) are final until the files change. */
  staticFailure: boolean;
  definition?: DefinedPlugin;
  routes: RouteDefinition[];
  migrations: PluginMigration[];
  services: { ref: ServiceRef<unknown>; factory: (ctx: PluginContext) => unknown }[];
  router?: Middleware<RequestState>;
  aliasRouters: Map<string, Middleware<RequestState>>;
  /** Data-plane routes for the direct path, by prefix (`/api/plugins/<id>` and each alias), then `METHOD /path`. */
  direct: Map<string, Map<string, DirectRoute>>;
  mountedAliases: string[];
  context?: PluginContext;
  registered: boolean;
  migrated: boolean;
  /** Bumped at each load: taps of an earlier load (before an upgrade or rollback) pass through. */
  generation: number;
  installed: boolean;
}

/** Path prefixes the core keeps for itself; a plugin alias may not take them. */
const RESERVED_PREFIXES = ['/api', '/metrics', '/_remotes', '/assets', '/health', '/login'];

/** Where plugin settings live; the secrets service decrypts `x-secret` fields on read. */
export interface PluginSettingsStore {
  /** The stored settings of a plugin (secrets in clear), before schema defaults. */
  read(pluginId: string): Promise<Record<string, unknown>>;
}

export interface KernelOptions {
  pluginDirs: string[];
  settings: PluginSettingsStore;
  /** Services scoped to one plugin (its storage namespace, its event topics, ...), by service-ref id. */
  scopedServices?: (pluginId: string) => Record<string, unknown>;
  /** Told about every plugin state change (the `plugins` topic). */
  onStateChange?: (status: PluginStatus) => void;
  db: Knex;
  logger: Logger;
  hooks: KernelHooks;
  container: DependencyContainer;
  platform: PlatformInfo;
  routeRuntime: RouteRuntime;
  corePermissions: ReadonlySet<string>;
}

/**
 * The plugin kernel: discovery, manifest checks, start order, register → start → stop, and
 * enable / disable at run time. A failing plugin is marked failed with its reason; the core and
 * the other plugins keep running.
 */
export class Kernel {
  private readonly plugins = new Map<string, PluginRecord>();
  private order: string[] = [];
  private readonly aliases = new Map<string, string>();
  private queue: Promise<unknown> = Promise.resolve();
  /** State changes are announced once boot is over (boot's result is the initial list). */
  private booted = false;

  constructor(private readonly options: KernelOptions) {}

  isActive = (id: string): boolean => id === 'core' || this.plugins.get(id)?.state === 'enabled';

  /**
   * Discover, order, register every plugin and start those that are enabled. `installedDirs`:
   * folders of plugins installed from packages (verified by the installer), one plugin each.
   */
  async boot(installedDirs: string[] = []): Promise<void> {
    const installed = new Set(installedDirs);
    const found = discoverPlugins([...this.options.pluginDirs, ...installed]);
    for (const plugin of found) {
      this.plugins.set(plugin.id, newRecord(plugin, installed.has(plugin.dir)));
    }
    const valid = [...this.plugins.values()].filter((p) => p.manifest);
    const plan = planStartOrder(
      valid.map((p) => ({
        id: p.id,
        version: p.manifest!.version,
        requires: p.manifest!.dependencies ?? {},
        optional: p.manifest!.optionalDependencies ?? {},
      })),
    );
    for (const [id, reason] of plan.failed) this.fail(this.plugins.get(id)!, reason, true);
    this.order = plan.order;

    if (this.order.length > 0) {
      await this.options.db('plugin_states')
        .insert(this.order.map((id) => ({ id, enabled: true })))
        .onConflict('id')
        .ignore();
    }
    const stored = new Map(
      (await this.options.db('plugin_states').select('id', 'enabled')).map((row: { id: string; enabled: boolean }) => [row.id, row.enabled]),
    );
    for (const id of this.order) {
      const record = this.plugins.get(id)!;
      const blocked = this.requires(id).find((dep) => this.plugins.get(dep)?.state === 'failed');
      if (blocked) {
        this.fail(record, `depends on failed plugin "${blocked}"`, false);
        continue;
      }
      if (!(await this.load(record))) continue;
      if (stored.get(id) === false) {
        record.state = 'disabled';
        record.reason = 'disabled by an administrator';
        continue;
      }
      const disabledDep = this.requires(id).find((dep) => this.plugins.get(dep)?.state !== 'enabled');
      if (disabledDep) {
        record.state = 'disabled';
        record.reason = `needs "${disabledDep}", which is not enabled`;
        continue;
      }
      await this.start(record);
    }
    for (const record of this.plugins.values()) {
      if (record.state === 'failed') this.options.logger.error({ plugin: record.id, reason: record.reason }, 'plugin failed');
    }
    this.booted = true;
  }

  private requires(id: string): string[] {
    return Object.keys(this.plugins.get(id)?.manifest?.dependencies ?? {});
  }

  private fail(record: PluginRecord, reason: string, staticFailure: boolean): void {
    record.state = 'failed';
    record.reason = reason;
    record.staticFailure = staticFailure;
    this.changed(record);
  }

  private changed(record: PluginRecord): void {
    if (this.booted) this.options.onStateChange?.(this.status(record.id));
  }

  /** Import the backend and collect its declarations. */
  private async load(record: PluginRecord): Promise<boolean> {
    if (record.registered) return true;
    const manifest = record.manifest!;
    let definition: DefinedPlugin | undefined;
    if (manifest.backend) {
      const entry = path.resolve(record.found.dir, manifest.backend.entry);
      try {
        const mod = (await import(pathToFileURL(entry).href)) as { default?: unknown };
        if (!isDefinedPlugin(mod.default)) {
          this.fail(record, `${manifest.backend.entry} must export default definePlugin({ register(env) { ... } })`, true);
          return false;
        }
        definition = mod.default;
      } catch (error) {
        this.fail(record, `${manifest.backend.entry} failed to load: ${(error as Error).message}`, true);
        return false;
      }
    }
    record.definition = definition;
    const generation = ++record.generation;
    const isCurrent = () => record.generation === generation;
    const declared = { hooks: [] as string[], points: [] as string[] };
    const allowedOwners = new Set(['core', record.id, ...this.requires(record.id), ...Object.keys(manifest.optionalDependencies ?? {})]);
    const hooks = this.options.hooks;
    const checkOwner = (refId: string) => {
      const owner = hooks.hookOwner(refId);
      if (owner && !allowedOwners.has(owner)) {
        throw new Error(`"${refId}" belongs to plugin ${owner}; add it to "dependencies" in aiplat-plugin.json`);
      }
    };
    // Tapping a hook of an optional dependency that is not installed is a no-op, not an error.
    const absentOptional = (refId: string) => {
      const owner = refId.split('.')[0]!;
      return !hooks.has({ id: refId }) && owner in (manifest.optionalDependencies ?? {}) && !this.plugins.get(owner)?.registered;
    };
    const env: PluginRegisterEnv = {
      id: record.id,
      manifest,
      route: (route) => void record.routes.push(route),
      declareHook: (ref) => {
        if (!ref.id.startsWith(`${record.id}.`)) throw new Error(`hook "${ref.id}" must be named "${record.id}.<name>"`);
        hooks.declareHook(ref, record.id);
        declared.hooks.push(ref.id);
      },
      declareExtensionPoint: (ref) => {
        if (!ref.id.startsWith(`${record.id}.`)) throw new Error(`extension point "${ref.id}" must be named "${record.id}.<name>"`);
        hooks.declareExtensionPoint(ref, record.id);
        declared.points.push(ref.id);
      },
      tap: (ref, fn, options) => {
        checkOwner(ref.id);
        if (absentOptional(ref.id)) return;
        hooks.tap(ref, record.id, fn, options, isCurrent);
      },
      contribute: (ref, item) => {
        checkOwner(ref.id);
        if (absentOptional(ref.id)) return;
        hooks.contribute(ref, record.id, item, isCurrent);
      },
      provideService: (ref, factory) => {
        if (!ref.id.startsWith(`${record.id}.`)) throw new Error(`service "${ref.id}" must be named "${record.id}.<name>"`);
        record.services.push({ ref, factory: factory as (ctx: PluginContext) => unknown });
      },
      migrations: (list) => void record.migrations.push(...list),
    };
    try {
      for (const permission of manifest.permissions ?? []) {
        const holder = this.options.corePermissions.has(permission.id)
          ? 'the core'
          : [...this.plugins.values()].find((p) => p !== record && p.registered && p.manifest?.permissions?.some((q) => q.id === permission.id))?.id;
        if (holder) throw new Error(`permission "${permission.id}" is already declared by ${holder}; name plugin permissions after the plugin's resources`);
      }
      definition?.register(env);
      const permissions = new Set([
        ...this.options.corePermissions,
        ...(manifest.permissions ?? []).map((p) => p.id),
        ...this.requires(record.id).flatMap((dep) => (this.plugins.get(dep)?.manifest?.permissions ?? []).map((p) => p.id)),
      ]);
      const compiled = record.routes.map((route) => {
        const ways = compileRouteWays(route, { id: record.id, permissions, context: () => record.context }, this.options.routeRuntime);
        return { method: route.method, path: route.path, middleware: ways.middleware, direct: ways.direct };
      });
      const prefixes = [`/api/plugins/${record.id}`, ...(manifest.http?.aliases ?? [])];
      record.router = routerMiddleware(prefixes[0]!, compiled);
      for (const alias of prefixes.slice(1)) record.aliasRouters.set(alias, routerMiddleware(alias, compiled));
      record.direct = new Map();
      for (const prefix of prefixes) {
        const table = new Map<string, DirectRoute>();
        for (const route of compiled) if (route.direct) table.set(`${route.method} ${route.path}`, { template: `${prefix}${route.path}`, plugin: record.id, serve: route.direct });
        if (table.size > 0) record.direct.set(prefix, table);
      }
    } catch (error) {
      this.fail(record, `register failed: ${(error as Error).message}`, true);
      return false;
    }
    record.registered = true;
    return true;
  }

  private context(record: PluginRecord, config: Record<string, unknown>): PluginContext {
    const logger = this.options.logger.child({ plugin: record.id });
    const child = this.options.container.createChildContainer();
    child.register(coreServices.logger.id, { useValue: logger });
    for (const [id, value] of Object.entries(this.options.scopedServices?.(record.id) ?? {})) child.register(id, { useValue: value });
    const allowed = new Set([...this.requires(record.id), ...Object.keys(record.manifest?.optionalDependencies ?? {}), record.id]);
    return {
      id: record.id,
      manifest: record.manifest!,
      logger,
      config,
      db: this.options.db,
      hooks: this.options.hooks,
      platform: this.options.platform,
      service: <T>(ref: ServiceRef<T>): T => {
        const owner = ref.id.split('.')[0]!;
        if (owner !== 'core' && !allowed.has(owner)) {
          throw new AiplatError('internal', `plugin ${record.id} uses service "${ref.id}" without depending on plugin ${owner}`);
        }
        if (owner !== 'core' && !this.isActive(owner)) {
          throw new AiplatError('unavailable', `service "${ref.id}" is unavailable: plugin ${owner} is not enabled`);
        }
        if (!child.isRegistered(ref.id, true)) throw new AiplatError('internal', `service "${ref.id}" is not provided by anyone`);
        return child.resolve<T>(ref.id);
      },
    };
  }

  private async readConfig(record: PluginRecord): Promise<Record<string, unknown>> {
    const stored = await this.options.settings.read(record.id);
    const schema = record.manifest?.config ?? { type: 'object' };
    const result = configValidator(schema)(stored);
    if (!result.ok) throw new Error(`its settings do not match its config schema: ${result.message}`);
    return result.value;
  }

  private async migrate(record: PluginRecord): Promise<void> {
    if (record.migrated || record.migrations.length === 0) {
      record.migrated = true;
      return;
    }
    const db = this.options.db;
    const prefix = pluginTablePrefix(record.id);
    const tables = async () =>
      new Set(
        (await db('information_schema.tables').where({ table_schema: 'public' }).select('table_name')).map(
          (r: { table_name: string }) => r.table_name,
        ),
      );
    const before = await tables();
    // An installed plugin may run on a schema a newer version migrated (an older version installed
    // over it, or a rollback past migrations without down()): applied migrations it does not know are allowed.
    await db.migrate.latest({ migrationSource: migrationSource(record.migrations), tableName: `${prefix}migrations`, disableMigrationsListValidation: record.installed });
    const stray = [...(await tables())].filter((t) => !before.has(t) && !t.startsWith(prefix));
    if (stray.length > 0) throw new Error(`its migrations created tables without the prefix "${prefix}": ${stray.join(', ')}`);
    record.migrated = true;
  }

  /** Run migrations and start; a throw marks the plugin failed and leaves everything else running. */
  private async start(record: PluginRecord): Promise<boolean> {
    try {
      const config = await this.readConfig(record);
      await this.migrate(record);
      const ctx = this.context(record, config);
      record.context = ctx;
      for (const { ref, factory } of record.services) {
        const value = await factory(ctx);
        this.options.container.register(ref.id, { useValue: value });
      }
      await record.definition?.start?.(ctx);
    } catch (error) {
      this.fail(record, `start failed: ${(error as Error).message}`, false);
      this.options.logger.error({ plugin: record.id, err: error }, 'plugin failed to start');
      return false;
    }
    record.state = 'enabled';
    record.reason = undefined;
    this.mountAliases(record);
    this.changed(record);
    await this.options.hooks.call(coreHooks.pluginStarted, { id: record.id, version: record.manifest!.version });
    this.options.logger.info({ plugin: record.id, version: record.manifest!.version }, 'plugin started');
    return true;
  }

  private async stop(record: PluginRecord, reason: string): Promise<void> {
    if (record.state !== 'enabled') return;
    record.state = 'disabled';
    record.reason = reason;
    this.unmountAliases(record);
    this.changed(record);
    try {
      await record.definition?.stop?.(record.context!);
    } catch (error) {
      this.options.logger.error({ plugin: record.id, err: error }, 'plugin stop failed');
    }
    await this.options.hooks.call(coreHooks.pluginStopped, { id: record.id, version: record.manifest!.version });
    this.options.logger.info({ plugin: record.id }, 'plugin stopped');
  }

  private mountAliases(record: PluginRecord): void {
    const conflicts: string[] = [];
    for (const alias of record.aliasRouters.keys()) {
      const reserved = RESERVED_PREFIXES.find((p) => alias === p || alias.startsWith(`${p}/`));
      const holder = this.aliases.get(alias);
      if (reserved) conflicts.push(`alias ${alias} is reserved by the core`);
      else if (holder && holder !== record.id) conflicts.push(`alias ${alias} is already claimed by ${holder}`);
      else {
        this.aliases.set(alias, record.id);
        record.mountedAliases.push(alias);
      }
    }
    if (conflicts.length > 0) {
      record.reason = `${conflicts.join('; ')} (not mounted)`;
      this.options.logger.warn({ plugin: record.id, conflicts }, 'plugin aliases not mounted');
    }
  }

  private unmountAliases(record: PluginRecord): void {
    for (const alias of record.mountedAliases) if (this.aliases.get(alias) === record.id) this.aliases.delete(alias);
    record.mountedAliases = [];
  }

  /** Serialize lifecycle changes: one enable/disable at a time. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Whether a plugin with this id was discovered. */
  has(id: string): boolean {
    return this.plugins.has(id);
  }

  /** The folder a discovered plugin was loaded from (undefined for an unknown id). */
  dirOf(id: string): string | undefined {
    return this.plugins.get(id)?.found.dir;
  }

  private get(id: string): PluginRecord {
    const record = this.plugins.get(id);
    if (!record) throw new AiplatError('plugin_not_found', `No plugin "${id}" is installed`, { id });
    return record;
  }

  private enabledDependents(id: string): string[] {
    const all = [...this.plugins.keys()];
    return dependentsClosure(id, (other) => this.requires(other), all).filter((d) => this.plugins.get(d)?.state === 'enabled');
  }

  private dependencyClosure(id: string): string[] {
    const result: string[] = [];
    const visit = (target: string) => {
      for (const dep of this.requires(target)) {
        if (!result.includes(dep)) {
          visit(dep);
          result.push(dep);
        }
      }
    };
    visit(id);
    return result;
  }

  /**
   * Plan a disable: the plugins to stop, dependents first. Without cascade, enabled dependents
   * make it a 409 that names them.
   */
  planDisable(id: string, cascade: boolean): string[] {
    const record = this.get(id);
    const dependents = this.enabledDependents(id);
    if (dependents.length > 0 && !cascade) {
      throw new AiplatError(
        'plugin_has_dependents',
        `Cannot disable ${id}: enabled plugins depend on it: ${dependents.join(', ')}. Disable them first or use ?cascade=true`,
        { id, dependents },
      );
    }
    return [...dependents, ...(record.state === 'enabled' ? [id] : [])];
  }

  /** Plan an enable: the plugins to start, dependencies first. */
  planEnable(id: string, cascade: boolean): string[] {
    const record = this.get(id);
    if (record.state === 'failed' && record.staticFailure) {
      throw new AiplatError('plugin_failed', `Cannot enable ${id}: ${record.reason ?? 'it failed to load'}`, { id, reason: record.reason });
    }
    const deps = this.dependencyClosure(id).filter((d) => this.plugins.get(d)?.state !== 'enabled');
    const unusable = deps.filter((d) => this.plugins.get(d)?.staticFailure);
    if (unusable.length > 0) {
      throw new AiplatError('plugin_dependencies_disabled', `Cannot enable ${id}: its dependencies failed to load: ${unusable.join(', ')}`, { id, dependencies: unusable });
    }
    if (deps.length > 0 && !cascade) {
      throw new AiplatError(
        'plugin_dependencies_disabled',
        `Cannot enable ${id}: it needs ${deps.join(', ')}, which ${deps.length === 1 ? 'is' : 'are'} not enabled. Enable ${deps.length === 1 ? 'it' : 'them'} first or use ?cascade=true`,
        { id, dependencies: deps },
      );
    }
    return [...deps, ...(record.state === 'enabled' ? [] : [id])];
  }

  /** Record the wanted state in the caller's transaction (the request's, so it commits with its audit row). */
  async persist(db: Knex, ids: string[], enabled: boolean): Promise<void> {
    for (const id of ids) {
      await db('plugin_states')
        .insert({ id, enabled, updated_at: db.fn.now() })
        .onConflict('id')
        .merge(['enabled', 'updated_at']);
    }
  }

  /** Stop the planned plugins (dependents first). Runs outside any request transaction. */
  applyDisable(ids: string[]): Promise<void> {
    return this.exclusive(async () => {
      for (const id of ids) await this.stop(this.get(id), 'disabled by an administrator');
    });
  }

  /** Start the planned plugins (dependencies first); a failure stops the chain at that plugin. */
  applyEnable(ids: string[]): Promise<void> {
    return this.exclusive(async () => {
      for (const id of ids) {
        const record = this.get(id);
        if (record.state === 'enabled') continue;
        if (!(await this.load(record)) || !(await this.start(record))) break;
      }
    });
  }

  /**
   * Hand a running plugin its changed settings (after they are committed): `configChanged(ctx)`
   * with a context holding the new settings when the plugin defines it, otherwise a restart of
   * that plugin alone (its dependents keep running). A throw in `configChanged` falls back to the
   * restart. A plugin that is not running picks the settings up at its next start.
   */
  applyConfig(id: string): Promise<void> {
    return this.exclusive(async () => {
      const record = this.get(id);
      if (record.state !== 'enabled') return;
      const configChanged = record.definition?.configChanged;
      if (configChanged && record.context) {
        try {
          const ctx: PluginContext = { ...record.context, config: await this.readConfig(record) };
          // Requests from now on see the new settings through `ctx.plugin`.
          record.context = ctx;
          await configChanged(ctx);
          this.options.logger.info({ plugin: id }, 'plugin settings changed');
          return;
        } catch (error) {
          this.options.logger.error({ plugin: id, err: error }, 'plugin configChanged failed: restarting the plugin');
        }
      }
      await this.stop(record, 'restarting with new settings');
      await this.start(record);
    });
  }

  // --- installs at run time (core/src/plugins/installer.ts drives these) ---------------------

  /** Why a plugin with this manifest cannot run next to the others: a dependency missing, too old or too new, or not enabled. */
  dependencyProblem(manifest: PluginManifest): AiplatError | undefined {
    for (const [dep, range] of Object.entries(manifest.dependencies ?? {})) {
      const other = this.plugins.get(dep);
      if (!other?.manifest) {
        return new AiplatError('plugin_dependency_missing', `${manifest.id} ${manifest.version} needs plugin "${dep}" ${range}, which is not installed`, { id: manifest.id, dependency: dep, range });
      }
      if (!semver.satisfies(other.manifest.version, range, { includePrerelease: true })) {
        return new AiplatError('plugin_incompatible', `${manifest.id} ${manifest.version} needs plugin "${dep}" ${range}, but ${dep} ${other.manifest.version} is installed`, { id: manifest.id, dependency: dep, range, installed: other.manifest.version });
      }
      if (other.state !== 'enabled') {
        return new AiplatError('plugin_dependencies_disabled', `${manifest.id} needs plugin "${dep}", which is ${other.state}: enable it first`, { id: manifest.id, dependencies: [dep] });
      }
    }
    // The plugins that depend on this id must accept this version.
    for (const other of this.plugins.values()) {
      const range = other.manifest?.dependencies?.[manifest.id];
      if (other.id !== manifest.id && range && !semver.satisfies(manifest.version, range, { includePrerelease: true })) {
        return new AiplatError('plugin_incompatible', `plugin "${other.id}" needs ${manifest.id} ${range}, which ${manifest.version} is not`, { id: manifest.id, dependent: other.id, range });
      }
    }
    return undefined;
  }

  private readInstalled(dir: string, expectedId?: string): DiscoveredPlugin & { manifest: PluginManifest } {
    const found = readManifest(dir);
    if (found.problem || !found.manifest) throw new AiplatError('package_invalid', found.problem ?? 'the manifest is not valid', { id: found.id });
    if (expectedId && found.id !== expectedId) throw new AiplatError('package_invalid', `the package is plugin "${found.id}", not "${expectedId}"`, { id: found.id });
    return found as DiscoveredPlugin & { manifest: PluginManifest };
  }

  /** Point a record at another folder (another version); nothing of the earlier load stays. */
  private retarget(record: PluginRecord, found: DiscoveredPlugin): void {
    Object.assign(record, {
      found,
      manifest: found.manifest,
      state: 'disabled',
      reason: undefined,
      staticFailure: false,
      definition: undefined,
      routes: [],
      migrations: [],
      services: [],
      router: undefined,
      aliasRouters: new Map(),
      direct: new Map(),
      mountedAliases: [],
      context: undefined,
      registered: false,
      migrated: false,
    } satisfies Partial<PluginRecord>);
  }

  /** The migrations the loaded version of a plugin declares (names, and whether each can be undone). */
  migrationsOf(id: string): { name: string; reversible: boolean }[] {
    return this.get(id).migrations.map((m) => ({ name: m.name, reversible: typeof m.down === 'function' }));
  }

  /**
   * Add a plugin installed from a package (its folder is extracted and verified): load, migrate,
   * start. On failure nothing of it stays registered and the error names the cause.
   */
  addPlugin(dir: string): Promise<PluginStatus> {
    return this.exclusive(async () => {
      const found = this.readInstalled(dir);
      if (this.plugins.has(found.id)) throw new AiplatError('plugin_exists', `Plugin "${found.id}" is already installed (${this.status(found.id).version}); upgrade it instead`, { id: found.id });
      const problem = this.dependencyProblem(found.manifest);
      if (problem) throw problem;
      const record = newRecord(found, true);
      this.plugins.set(record.id, record);
      this.order.push(record.id);
      if (!(await this.load(record)) || !(await this.start(record))) {
        const reason = record.reason ?? 'unknown reason';
        this.forget(record.id);
        throw new AiplatError('plugin_failed', `${record.id} ${found.version} did not start: ${reason}`, { id: record.id, reason });
      }
      await this.options.db('plugin_states').insert({ id: record.id, enabled: true }).onConflict('id').merge(['enabled']);
      return this.status(record.id);
    });
  }

  private forget(id: string): void {
    this.plugins.delete(id);
    this.order = this.order.filter((other) => other !== id);
  }

  /**
   * Run another version of an installed plugin (an upgrade, or a rollback with `down`: the
   * migrations of the running version to undo first, newest first). A plugin that was disabled
   * stays disabled. When the new version fails to start, the one before runs again.
   */
  replacePlugin(id: string, dir: string, options: { down?: string[] } = {}): Promise<PluginStatus> {
    return this.exclusive(async () => {
      const record = this.get(id);
      if (!record.installed) throw new AiplatError('plugin_not_installed', `Plugin "${id}" comes from ${record.found.dir}, not from a package`, { id });
      const found = this.readInstalled(dir, id);
      const problem = this.dependencyProblem(found.manifest);
      if (problem) throw problem;
      // Refuse before anything stops: a migration to undo that cannot be undone.
      if (options.down && options.down.length > 0) this.checkReversible(record, options.down);
      const before = { found: record.found, wasEnabled: record.state === 'enabled', version: record.manifest?.version, migrations: new Set(record.migrations.map((m) => m.name)) };
      await this.stop(record, `replaced by ${found.version}`);
      if (options.down && options.down.length > 0) await this.migrateDown(record, options.down);
      this.retarget(record, found);
      const loaded = await this.load(record);
      if (loaded && (!before.wasEnabled || (await this.start(record)))) {
        if (!before.wasEnabled) record.reason = 'disabled by an administrator';
        this.changed(record);
        return this.status(id);
      }
      const reason = record.reason ?? 'unknown reason';
      // Back to the version that ran: undo what the new version's migrations added when they can be undone.
      const added = record.migrated ? record.migrations.filter((m) => !before.migrations.has(m.name)) : [];
      let undone = '';
      if (added.length > 0 && added.every((m) => m.down)) {
        try {
          await this.migrateDown(record, added.map((m) => m.name));
          undone = ` (its migrations ${added.map((m) => m.name).join(', ')} were undone)`;
        } catch (error) {
          undone = ` (undoing its migrations failed: ${(error as Error).message}; they stay applied)`;
        }
      } else if (added.length > 0) {
        undone = ` (its migrations ${added.map((m) => m.name).join(', ')} stay applied: they have no down())`;
      }
      this.retarget(record, before.found);
      const restored = (await this.load(record)) && (!before.wasEnabled || (await this.start(record)));
      const now = restored ? `${before.version ?? 'the earlier version'} runs again${undone}` : `${before.version ?? 'the earlier version'} did not start again either: ${record.reason ?? 'unknown reason'}`;
      throw new AiplatError('plugin_failed', `${id} ${found.version} did not start: ${reason}; ${now}`, { id, reason, restored });
    });
  }

  private checkReversible(record: PluginRecord, names: string[]): void {
    const byName = new Map(record.migrations.map((m) => [m.name, m]));
    const missing = names.filter((n) => !byName.get(n)?.down);
    if (missing.length > 0) {
      throw new AiplatError(
        'plugin_incompatible',
        `cannot undo migration${missing.length > 1 ? 's' : ''} ${missing.join(', ')} of ${record.id} ${record.manifest?.version ?? ''}: ${missing.length > 1 ? 'they have' : 'it has'} no down(); nothing was changed`,
        { id: record.id, migrations: missing },
      );
    }
  }

  private async migrateDown(record: PluginRecord, names: string[]): Promise<void> {
    this.checkReversible(record, names);
    const prefix = pluginTablePrefix(record.id);
    for (const name of [...names].sort().reverse()) {
      await this.options.db.migrate.down({ migrationSource: migrationSource(record.migrations), tableName: `${prefix}migrations`, name, disableMigrationsListValidation: true });
    }
  }

  /**
   * Stop and remove an installed plugin. `dropData` also drops its `p_<id>_` tables and its
   * stored settings; otherwise they stay for a later install.
   */
  removePlugin(id: string, options: { dropData: boolean }): Promise<void> {
    return this.exclusive(async () => {
      const record = this.get(id);
      if (!record.installed) throw new AiplatError('plugin_not_installed', `Plugin "${id}" comes from ${record.found.dir}, not from a package: disable it instead`, { id });
      const dependents = [...this.plugins.values()].filter((p) => p.id !== id && p.manifest?.dependencies?.[id]).map((p) => p.id);
      if (dependents.length > 0) {
        throw new AiplatError('plugin_has_dependents', `Cannot uninstall ${id}: ${dependents.join(', ')} depend${dependents.length === 1 ? 's' : ''} on it. Uninstall ${dependents.length === 1 ? 'it' : 'them'} first`, { id, dependents });
      }
      await this.stop(record, 'uninstalled');
      this.changed(Object.assign(record, { state: 'disabled' as const, reason: 'uninstalled' }));
      this.forget(id);
      if (options.dropData) {
        const db = this.options.db;
        const prefix = pluginTablePrefix(id);
        // Another plugin's prefix may start with this one's (p_a_ and p_a_b_): leave its tables alone.
        const others = [...this.plugins.keys()].map(pluginTablePrefix).filter((p) => p.length > prefix.length && p.startsWith(prefix));
        const tables = (await db('information_schema.tables').where({ table_schema: 'public' }).select('table_name'))
          .map((r: { table_name: string }) => r.table_name)
          .filter((t: string) => t.startsWith(prefix) && !others.some((o) => t.startsWith(o)));
        for (const table of tables) await db.schema.dropTableIfExists(table);
        await db('plugin_states').where({ id }).delete();
      }
    });
  }

  /** Stop everything, dependents before their dependencies. */
  async stopAll(): Promise<void> {
    await this.exclusive(async () => {
      for (const id of [...this.order].reverse()) {
        const record = this.plugins.get(id);
        if (record) await this.stop(record, 'core shutting down');
      }
    });
  }

  /** The plugin's manifest (404 for an unknown plugin; undefined when its manifest is invalid). */
  manifestOf(id: string): PluginManifest | undefined {
    return this.get(id).manifest;
  }

  status(id: string): PluginStatus {
    const record = this.get(id);
    const manifest = record.manifest;
    return {
      id: record.id,
      version: manifest?.version ?? record.found.version,
      displayName: manifest?.displayName,
      state: record.state,
      ...(record.reason ? { reason: record.reason } : {}),
      dependencies: Object.keys(manifest?.dependencies ?? {}),
      optionalDependencies: Object.keys(manifest?.optionalDependencies ?? {}),
      dependents: [...this.plugins.keys()].filter((other) => this.requires(other).includes(id)).sort(),
      aliases: record.mountedAliases,
      source: record.found.dir,
      installed: record.installed,
    };
  }

  list(): PluginStatus[] {
    return [...this.plugins.keys()].sort().map((id) => this.status(id));
  }

  allManifests(): PluginManifest[] {
    return [...this.plugins.values()].filter((p) => p.manifest).map((p) => p.manifest!);
  }

  routesOf(): { plugin: string; routes: RouteDefinition[]; aliases: string[] }[] {
    return [...this.plugins.values()]
      .filter((p) => p.state === 'enabled')
      .map((p) => ({ plugin: p.id, routes: p.routes, aliases: p.mountedAliases }));
  }

  /**
   * The direct path's lookup (`http/direct.ts`): the data-plane route of an enabled plugin at
   * `/api/plugins/<id>/…` or under an alias it holds, else undefined (Koa then answers, 404s included).
   */
  directLookup(): DirectLookup {
    const PREFIX = '/api/plugins/';
    return (method, path) => {
      let record: PluginRecord | undefined;
      let prefix: string;
      if (path.startsWith(PREFIX)) {
        const slash = path.indexOf('/', PREFIX.length);
        if (slash < 0) return undefined;
        const id = path.slice(PREFIX.length, slash);
        record = this.plugins.get(id.includes('%') ? safeDecode(id) : id);
        prefix = `${PREFIX}${record?.id ?? ''}`;
        if (record && path.slice(0, slash) !== prefix) return undefined;
      } else {
        if (this.aliases.size === 0) return undefined;
        const slash = path.indexOf('/', 1);
        prefix = slash < 0 ? path : path.slice(0, slash);
        const owner = this.aliases.get(prefix);
        record = owner ? this.plugins.get(owner) : undefined;
      }
      if (record?.state !== 'enabled' || record.direct.size === 0) return undefined;
      return record.direct.get(prefix)?.get(`${method} ${path.slice(prefix.length)}`);
    };
  }

  /** Koa middleware serving `/api/plugins/<id>/...` and mounted aliases; disabled plugins answer 404 at once. */
  dispatcher(): Middleware<RequestState> {
    return (ctx, next) => {
      const match = /^\/api\/plugins\/([^/]+)(?:\/|$)/.exec(ctx.path);
      if (match) {
        const id = decodeURIComponent(match[1]!);
        const record = this.plugins.get(id);
        if (!record) throw new AiplatError('plugin_not_found', `No plugin "${id}" is installed`, { id });
        if (record.state !== 'enabled' || !record.router) {
          throw new AiplatError('not_found', `Plugin "${id}" is ${record.state}`, { id, state: record.state });
        }
        ctx.state.plugin = id;
        return record.router(ctx, next);
      }
      if (this.aliases.size > 0) {
        const alias = /^\/[^/]+/.exec(ctx.path)?.[0];
        const owner = alias ? this.aliases.get(alias) : undefined;
        const record = owner ? this.plugins.get(owner) : undefined;
        if (alias && record?.state === 'enabled') {
          ctx.state.plugin = record.id;
          return record.aliasRouters.get(alias)!(ctx, next);
        }
      }
      return next();
    };
  }
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** A plugin's record as first found: failed when its manifest or folder has a problem, else disabled until started. */
function newRecord(found: DiscoveredPlugin, installed: boolean): PluginRecord {
  return {
    found,
    id: found.id,
    manifest: found.manifest,
    state: found.problem ? 'failed' : 'disabled',
    reason: found.problem,
    staticFailure: found.problem !== undefined,
    routes: [],
    migrations: [],
    services: [],
    aliasRouters: new Map(),
    direct: new Map(),
    mountedAliases: [],
    registered: false,
    migrated: false,
    generation: 0,
    installed,
  };
}

interface CompiledPluginRoute {
  method: string;
  path: string;
  middleware: Middleware<RequestState>;
}

/**
 * A plugin's routes under `prefix`. Paths without parameters are found with one map lookup; the
 * rest (parameters, trailing slashes, 405s) go through @koa/router.
 */
function routerMiddleware(prefix: string, routes: CompiledPluginRoute[]): Middleware<RequestState> {
  const router = new Router<RequestState>({ prefix });
  const exact = new Map<string, { template: string; middleware: Middleware<RequestState> }>();
  for (const route of routes) {
    router[route.method.toLowerCase() as 'get'](route.path, route.middleware);
    if (!isExactPath(route.path)) continue;
    const entry = { template: `${prefix}${route.path}`, middleware: route.middleware };
    exact.set(`${route.method} ${prefix}${route.path}`, entry);
    if (route.method === 'GET') exact.set(`HEAD ${prefix}${route.path}`, entry);
  }
  const routed = compose([
    router.routes() as unknown as Middleware<RequestState>,
    router.allowedMethods({
      throw: true,
      methodNotAllowed: () => new AiplatError('method_not_allowed'),
      notImplemented: () => new AiplatError('method_not_allowed'),
    }) as unknown as Middleware<RequestState>,
  ]);
  return (ctx, next) => {
    const hit = exact.get(`${ctx.method} ${ctx.path}`);
    if (!hit) return routed(ctx, next);
    // What @koa/router would have set: the template (for metrics and logs) and empty params.
    (ctx as unknown as { _matchedRoute: string })._matchedRoute = hit.template;
    (ctx as unknown as { params: Record<string, string> }).params = {};
    return hit.middleware(ctx, next);
  };
}
