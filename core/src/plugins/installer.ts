import { createReadStream, existsSync, readFileSync } from 'node:fs';
import { mkdir, rm, symlink, readlink, unlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pipeline } from 'node:stream/promises';
import { createWriteStream } from 'node:fs';
import type { Readable } from 'node:stream';
import type { Knex } from 'knex';
import semver from 'semver';
import {
  AiplatError,
  isAiplatError,
  PLUGIN_API_VERSION,
  type BlobStore,
  type Logger,
  type Operation,
  type OperationControl,
  type Operations,
  type PluginManifest,
  type Principal,
  type EventBus,
  type EventSubscription,
} from '@aiplat/plugin-sdk';
import {
  PackageError,
  compareVersionsNewestFirst,
  parsePublicKey,
  readPackage,
  extractPackage,
  verifyPackage,
  type IndexEntry,
  type IndexVersion,
  type PackageContents,
  type PublicKey,
  type Verification,
} from '@aiplat/plugin-sdk/package';
import type { Kernel } from '../kernel/kernel.js';
import { readManifest } from '../kernel/manifest.js';
import type { AuditWriter } from '../audit/audit.js';
import type { RegistrySource } from './sources.js';

/** Who asked, for the audit rows and the operation's owner. */
export interface Requester {
  principal?: Principal;
  requestId?: string;
  ip?: string;
}

export interface InstalledInfo {
  version: string;
  previousVersion: string | null;
  signature: Verification['status'];
  keyId: string | null;
  publisher: string | null;
  source: string;
  installedAt: string;
}

export interface InstallerOptions {
  db: () => Knex;
  kernel: Kernel;
  /** The core's own storage namespace: packages are kept at `plugins/<id>/<version>.tgz`. */
  storage: BlobStore;
  operations: Operations;
  audit: AuditWriter;
  logger: Logger;
  dataDir: string;
  trustedKeys: PublicKey[];
  sources: RegistrySource[];
  maxBytes: number;
  /** After a plugin was added, replaced or removed (permissions, UI). */
  onChanged: () => void;
  /** The core's bus: a change is announced on `pluginPackages`, and every replica syncs on it. */
  events?: EventBus;
}

/** The core's topic for installed packages changing (another replica installed, upgraded, rolled back or removed one). */
export const PLUGIN_PACKAGES_TOPIC = 'plugin-packages';

interface PackageRow {
  plugin_id: string;
  version: string;
  sha256: string;
  size: string | number;
  storage_key: string;
  signature: Verification['status'];
  key_id: string | null;
  publisher: string | null;
  source: string;
  migrations: string[] | string;
}

interface Release {
  source: RegistrySource;
  entry: IndexEntry;
  release: IndexVersion;
}

/** Read the trusted publisher keys file; the error names the file and what is wrong in it. */
export function readTrustedKeys(file: string | undefined): PublicKey[] {
  if (!file) return [];
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new Error(`AIPLAT_TRUSTED_KEYS: ${file} cannot be read as JSON: ${(error as Error).message}`, { cause: error });
  }
  // A list, `{ keys: [...] }`, or one key as `aiplat-plugin keygen` prints it.
  const list = Array.isArray(raw) ? raw : Array.isArray((raw as { keys?: unknown })?.keys) ? (raw as { keys: unknown[] }).keys : raw && typeof raw === 'object' && 'publicKey' in raw ? [raw] : undefined;
  if (!Array.isArray(list)) throw new Error(`AIPLAT_TRUSTED_KEYS: ${file} must hold a list of public keys [{ "keyId", "publisher", "publicKey" }]`);
  return list.map((key, i) => {
    try {
      return parsePublicKey(key, `key ${i + 1}`);
    } catch (error) {
      throw new Error(`AIPLAT_TRUSTED_KEYS: ${file}: ${(error as Error).message}`, { cause: error });
    }
  });
}

const compatible = (v: IndexVersion) => semver.validRange(v.engines?.aiplat) !== null && semver.satisfies(PLUGIN_API_VERSION, v.engines.aiplat, { includePrerelease: true });

