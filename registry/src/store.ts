/**
 * The registry's data folder, which is also its static mirror (docs/adr/0010):
 *
 *   index.json                         { format, generatedAt, plugins: [IndexEntry] }
 *   plugins/<id>/index.json            IndexEntry (the record a publish commits)
 *   plugins/<id>/<version>/package.tgz, aiplat-plugin.json, README.md, CHANGELOG.md
 *   .tmp/                              uploads and publishes in progress (never served)
 *
 * A publish writes the version folder under .tmp, renames it into place, then replaces
 * plugins/<id>/index.json and index.json (each written to a temporary file and renamed). A
 * version folder that no plugins/<id>/index.json lists is a publish that never finished: it is
 * removed when the registry starts, and index.json is rebuilt from the plugin records.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { PLUGIN_ID_PATTERN, type LocalizedText, type PluginManifest } from '@aiplat/plugin-sdk';
import {
  compareVersionsNewestFirst,
  latestVersionOf,
  REGISTRY_INDEX_FORMAT,
  type IndexEntry,
  type IndexVersion,
  type RegistryIndex,
} from '@aiplat/plugin-sdk/package';
import type { Logger } from '@aiplat/plugin-sdk';
import semver from 'semver';
import { RegistryError } from './errors.js';

export const VERSION_FILES = ['package.tgz', 'aiplat-plugin.json', 'README.md', 'CHANGELOG.md'] as const;
export type VersionFile = (typeof VERSION_FILES)[number];

const ID_RE = new RegExp(PLUGIN_ID_PATTERN);

export function isPluginId(value: string): boolean {
  return ID_RE.test(value);
}

/** A version as it may appear in a folder name and URL: valid semver, written exactly as semver writes it. */
export function isVersion(value: string): boolean {
  return value.length <= 128 && semver.valid(value) === value;
}

/** Write a file to a temporary name beside it, flush it to disk, and rename it into place. */
export async function writeFileAtomic(file: string, data: string | Buffer): Promise<void> {
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFileDurable(tmp, data);
    await rename(tmp, file);
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
}

