import { createReadStream, existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { AiplatError } from '@aiplat/plugin-sdk';
import { REGISTRY_INDEX_FORMAT, type IndexEntry, type RegistryIndex } from '@aiplat/plugin-sdk/package';

/**
 * Where the marketplace finds plugins: a registry over HTTP or a folder holding a registry's
 * static mirror (a copied data folder, a USB drive). Both read the same files (docs/adr/0010):
 * `index.json`, `plugins/<id>/<version>/{package.tgz, README.md, CHANGELOG.md, aiplat-plugin.json}`.
 */
export interface RegistrySource {
  /** How people see it: the URL or the folder. */
  readonly location: string;
  /** The plugins it holds (cached a few seconds; `fresh` reads again). */
  index(fresh?: boolean): Promise<IndexEntry[]>;
  /** A text file of one version (README.md, CHANGELOG.md), or null when it has none. */
  text(id: string, version: string, file: 'README.md' | 'CHANGELOG.md'): Promise<string | null>;
  manifest(id: string, version: string): Promise<Record<string, unknown>>;
  /** The package's bytes, refusing more than `maxBytes`. */
  download(id: string, version: string, maxBytes: number): Promise<Readable>;
}

const CACHE_MS = 10_000;
const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;

function checkSegments(id: string, version: string): void {
  if (!SEGMENT.test(id) || !SEGMENT.test(version)) throw new AiplatError('validation_failed', `"${id}@${version}" is not a plugin id and version`);
}

function parseIndex(raw: unknown, where: string): IndexEntry[] {
  const index = raw as Partial<RegistryIndex> | null;
  if (!index || index.format !== REGISTRY_INDEX_FORMAT || !Array.isArray(index.plugins)) {
    throw new AiplatError('registry_unreachable', `${where} is not an aiplat registry index (format ${REGISTRY_INDEX_FORMAT})`, { location: where });
  }
  return index.plugins;
}

abstract class CachedSource implements RegistrySource {
  private cached?: { at: number; entries: IndexEntry[] };
  constructor(readonly location: string) {}
  protected abstract readIndex(): Promise<IndexEntry[]>;
  abstract text(id: string, version: string, file: 'README.md' | 'CHANGELOG.md'): Promise<string | null>;
  abstract manifest(id: string, version: string): Promise<Record<string, unknown>>;
  abstract download(id: string, version: string, maxBytes: number): Promise<Readable>;

  async index(fresh = false): Promise<IndexEntry[]> {
    if (!fresh && this.cached && Date.now() - this.cached.at < CACHE_MS) return this.cached.entries;
    const entries = await this.readIndex();
    this.cached = { at: Date.now(), entries };
    return entries;
  }
}

class HttpSource extends CachedSource {
  private async get(rel: string, timeoutMs = 15_000): Promise<Response> {
    const url = `${this.location}/static/${rel}`;
    let response: Response;
    try {
      response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    } catch (error) {
      throw new AiplatError('registry_unreachable', `The registry ${this.location} could not be reached: ${(error as Error).cause ? String((error as { cause: Error }).cause.message) : (error as Error).message}`, { location: this.location });
    }
    return response;
  }

  protected async readIndex(): Promise<IndexEntry[]> {
    const response = await this.get('index.json');
    if (!response.ok) throw new AiplatError('registry_unreachable', `The registry ${this.location} answered ${response.status} for its index`, { location: this.location });
    return parseIndex(await response.json().catch(() => null), this.location);
  }

  async text(id: string, version: string, file: 'README.md' | 'CHANGELOG.md'): Promise<string | null> {
    checkSegments(id, version);
    const response = await this.get(`plugins/${id}/${version}/${file}`);
    if (response.status === 404) return null;
    if (!response.ok) throw new AiplatError('registry_unreachable', `The registry ${this.location} answered ${response.status} for ${id}@${version} ${file}`);
    return response.text();
  }

  async manifest(id: string, version: string): Promise<Record<string, unknown>> {
    checkSegments(id, version);
    const response = await this.get(`plugins/${id}/${version}/aiplat-plugin.json`);
    if (response.status === 404) throw new AiplatError('version_not_found', `The registry ${this.location} has no ${id}@${version}`, { id, version });
    if (!response.ok) throw new AiplatError('registry_unreachable', `The registry ${this.location} answered ${response.status} for ${id}@${version}`);
    return (await response.json()) as Record<string, unknown>;
  }

  async download(id: string, version: string, maxBytes: number): Promise<Readable> {
    checkSegments(id, version);
    const response = await this.get(`plugins/${id}/${version}/package.tgz`, 10 * 60_000);
    if (response.status === 404 || !response.body) throw new AiplatError('version_not_found', `The registry ${this.location} has no package for ${id}@${version}`, { id, version });
    if (!response.ok) throw new AiplatError('registry_unreachable', `The registry ${this.location} answered ${response.status} for the package of ${id}@${version}`);
    const length = Number(response.headers.get('content-length') ?? 0);
    if (length > maxBytes) throw new AiplatError('package_too_large', `The package of ${id}@${version} is ${length} bytes; this core accepts at most ${maxBytes}`);
    return Readable.fromWeb(response.body as import('node:stream/web').ReadableStream);
  }
}

class FolderSource extends CachedSource {
  protected async readIndex(): Promise<IndexEntry[]> {
    const file = path.join(this.location, 'index.json');
    if (!existsSync(file)) throw new AiplatError('registry_unreachable', `The folder ${this.location} holds no registry (no index.json)`, { location: this.location });
    let raw: unknown;
    try {
      raw = JSON.parse(await readFile(file, 'utf8'));
    } catch (error) {
      throw new AiplatError('registry_unreachable', `${file} cannot be read: ${(error as Error).message}`, { location: this.location });
    }
    return parseIndex(raw, this.location);
  }

  private file(id: string, version: string, name: string): string {
    checkSegments(id, version);
    return path.join(this.location, 'plugins', id, version, name);
  }

  async text(id: string, version: string, name: 'README.md' | 'CHANGELOG.md'): Promise<string | null> {
    const file = this.file(id, version, name);
    return existsSync(file) ? readFile(file, 'utf8') : null;
  }

  async manifest(id: string, version: string): Promise<Record<string, unknown>> {
    const file = this.file(id, version, 'aiplat-plugin.json');
    if (!existsSync(file)) throw new AiplatError('version_not_found', `The folder ${this.location} has no ${id}@${version}`, { id, version });
    return JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  }

  async download(id: string, version: string, maxBytes: number): Promise<Readable> {
    const file = this.file(id, version, 'package.tgz');
    if (!existsSync(file)) throw new AiplatError('version_not_found', `The folder ${this.location} has no package for ${id}@${version}`, { id, version });
    const { size } = await stat(file);
    if (size > maxBytes) throw new AiplatError('package_too_large', `The package of ${id}@${version} is ${size} bytes; this core accepts at most ${maxBytes}`);
    return createReadStream(file);
  }
}

/** A source for each configured location: `http(s)://…` is a registry service, anything else a folder. */
export function registrySources(locations: string[]): RegistrySource[] {
  return locations.map((location) => (/^https?:\/\//.test(location) ? new HttpSource(location) : new FolderSource(location)));
}
