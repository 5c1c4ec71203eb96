/**
 * Test helpers: plugin folders packed into real packages (with the SDK's package module), a
 * registry started on a temporary data folder, and a package whose file was changed after signing
 * (built by hand with tar-stream).
 */
import { createHash } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import pino from 'pino';
import tar from 'tar-stream';
import type { Logger } from '@aiplat/plugin-sdk';
import { generateKeyPair, packFolder, writeSignature, type KeyPair } from '@aiplat/plugin-sdk/package';
import { hashToken, type Publisher } from '../src/publishers.js';
import { startRegistry, type RunningRegistry } from '../src/server.js';

export const silentLogger = pino({ level: 'silent' }) as unknown as Logger;

const tempDirs: string[] = [];

export function tempDir(label: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), `aiplat-registry-${label}-`));
  tempDirs.push(dir);
  return dir;
}

export async function removeTempDirs(): Promise<void> {
  await Promise.all(tempDirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}

export interface TestPublisher {
  name: string;
  token: string;
  key: KeyPair;
  record: Publisher;
}

export function makePublisher(name: string): TestPublisher {
  const token = `test-token-${name}-${Math.random().toString(36).slice(2)}`;
  const key = generateKeyPair(name);
  const { privateKey: _private, ...publicKey } = key;
  return { name, token, key, record: { name, tokenSha256: hashToken(token), keys: [publicKey] } };
}

export interface PluginSpec {
  id: string;
  version: string;
  en?: string;
  zh?: string;
  description?: string;
  categories?: string[];
  aiplat?: string;
  readme?: string | null;
  changelog?: string | null;
  /** Extra manifest fields. */
  manifest?: Record<string, unknown>;
  /** Extra files: path → content. */
  files?: Record<string, string>;
}

export function manifestOf(spec: PluginSpec): Record<string, unknown> {
  return {
    id: spec.id,
    version: spec.version,
    displayName: { en: spec.en ?? `Plugin ${spec.id}`, 'zh-CN': spec.zh ?? `插件 ${spec.id}` },
    ...(spec.description ? { description: { en: spec.description, 'zh-CN': `${spec.description}（中文）` } } : {}),
    engines: { aiplat: spec.aiplat ?? '^1.0.0' },
    backend: { entry: 'dist/backend/index.js' },
    permissions: [{ id: `${spec.id}:use`, title: { en: 'Use it', 'zh-CN': '使用' } }],
    ...(spec.categories ? { categories: spec.categories } : {}),
    ...spec.manifest,
  };
}

/** Write a plugin folder for a spec (manifest, backend bundle, README, CHANGELOG). */
export async function writePluginFolder(dir: string, spec: PluginSpec): Promise<void> {
  await mkdir(path.join(dir, 'dist/backend'), { recursive: true });
  await writeFile(path.join(dir, 'aiplat-plugin.json'), `${JSON.stringify(manifestOf(spec), null, 2)}\n`);
  await writeFile(path.join(dir, 'dist/backend/index.js'), `export default { id: ${JSON.stringify(spec.id)}, version: ${JSON.stringify(spec.version)} };\n`);
  if (spec.readme !== null) await writeFile(path.join(dir, 'README.md'), spec.readme ?? `# ${spec.id}\n\nVersion ${spec.version}.\n`);
  if (spec.changelog !== null) await writeFile(path.join(dir, 'CHANGELOG.md'), spec.changelog ?? `## ${spec.version}\n\n- Released.\n`);
  for (const [rel, content] of Object.entries(spec.files ?? {})) {
    await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await writeFile(path.join(dir, rel), content);
  }
}

/**
 * Build a package: `key` signs it, `null` writes an unsigned SIGNATURE, `'none'` packs no
 * SIGNATURE at all (by hand, since packFolder needs one).
 */
export async function buildPackage(spec: PluginSpec, key: KeyPair | null | 'none'): Promise<Buffer> {
  const work = tempDir('pkg');
  const dir = path.join(work, 'plugin');
  await writePluginFolder(dir, spec);
  if (key === 'none') return tarGz(await readFolder(dir));
  await writeSignature(dir, key ? { key } : {});
  const out = path.join(work, 'package.tgz');
  await packFolder(dir, out);
  return readFile(out);
}

async function readFolder(dir: string, rel = ''): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (const name of (await readdir(path.join(dir, rel))).sort()) {
    const r = rel ? `${rel}/${name}` : name;
    if ((await stat(path.join(dir, r))).isDirectory()) for (const [k, v] of await readFolder(dir, r)) files.set(k, v);
    else files.set(r, await readFile(path.join(dir, r)));
  }
  return files;
}

/** A gzip tar of the given files (entries at the root), built with tar-stream. */
export async function tarGz(files: Map<string, Buffer>): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c) => chunks.push(c as Buffer));
  const done = new Promise<void>((resolve, reject) => {
    pack.on('end', () => resolve());
    pack.on('error', reject);
  });
  for (const [name, content] of files) pack.entry({ name, size: content.length, mode: 0o644, mtime: new Date(0) }, content);
  pack.finalize();
  await done;
  return gzipSync(Buffer.concat(chunks));
}

/** Read every entry of a .tgz into memory. */
export async function untarGz(tgz: Buffer): Promise<Map<string, Buffer>> {
  const extract = tar.extract();
  const files = new Map<string, Buffer>();
  const done = new Promise<void>((resolve, reject) => {
    extract.on('entry', (header, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c) => chunks.push(c as Buffer));
      stream.on('end', () => {
        files.set(header.name, Buffer.concat(chunks));
        next();
      });
    });
    extract.on('finish', () => resolve());
    extract.on('error', reject);
  });
  extract.end(gunzipSync(tgz));
  await done;
  return files;
}

/** A signed package with one byte of one file changed after signing (SIGNATURE left as it was). */
export async function modifiedPackage(spec: PluginSpec, key: KeyPair, file = 'README.md'): Promise<Buffer> {
  const files = await untarGz(await buildPackage(spec, key));
  const content = Buffer.from(files.get(file)!);
  content[0] = content[0]! ^ 0x01;
  files.set(file, content);
  return tarGz(files);
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

export async function startTestRegistry(dataDir: string, publishers: Publisher[] | string, extra: { maxUploadBytes?: number } = {}): Promise<RunningRegistry> {
  return startRegistry({ dataDir, port: 0, host: '127.0.0.1', publishers, logger: silentLogger, ...extra });
}

export function publish(url: string, token: string | undefined, body: Buffer, contentType = 'application/gzip'): Promise<Response> {
  return fetch(`${url}/api/v1/packages`, {
    method: 'POST',
    headers: { 'content-type': contentType, ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body,
  });
}

export async function getJson(url: string): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.json(), headers: res.headers };
}