async function writeFileDurable(file: string, data: string | Buffer): Promise<void> {
  const handle = await open(file, 'wx', 0o644);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function syncFile(file: string): Promise<void> {
  const handle = await open(file, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;

export interface NewVersion {
  manifest: PluginManifest;
  /** The uploaded .tgz, on the data folder's file system (moved into place). */
  packageFile: string;
  sha256: string;
  size: number;
  readme: string | undefined;
  changelog: string | undefined;
  publisher: string;
  keyId: string | null;
  signed: boolean;
}

export class RegistryStore {
  private readonly byId = new Map<string, IndexEntry>();
  private sorted: IndexEntry[] = [];
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly dataDir: string,
    private readonly logger: Logger,
  ) {}

  get pluginsDir(): string {
    return path.join(this.dataDir, 'plugins');
  }

  get tmpDir(): string {
    return path.join(this.dataDir, '.tmp');
  }

  /** Open a data folder (created when missing), finish or undo what a crash left, and load the index. */
  static async open(dataDir: string, logger: Logger): Promise<RegistryStore> {
    const store = new RegistryStore(path.resolve(dataDir), logger);
    await store.load();
    return store;
  }

  private async load(): Promise<void> {
    await mkdir(this.pluginsDir, { recursive: true });
    await this.tryWrite('clear the temporary folder', async () => {
      await rm(this.tmpDir, { recursive: true, force: true });
      await mkdir(this.tmpDir, { recursive: true });
    });

    for (const name of (await readdir(this.pluginsDir)).sort()) {
      const dir = path.join(this.pluginsDir, name);
      if (!(await stat(dir)).isDirectory()) continue;
      if (!isPluginId(name)) {
        this.logger.warn({ dir }, 'plugins/ holds a folder that is not a plugin id; it is ignored');
        continue;
      }
      const entry = await this.readEntry(name);
      if (!entry) {
        // The first publish of this id never committed.
        this.logger.warn({ dir }, 'removing an unfinished publish (the plugin has no index.json)');
        await this.tryWrite(`remove ${dir}`, () => rm(dir, { recursive: true, force: true }));
        continue;
      }
      const listed = new Set(entry.versions.map((v) => v.version));
      for (const child of await readdir(dir)) {
        if (child === 'index.json' || listed.has(child)) continue;
        const full = path.join(dir, child);
        if (isVersion(child) && (await stat(full)).isDirectory()) {
          this.logger.warn({ dir: full }, 'removing an unfinished publish (the version is not in the plugin index.json)');
          await this.tryWrite(`remove ${full}`, () => rm(full, { recursive: true, force: true }));
        } else if (/\.tmp$/.test(child)) {
          await this.tryWrite(`remove ${full}`, () => rm(full, { force: true }));
        }
      }
      for (const v of entry.versions) {
        const tgz = this.versionFile(entry.id, v.version, 'package.tgz');
        const s = await stat(tgz).catch(() => undefined);
        if (!s || s.size !== v.size) this.logger.error({ file: tgz }, `${entry.id} ${v.version}: package.tgz is missing or not the size index.json records; restore it from a backup or a mirror`);
      }
      this.byId.set(entry.id, entry);
    }
    this.resort();

    // index.json is derived from the plugin records: rewrite it when it does not match them.
    const current = await readFile(this.indexFile, 'utf8').then(
      (text) => JSON.parse(text) as RegistryIndex,
      () => undefined,
    );
    if (!current || current.format !== REGISTRY_INDEX_FORMAT || JSON.stringify(current.plugins) !== JSON.stringify(this.sorted)) {
      if (current) this.logger.warn({ file: this.indexFile }, 'index.json did not match the plugin records; rebuilding it');
      await this.tryWrite('rewrite index.json', () => this.writeRootIndex());
    }
    this.logger.info({ dataDir: this.dataDir, plugins: this.sorted.length }, 'registry data loaded');
  }

  /** Writes that only tidy up may fail (a mirror on read-only media): log, do not stop. */
  private async tryWrite(what: string, fn: () => Promise<unknown>): Promise<void> {
    try {
      await fn();
    } catch (error) {
      this.logger.warn({ err: error }, `could not ${what} (is the data folder read-only?)`);
    }
  }

  private async readEntry(id: string): Promise<IndexEntry | undefined> {
    const file = path.join(this.pluginsDir, id, 'index.json');
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    let entry: IndexEntry;
    try {
      entry = JSON.parse(text) as IndexEntry;
    } catch (error) {
      throw new Error(`${file} is not JSON (${(error as Error).message}): restore it from a backup or a mirror, or remove plugins/${id}`, { cause: error });
    }
    if (!entry || entry.id !== id || !Array.isArray(entry.versions) || entry.versions.some((v) => !v || typeof v.version !== 'string' || !isVersion(v.version))) {
      throw new Error(`${file} is not the index of plugin "${id}": restore it from a backup or a mirror, or remove plugins/${id}`);
    }
    return entry;
  }

  private resort(): void {
    this.sorted = [...this.byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  get indexFile(): string {
    return path.join(this.dataDir, 'index.json');
  }

  private async writeRootIndex(): Promise<void> {
    const index: RegistryIndex = { format: REGISTRY_INDEX_FORMAT, generatedAt: new Date().toISOString(), plugins: this.sorted };
    await writeFileAtomic(this.indexFile, json(index));
  }

  /** Every plugin, sorted by id (do not modify). */
  entries(): readonly IndexEntry[] {
    return this.sorted;
  }

  get(id: string): IndexEntry | undefined {
    return this.byId.get(id);
  }

  versionDir(id: string, version: string): string {
    return path.join(this.pluginsDir, id, version);
  }

  versionFile(id: string, version: string, file: VersionFile): string {
    return path.join(this.versionDir(id, version), file);
  }

  /** Run publishes one at a time. */
  serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** A fresh path under .tmp for an upload. */
  tempPath(prefix: string): string {
    return path.join(this.tmpDir, `${prefix}-${Date.now()}-${randomBytes(6).toString('hex')}`);
  }

  /**
   * Commit a checked version: refuses an id another publisher owns (403) and a version that
   * exists (409). Call inside {@link serial}.
   */
  async addVersion(v: NewVersion): Promise<{ entry: IndexEntry; version: IndexVersion }> {
    const { manifest } = v;
    const existing = this.byId.get(manifest.id);
    if (existing && existing.publisher !== v.publisher) {
      throw new RegistryError('not_owner', `Plugin "${manifest.id}" belongs to publisher "${existing.publisher}": only they can publish its versions. Publish under another id.`, {
        id: manifest.id,
        owner: existing.publisher,
      });
    }
    const clash = existing?.versions.find((x) => semver.eq(x.version, manifest.version));
    if (clash) {
      throw new RegistryError(
        'version_exists',
        `${manifest.id} ${clash.version} is already published, and versions are never overwritten: raise "version" in aiplat-plugin.json and publish again.`,
        { id: manifest.id, version: clash.version },
      );
    }

    const record: IndexVersion = {
      version: manifest.version,
      engines: { aiplat: manifest.engines.aiplat },
      dependencies: manifest.dependencies ?? {},
      optionalDependencies: manifest.optionalDependencies ?? {},
      sha256: v.sha256,
      size: v.size,
      publishedAt: new Date().toISOString(),
      publisher: v.publisher,
      keyId: v.keyId,
      signed: v.signed,
      permissions: manifest.permissions ?? [],
    };

    // 1. The version folder, complete, under .tmp; then renamed into place.
    const staging = this.tempPath('version');
    const finalDir = this.versionDir(manifest.id, manifest.version);
    await mkdir(staging);
    try {
      await syncFile(v.packageFile);
      await rename(v.packageFile, path.join(staging, 'package.tgz'));
      await writeFileDurable(path.join(staging, 'aiplat-plugin.json'), json(manifest));
      if (v.readme !== undefined) await writeFileDurable(path.join(staging, 'README.md'), v.readme);
      if (v.changelog !== undefined) await writeFileDurable(path.join(staging, 'CHANGELOG.md'), v.changelog);
      await mkdir(path.dirname(finalDir), { recursive: true });
      // A leftover folder can only be an unfinished publish (the index does not list it).
      await rm(finalDir, { recursive: true, force: true });
      await rename(staging, finalDir);
    } catch (error) {
      await rm(staging, { recursive: true, force: true });
      throw error;
    }

    // 2. The plugin record: this commits the publish.
    const versions = [...(existing?.versions ?? []), record].sort((a, b) => compareVersionsNewestFirst(a.version, b.version));
    const latest = latestVersionOf(versions.map((x) => x.version))!;
    const fromThis = latest === record.version || !existing;
    const entry: IndexEntry = {
      id: manifest.id,
      latest,
      displayName: fromThis ? manifest.displayName : existing.displayName,
      description: fromThis ? ((manifest.description as LocalizedText | undefined) ?? null) : existing.description,
      categories: fromThis ? (manifest.categories ?? []) : existing.categories,
      publisher: existing?.publisher ?? v.publisher,
      versions,
    };
    try {
      await writeFileAtomic(path.join(this.pluginsDir, manifest.id, 'index.json'), json(entry));
    } catch (error) {
      await rm(finalDir, { recursive: true, force: true });
      if (!existing) await rm(path.dirname(finalDir), { recursive: true, force: true });
      throw error;
    }
    this.byId.set(entry.id, entry);
    this.resort();

    // 3. The root index. The publish is already committed: a failure here is repaired by the next
    // publish or the next start, which rebuild index.json from the plugin records.
    try {
      await this.writeRootIndex();
    } catch (error) {
      this.logger.error({ err: error }, 'index.json could not be rewritten; it is rebuilt at the next publish or start');
    }
    return { entry, version: record };
  }
}