/**
 * Installs, upgrades, rolls back and uninstalls plugin packages in a running core (docs/adr/0010).
 * Each is an operation; they run one at a time. A package is verified (checksums, signature
 * against the trusted keys, the unsigned allow-list), kept in storage, extracted to
 * `<data>/installed/<id>/<version>/`, then handed to the kernel.
 */
export class PluginInstaller {
  readonly root: string;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: InstallerOptions) {
    this.root = path.join(options.dataDir, 'installed');
  }

  get trustedKeys(): PublicKey[] {
    return this.options.trustedKeys;
  }

  /** The largest package accepted, in bytes. */
  get maxUploadBytes(): number {
    return this.options.maxBytes * 1024 * 1024;
  }

  private get db(): Knex {
    return this.options.db();
  }

  private dirOf(id: string, version: string): string {
    return path.join(this.root, id, version);
  }

  private storageKey(id: string, version: string): string {
    return `plugins/${id}/${version}.tgz`;
  }

  // --- boot ---------------------------------------------------------------------------------

  /**
   * Before the kernel boots: link the host's SDK for installed backends, and make sure every
   * installed version is extracted here (another replica may have installed it): the folders to load.
   */
  async prepare(): Promise<string[]> {
    await this.linkSdk();
    const rows = (await this.db('installed_plugins').select('id', 'version')) as { id: string; version: string }[];
    const dirs: string[] = [];
    for (const row of rows) {
      try {
        dirs.push(await this.ensureExtracted(row.id, row.version));
      } catch (error) {
        this.options.logger.error({ plugin: row.id, version: row.version, err: (error as Error).message }, 'an installed plugin package cannot be restored from storage');
      }
    }
    return dirs;
  }

  /** `<installed>/node_modules/@aiplat/plugin-sdk` → the host's SDK: the one copy installed backends import. */
  private async linkSdk(): Promise<void> {
    const sdkDir = path.resolve(path.dirname(fileURLToPath(import.meta.resolve('@aiplat/plugin-sdk'))), '..');
    const link = path.join(this.root, 'node_modules', '@aiplat', 'plugin-sdk');
    await mkdir(path.dirname(link), { recursive: true });
    const current = await readlink(link).catch(() => undefined);
    if (current === sdkDir) return;
    if (current !== undefined || existsSync(link)) await unlink(link).catch(() => rm(link, { recursive: true, force: true }));
    await symlink(sdkDir, link, 'dir');
  }

  private async packageRow(id: string, version: string): Promise<PackageRow | undefined> {
    return (await this.db('plugin_packages').where({ plugin_id: id, version }).first()) as PackageRow | undefined;
  }

  private async ensureExtracted(id: string, version: string): Promise<string> {
    const dir = this.dirOf(id, version);
    if (existsSync(path.join(dir, 'aiplat-plugin.json'))) return dir;
    const row = await this.packageRow(id, version);
    if (!row) throw new AiplatError('version_not_found', `No package of ${id}@${version} is kept in storage`, { id, version });
    await rm(dir, { recursive: true, force: true });
    const { stream } = await this.options.storage.get(row.storage_key);
    const contents = await extractPackage(stream, dir, { limits: { maxBytes: this.options.maxBytes * 4 } });
    if (contents.sha256 !== row.sha256) {
      await rm(dir, { recursive: true, force: true });
      throw new AiplatError('package_modified', `The stored package of ${id}@${version} does not match the checksum recorded at install`, { id, version });
    }
    return dir;
  }

  // --- what is installed --------------------------------------------------------------------

  async installed(): Promise<Map<string, InstalledInfo>> {
    const rows = (await this.db('installed_plugins as i')
      .join('plugin_packages as p', function () {
        this.on('p.plugin_id', 'i.id').andOn('p.version', 'i.version');
      })
      .select('i.id', 'i.version', 'i.previous_version', 'i.installed_at', 'p.signature', 'p.key_id', 'p.publisher', 'p.source')) as {
      id: string;
      version: string;
      previous_version: string | null;
      installed_at: Date | string;
      signature: Verification['status'];
      key_id: string | null;
      publisher: string | null;
      source: string;
    }[];
    return new Map(
      rows.map((r) => [
        r.id,
        {
          version: r.version,
          previousVersion: r.previous_version,
          signature: r.signature,
          keyId: r.key_id,
          publisher: r.publisher,
          source: r.source,
          installedAt: new Date(r.installed_at).toISOString(),
        },
      ]),
    );
  }

  // --- registries ---------------------------------------------------------------------------

  get sources(): RegistrySource[] {
    return this.options.sources;
  }

  /** Every source's index; an unreachable source is reported, not fatal. */
  async indexes(fresh = false): Promise<{ source: RegistrySource; entries: IndexEntry[]; error?: string }[]> {
    return Promise.all(
      this.options.sources.map(async (source) => {
        try {
          return { source, entries: await source.index(fresh) };
        } catch (error) {
          return { source, entries: [], error: (error as Error).message };
        }
      }),
    );
  }

  /** The newest version of `id` matching `range` that works with this core, from the named source or the first that has it. */
  async findRelease(id: string, range: string | undefined, location?: string, fresh = true): Promise<Release> {
    if (range !== undefined && semver.validRange(range) === null) throw new AiplatError('validation_failed', `"${range}" is not a semver version or range`);
    const sources = location ? this.options.sources.filter((s) => s.location === location) : this.options.sources;
    if (location && sources.length === 0) throw new AiplatError('validation_failed', `"${location}" is not one of this core's registries (${this.options.sources.map((s) => s.location).join(', ') || 'none configured: set AIPLAT_REGISTRIES'})`);
    if (sources.length === 0) throw new AiplatError('registry_unreachable', 'This core has no plugin registry configured: set AIPLAT_REGISTRIES to a registry URL or a folder, or upload a package file');
    const failures: string[] = [];
    let published: string[] | undefined;
    for (const source of sources) {
      let entries: IndexEntry[];
      try {
        entries = await source.index(fresh);
      } catch (error) {
        failures.push((error as Error).message);
        continue;
      }
      const entry = entries.find((e) => e.id === id);
      if (!entry) continue;
      published = entry.versions.map((v) => v.version);
      const release = [...entry.versions]
        .sort((a, b) => compareVersionsNewestFirst(a.version, b.version))
        .find((v) => (range ? semver.satisfies(v.version, range, { includePrerelease: true }) : semver.prerelease(v.version) === null) && compatible(v));
      if (release) return { source, entry, release };
    }
    if (published) {
      throw new AiplatError(
        'version_not_found',
        `No published version of ${id}${range ? ` matches ${range} and` : ''} works with this core's plugin API ${PLUGIN_API_VERSION} (published: ${published.join(', ')})`,
        { id, range, published },
      );
    }
    if (failures.length === sources.length) throw new AiplatError('registry_unreachable', failures.join('; '));
    throw new AiplatError('version_not_found', `No registry has a plugin "${id}"${failures.length ? ` (unreachable: ${failures.join('; ')})` : ''}`, { id });
  }

  // --- the unsigned allow-list --------------------------------------------------------------

  async allowlisted(id: string): Promise<boolean> {
    return (await this.db('plugin_unsigned_allowlist').where({ plugin_id: id }).first()) !== undefined;
  }

  // --- operations ---------------------------------------------------------------------------

  /** Run `work` as an operation, after every earlier install step has finished. */
  private run<T>(kind: string, title: string, requester: Requester, work: (control: OperationControl) => Promise<T>): Promise<Operation<T>> {
    return this.options.operations.start<T>(
      kind,
      async (control) => {
        const previous = this.queue;
        let release!: () => void;
        this.queue = new Promise<void>((resolve) => (release = resolve));
        try {
          control.progress(0, 'waiting for earlier plugin changes to finish');
          await previous.catch(() => undefined);
          return await work(control);
        } finally {
          release();
        }
      },
      { title, ...(requester.principal ? { userId: requester.principal.id } : {}) },
    );
  }

  /** Tell every replica (this one too) that the installed packages changed. */
  private announce(id: string): void {
    this.options.onChanged();
    this.options.events
      ?.publish(PLUGIN_PACKAGES_TOPIC, { id }, { permission: 'plugins:read' })
      .catch((error: Error) => this.options.logger.warn({ err: error.message, plugin: id }, 'cannot announce a plugin package change'));
  }

  private subscription?: EventSubscription;

  /** Follow the other replicas' installs, upgrades, rollbacks and uninstalls (after boot). */
  listen(): void {
    this.subscription ??= this.options.events?.subscribe(PLUGIN_PACKAGES_TOPIC, () => {
      void this.sync().catch((error: Error) => this.options.logger.error({ err: error.message }, 'cannot follow a plugin package change'));
    });
  }

  /** Stop following other replicas and wait for a sync in progress (the core is stopping). */
  async close(): Promise<void> {
    this.subscription?.unsubscribe();
    this.subscription = undefined;
    await this.queue.catch(() => undefined);
  }

  /**
   * Bring this replica in line with the database: load what another replica installed, move to
   * the version it moved to, drop what it uninstalled. The schema changes were made there (one
   * database), so nothing is migrated down here; runs after any local change in progress.
   */
  sync(): Promise<void> {
    const previous = this.queue;
    const run = (async () => {
      await previous.catch(() => undefined);
      const kernel = this.options.kernel;
      const rows = (await this.db('installed_plugins').select('id', 'version')) as { id: string; version: string }[];
      const wanted = new Map(rows.map((r) => [r.id, r.version]));
      let changed = false;
      for (const [id, version] of wanted) {
        if (kernel.has(id) && kernel.status(id).version === version) continue;
        try {
          const dir = await this.ensureExtracted(id, version);
          if (!kernel.has(id)) await kernel.addPlugin(dir);
          else if (kernel.status(id).installed) await kernel.replacePlugin(id, dir);
          else continue;
          changed = true;
          this.options.logger.info({ plugin: id, version }, 'plugin package followed from another replica');
        } catch (error) {
          this.options.logger.error({ plugin: id, version, err: (error as Error).message }, 'cannot follow a plugin package change');
        }
      }
      for (const status of kernel.list()) {
        if (!status.installed || wanted.has(status.id)) continue;
        try {
          await kernel.removePlugin(status.id, { dropData: false });
          await rm(path.join(this.root, status.id), { recursive: true, force: true });
          changed = true;
          this.options.logger.info({ plugin: status.id }, 'plugin uninstalled by another replica');
        } catch (error) {
          this.options.logger.error({ plugin: status.id, err: (error as Error).message }, 'cannot follow an uninstall');
        }
      }
      if (changed) this.options.onChanged();
    })();
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async audit(requester: Requester, action: string, id: string, outcome: 'success' | 'failure', details: Record<string, unknown>, db: Knex = this.db): Promise<void> {
    await this.options.audit.write(db, {
      action: `core:plugin.${action}`,
      ...(requester.principal ? { actor: requester.principal } : {}),
      outcome,
      resource: { type: 'plugin', id },
      ...(requester.requestId ? { requestId: requester.requestId } : {}),
      ...(requester.ip ? { clientIp: requester.ip } : {}),
      details,
    });
  }

  /** Install `id` (and what it needs) from a registry. */
  install(requester: Requester, request: { id: string; version?: string; source?: string }): Promise<Operation> {
    return this.run('plugin.install', `Install ${request.id}${request.version ? `@${request.version}` : ''}`, requester, async (control) => {
      if (this.options.kernel.has(request.id)) {
        throw new AiplatError('plugin_exists', `Plugin "${request.id}" is already installed (${this.options.kernel.status(request.id).version}); upgrade it instead`, { id: request.id });
      }
      control.progress(0.02, `looking up ${request.id} in the registries`);
      const target = await this.findRelease(request.id, request.version, request.source);
      const plan = await this.planDependencies(target, [request.id]);
      const steps = [...plan, target];
      const results: unknown[] = [];
      for (const [i, step] of steps.entries()) {
        const span = { from: i / steps.length, to: (i + 1) / steps.length };
        results.push(await this.installRelease(requester, step, control, span, 'install'));
      }
      return { installed: results };
    });
  }

  /** Install an uploaded package file (moved into the installer's temp folder; removed after). */
  installUpload(requester: Requester, file: string): Promise<Operation> {
    return this.run('plugin.install', 'Install an uploaded package', requester, async (control) => {
      try {
        const contents = await this.readChecked(requester, file, 'upload', undefined);
        const manifest = contents.manifest as unknown as PluginManifest;
        if (this.options.kernel.has(manifest.id)) {
          throw new AiplatError('plugin_exists', `Plugin "${manifest.id}" is already installed (${this.options.kernel.status(manifest.id).version}); upgrade it instead`, { id: manifest.id });
        }
        const plan = await this.planFromManifest(manifest, [manifest.id]);
        const steps = plan.length + 1;
        const results: unknown[] = [];
        for (const [i, step] of plan.entries()) results.push(await this.installRelease(requester, step, control, { from: i / steps, to: (i + 1) / steps }, 'install'));
        results.push(await this.installFile(requester, file, contents, 'upload', control, { from: plan.length / steps, to: 1 }, 'install'));
        return { installed: results };
      } finally {
        await rm(file, { force: true });
      }
    });
  }

  /** Upload bodies land here first. */
  async tempFile(): Promise<string> {
    const dir = path.join(this.root, '.incoming');
    await mkdir(dir, { recursive: true });
    return path.join(dir, `${Date.now()}-${randomBytes(6).toString('hex')}.tgz`);
  }

  /** Move to another version from a registry (default: the newest that works with this core). */
  upgrade(requester: Requester, id: string, request: { version?: string; source?: string }): Promise<Operation> {
    const status = this.options.kernel.status(id);
    if (!status.installed) throw new AiplatError('plugin_not_installed', `Plugin "${id}" comes from ${status.source}, not from a package: it changes with the files there`, { id });
    return this.run('plugin.upgrade', `Upgrade ${id}`, requester, async (control) => {
      control.progress(0.02, `looking up ${id} in the registries`);
      const current = this.options.kernel.status(id).version;
      const target = await this.findRelease(id, request.version, request.source);
      if (target.release.version === current) throw new AiplatError('conflict', `${id} ${current} is already installed and is the newest matching version`, { id, version: current });
      const plan = await this.planDependencies(target, [id]);
      const steps = [...plan, target];
      const results: unknown[] = [];
      for (const [i, step] of steps.entries()) {
        const span = { from: i / steps.length, to: (i + 1) / steps.length };
        results.push(await this.installRelease(requester, step, control, span, step === target ? 'upgrade' : 'install'));
      }
      return { upgraded: results.at(-1), installed: results.slice(0, -1) };
    });
  }

  /** Return to the version installed before the current one. */
  rollback(requester: Requester, id: string): Promise<Operation> {
    const status = this.options.kernel.status(id);
    if (!status.installed) throw new AiplatError('plugin_not_installed', `Plugin "${id}" comes from ${status.source}, not from a package`, { id });
    return this.run('plugin.rollback', `Roll back ${id}`, requester, async (control) => {
      const row = (await this.db('installed_plugins').where({ id }).first()) as { version: string; previous_version: string | null } | undefined;
      if (!row?.previous_version) throw new AiplatError('conflict', `${id} has no earlier installed version to roll back to`, { id });
      const [current, previous] = await Promise.all([this.packageRow(id, row.version), this.packageRow(id, row.previous_version)]);
      if (!current || !previous) throw new AiplatError('version_not_found', `The package of ${id}@${row.previous_version} is no longer kept`, { id });
      control.progress(0.2, `restoring ${id} ${row.previous_version}`);
      const dir = await this.ensureExtracted(id, row.previous_version);
      const older = new Set(typeof previous.migrations === 'string' ? (JSON.parse(previous.migrations) as string[]) : previous.migrations);
      const down = this.options.kernel
        .migrationsOf(id)
        .map((m) => m.name)
        .filter((name) => !older.has(name));
      control.progress(0.5, down.length ? `undoing migrations ${down.join(', ')}` : `starting ${id} ${row.previous_version}`);
      try {
        await this.options.kernel.replacePlugin(id, dir, { down });
      } catch (error) {
        await this.audit(requester, 'rollback', id, 'failure', { from: row.version, to: row.previous_version, reason: (error as Error).message });
        throw error;
      }
      await this.db.transaction(async (trx) => {
        await trx('installed_plugins').where({ id }).update({ version: row.previous_version, previous_version: row.version, updated_at: trx.fn.now() });
        await this.audit(requester, 'rollback', id, 'success', { from: row.version, to: row.previous_version, undone: down }, trx);
      });
      this.announce(id);
      control.progress(1, `${id} ${row.previous_version} runs`);
      return { id, version: row.previous_version, from: row.version, undoneMigrations: down };
    });
  }

  /** Stop and remove a plugin; `keepData: false` also drops its tables and settings. */
  uninstall(requester: Requester, id: string, keepData: boolean): Promise<Operation> {
    const status = this.options.kernel.status(id);
    if (!status.installed) throw new AiplatError('plugin_not_installed', `Plugin "${id}" comes from ${status.source}, not from a package: disable it instead`, { id });
    return this.run('plugin.uninstall', `Uninstall ${id}`, requester, async (control) => {
      const version = this.options.kernel.status(id).version;
      control.progress(0.3, `stopping ${id}`);
      try {
        await this.options.kernel.removePlugin(id, { dropData: !keepData });
      } catch (error) {
        await this.audit(requester, 'uninstall', id, 'failure', { version, keepData, reason: (error as Error).message });
        throw error;
      }
      const packages = (await this.db('plugin_packages').where({ plugin_id: id }).select('storage_key')) as { storage_key: string }[];
      await this.db.transaction(async (trx) => {
        await trx('installed_plugins').where({ id }).delete();
        await trx('plugin_packages').where({ plugin_id: id }).delete();
        await this.audit(requester, 'uninstall', id, 'success', { version, keepData }, trx);
      });
      control.progress(0.8, 'removing its files');
      for (const p of packages) await this.options.storage.delete(p.storage_key).catch(() => false);
      await rm(path.join(this.root, id), { recursive: true, force: true });
      this.announce(id);
      return { id, version, keptData: keepData };
    });
  }

  // --- steps --------------------------------------------------------------------------------

  /** The releases to install first, dependencies before dependents; names what is missing or incompatible. */
  private async planDependencies(target: Release, chain: string[]): Promise<Release[]> {
    const manifest = (await target.source.manifest(target.entry.id, target.release.version)) as unknown as PluginManifest;
    return this.planFromManifest(manifest, chain);
  }

  private async planFromManifest(manifest: PluginManifest, chain: string[], planned = new Map<string, Release>()): Promise<Release[]> {
    const order: Release[] = [];
    for (const [dep, range] of Object.entries(manifest.dependencies ?? {})) {
      if (chain.includes(dep)) throw new AiplatError('plugin_incompatible', `dependency cycle: ${[...chain, dep].join(' → ')}`, { cycle: [...chain, dep] });
      const kernel = this.options.kernel;
      if (kernel.has(dep)) {
        const installed = kernel.status(dep).version;
        if (!semver.satisfies(installed, range, { includePrerelease: true })) {
          throw new AiplatError('plugin_incompatible', `${manifest.id} ${manifest.version} needs plugin "${dep}" ${range}, but ${dep} ${installed} is installed`, { id: manifest.id, dependency: dep, range, installed });
        }
        continue;
      }
      const already = planned.get(dep);
      if (already) {
        if (!semver.satisfies(already.release.version, range, { includePrerelease: true })) {
          throw new AiplatError('plugin_incompatible', `${manifest.id} needs "${dep}" ${range}, but another plugin needs ${dep} ${already.release.version}`, { id: manifest.id, dependency: dep, range });
        }
        continue;
      }
      let release: Release;
      try {
        release = await this.findRelease(dep, range, undefined, false);
      } catch (error) {
        if (isAiplatError(error) && (error.code === 'version_not_found' || error.code === 'registry_unreachable')) {
          throw new AiplatError('plugin_dependency_missing', `${manifest.id} ${manifest.version} needs plugin "${dep}" ${range}: it is not installed, and ${error.message.charAt(0).toLowerCase()}${error.message.slice(1)}`, { id: manifest.id, dependency: dep, range });
        }
        throw error;
      }
      planned.set(dep, release);
      const depManifest = (await release.source.manifest(dep, release.release.version)) as unknown as PluginManifest;
      order.push(...(await this.planFromManifest(depManifest, [...chain, dep], planned)), release);
    }
    return order;
  }

  /** Download one release to a temp file (checked against the index's checksum), then install it. */
  private async installRelease(requester: Requester, step: Release, control: OperationControl, span: { from: number; to: number }, mode: 'install' | 'upgrade'): Promise<unknown> {
    const { id } = step.entry;
    const { version, sha256 } = step.release;
    const at = (f: number) => span.from + (span.to - span.from) * f;
    control.progress(at(0.05), `downloading ${id} ${version} from ${step.source.location}`);
    const file = await this.tempFile();
    try {
      const body: Readable = await step.source.download(id, version, this.options.maxBytes * 1024 * 1024);
      let received = 0;
      body.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received > this.options.maxBytes * 1024 * 1024) body.destroy(new AiplatError('package_too_large', `The package of ${id}@${version} is larger than ${this.options.maxBytes} MiB`));
      });
      await pipeline(body, createWriteStream(file), { signal: control.signal });
      const contents = await this.readChecked(requester, file, step.source.location, sha256);
      if (contents.manifest.id !== id || contents.manifest.version !== version) {
        throw await this.refuse(requester, id, 'package_modified', `The registry's package for ${id}@${version} holds ${String(contents.manifest.id)}@${String(contents.manifest.version)}`, { source: step.source.location });
      }
      return await this.installFile(requester, file, contents, step.source.location, control, { from: at(0.3), to: span.to }, mode);
    } finally {
      await rm(file, { force: true });
    }
  }

  private async refuse(requester: Requester, id: string, code: 'package_modified' | 'package_unsigned' | 'package_invalid' | 'package_unsafe' | 'package_too_large' | 'package_bundles_host_library', message: string, details: Record<string, unknown>): Promise<AiplatError> {
    await this.audit(requester, 'install.refused', id, 'failure', { code, reason: message, ...details }).catch((error: Error) => this.options.logger.error({ err: error.message }, 'cannot audit a refused plugin package'));
    return new AiplatError(code, message, { id, ...details });
  }

  /** Read and verify a package file: checksums, signature and trust, the allow-list. Refusals are audited. */
  private async readChecked(requester: Requester, file: string, source: string, expectedSha256: string | undefined): Promise<PackageContents & { verification: Verification }> {
    let contents: PackageContents;
    try {
      contents = await readPackage(file, { limits: { maxBytes: this.options.maxBytes * 4 * 1024 * 1024 } });
    } catch (error) {
      if (error instanceof PackageError) throw await this.refuse(requester, 'unknown', error.code, error.message, { source, ...(error.details ?? {}) });
      throw error;
    }
    const id = typeof contents.manifest.id === 'string' ? contents.manifest.id : 'unknown';
    const version = String(contents.manifest.version);
    if (expectedSha256 && contents.sha256 !== expectedSha256) {
      throw await this.refuse(requester, id, 'package_modified', `The download of ${id}@${version} does not match the checksum its registry lists (got ${contents.sha256.slice(0, 12)}…, expected ${expectedSha256.slice(0, 12)}…)`, { source });
    }
    const verification = verifyPackage(contents, this.options.trustedKeys);
    if (verification.status === 'modified') {
      throw await this.refuse(requester, id, 'package_modified', `${id}@${version} was changed after it was packed: ${verification.reason}`, { source, version });
    }
    if (verification.status !== 'signed' && !(await this.allowlisted(id))) {
      throw await this.refuse(
        requester,
        id,
        'package_unsigned',
        `${id}@${version} is ${verification.status === 'unsigned' ? 'not signed' : `not trusted: ${verification.reason}`}. An administrator can add the trusted key to AIPLAT_TRUSTED_KEYS, or allow "${id}" unsigned in the plugin allow-list`,
        { source, version, signature: verification.status, ...(verification.keyId ? { keyId: verification.keyId } : {}) },
      );
    }
    return { ...contents, verification };
  }

  /** Extract, check the manifest, keep the package in storage, hand it to the kernel, record it. */
  private async installFile(
    requester: Requester,
    file: string,
    contents: PackageContents & { verification: Verification },
    source: string,
    control: OperationControl,
    span: { from: number; to: number },
    mode: 'install' | 'upgrade',
  ): Promise<unknown> {
    const at = (f: number) => span.from + (span.to - span.from) * f;
    const id = String(contents.manifest.id);
    const version = String(contents.manifest.version);
    const kernel = this.options.kernel;
    if (!/^[a-z][a-z0-9-]{1,38}[a-z0-9]$/.test(id) || semver.valid(version) === null) {
      throw await this.refuse(requester, id, 'package_invalid', `The package's manifest has no valid id and version ("${id}", "${version}")`, { source });
    }
    const previous = mode === 'upgrade' ? kernel.status(id).version : undefined;
    if (mode === 'upgrade' && previous === version) throw new AiplatError('conflict', `${id} ${version} is already installed`, { id, version });
    const dir = this.dirOf(id, version);
    const running = kernel.has(id) && kernel.dirOf(id) === dir;
    if (running) throw new AiplatError('conflict', `${id} ${version} is the version running`, { id, version });
    control.progress(at(0.1), `unpacking ${id} ${version}`);
    await rm(dir, { recursive: true, force: true });
    await extractPackage(file, dir, { limits: { maxBytes: this.options.maxBytes * 4 * 1024 * 1024 } });
    const key = this.storageKey(id, version);
    let stored = false;
    try {
      const found = readManifest(dir);
      if (found.problem || !found.manifest) throw await this.refuse(requester, id, 'package_invalid', found.problem ?? 'the manifest is not valid', { source, version });
      const problem = kernel.dependencyProblem(found.manifest);
      if (problem) throw problem;
      control.progress(at(0.3), `keeping the package in storage`);
      await this.options.storage.put(key, createReadStream(file), { expectedSha256: contents.sha256, contentType: 'application/gzip' });
      stored = true;
      control.progress(at(0.5), mode === 'upgrade' ? `migrating and starting ${id} ${version}` : `migrating and starting ${id}`);
      const status = mode === 'upgrade' ? await kernel.replacePlugin(id, dir) : await kernel.addPlugin(dir);
      const migrations = kernel.migrationsOf(id).map((m) => m.name);
      const v = contents.verification;
      await this.db.transaction(async (trx) => {
        await trx('plugin_packages')
          .insert({
            plugin_id: id,
            version,
            sha256: contents.sha256,
            size: contents.size,
            storage_key: key,
            signature: v.status,
            key_id: v.keyId ?? null,
            publisher: v.publisher ?? null,
            source,
            migrations: JSON.stringify(migrations),
            added_by: requester.principal?.id ?? null,
          })
          .onConflict(['plugin_id', 'version'])
          .merge();
        if (mode === 'upgrade') {
          await trx('installed_plugins').where({ id }).update({ version, previous_version: previous, updated_at: trx.fn.now() });
        } else {
          await trx('installed_plugins').insert({ id, version, previous_version: null, installed_by: requester.principal?.id ?? null }).onConflict('id').merge();
        }
        await this.audit(requester, mode, id, 'success', { version, ...(previous ? { from: previous } : {}), sha256: contents.sha256, signature: v.status, keyId: v.keyId ?? null, publisher: v.publisher ?? null, source }, trx);
      });
      this.announce(id);
      control.progress(at(1), `${id} ${version} ${status.state === 'enabled' ? 'runs' : `is ${status.state}`}`);
      return { id, version, ...(previous ? { from: previous } : {}), state: status.state, signature: v.status };
    } catch (error) {
      // Leave the core as it was: no folder, no stored package that nothing refers to.
      if (!kernel.has(id) || kernel.dirOf(id) !== dir) await rm(dir, { recursive: true, force: true });
      if (stored && !(await this.packageRow(id, version))) await this.options.storage.delete(key).catch(() => false);
      if (isAiplatError(error) && !error.code.startsWith('package_')) {
        await this.audit(requester, mode, id, 'failure', { version, reason: error.message, code: error.code, source }).catch(() => undefined);
      }
      throw error;
    }
  }
}
