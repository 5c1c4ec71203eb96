/**
 * `aiplat-plugin publish <file.tgz|dir>`: upload a package to a registry (`POST /api/v1/packages`).
 */
import { createReadStream, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { readPackage, verifyPackage, type PackageContents } from '@aiplat/plugin-sdk/package';
import { packPlugin } from './pack.js';
import { CliError, consoleOutput, formatSize, type Output } from './util.js';

export const TOKEN_ENV = 'AIPLAT_REGISTRY_TOKEN';
export const REGISTRY_ENV = 'AIPLAT_REGISTRY_URL';

export interface PublishOptions {
  registry?: string;
  token?: string;
  /** Key pair file used when a folder is packed first. */
  key?: string;
  /** When a folder is packed first: run the build (default true). */
  build?: boolean;
  output?: Output;
}

export interface PublishResult {
  id: string;
  version: string;
  status: number;
  body: unknown;
}

/** The message of the registry's error body (`{ error: { code, message } }`), or its text. */
function serverMessage(body: unknown, text: string): string {
  const error = (body as { error?: { message?: unknown; code?: unknown } } | undefined)?.error;
  if (error && typeof error.message === 'string') return error.message;
  if (body && typeof (body as { message?: unknown }).message === 'string') return (body as { message: string }).message;
  return text.trim().slice(0, 500) || '(no message)';
}

function registryUrl(registry: string): URL {
  let base: URL;
  try {
    base = new URL(registry.endsWith('/') ? registry : `${registry}/`);
  } catch {
    throw new CliError(`--registry "${registry}" is not a URL (e.g. https://plugins.example.com)`, 2);
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new CliError(`--registry "${registry}" must be an http or https URL`, 2);
  return new URL('api/v1/packages', base);
}

/** `aiplat-plugin publish`. */
export async function publish(source: string, options: PublishOptions): Promise<PublishResult> {
  const output = options.output ?? consoleOutput;
  const registry = options.registry ?? process.env[REGISTRY_ENV];
  if (!registry) throw new CliError(`no registry: pass --registry <url> or set ${REGISTRY_ENV}`, 2);
  const url = registryUrl(registry);
  const token = options.token ?? process.env[TOKEN_ENV];
  if (!token) throw new CliError(`no publisher token: pass --token <token> or set ${TOKEN_ENV}`, 2);
  const resolved = path.resolve(source);
  if (!existsSync(resolved)) throw new CliError(`${source} does not exist`);

  let work: string | undefined;
  try {
    let file = resolved;
    if (statSync(resolved).isDirectory()) {
      work = mkdtempSync(path.join(os.tmpdir(), 'aiplat-publish-'));
      file = (await packPlugin(resolved, { out: `${work}${path.sep}`, ...(options.key ? { key: options.key } : {}), build: options.build !== false, output })).file;
    }
    let contents: PackageContents;
    try {
      contents = await readPackage(file);
    } catch (error) {
      throw new CliError(`${source} is not a plugin package: ${(error as Error).message}`);
    }
    const id = String(contents.manifest.id);
    const version = String(contents.manifest.version);
    const check = verifyPackage(contents, []);
    if (check.status === 'modified') throw new CliError(`${id} ${version} is modified (${check.reason}): pack it again`);
    if (check.status === 'unsigned') output.warn(`${id} ${version} is unsigned: cores install it only when an administrator allows ${id} (sign with --key)`);

    output.info(`publishing ${id} ${version} (${formatSize(contents.size)}) to ${url.origin}${url.pathname}`);
    let response: Response;
    try {
      response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/gzip', 'content-length': String(contents.size), authorization: `Bearer ${token}`, accept: 'application/json' },
        body: Readable.toWeb(createReadStream(file)) as ReadableStream<Uint8Array>,
        duplex: 'half',
      } as RequestInit & { duplex: 'half' });
    } catch (error) {
      const cause = (error as { cause?: { message?: string; code?: string } }).cause;
      throw new CliError(`cannot reach the registry at ${url.origin}: ${cause?.code ?? cause?.message ?? (error as Error).message}`);
    }
    const text = await response.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON: shown as text
    }
    const message = serverMessage(body, text);
    switch (response.status) {
      case 200:
      case 201:
        output.info(`published ${id} ${version}`);
        output.out(typeof body === 'string' ? body : JSON.stringify(body, null, 2));
        return { id, version, status: response.status, body };
      case 409:
        throw new CliError(`version ${version} of ${id} is already published; bump the version in aiplat-plugin.json (a published version is never replaced)`);
      case 401:
        throw new CliError(`the registry did not accept the token (401): ${message}`);
      case 403:
        throw new CliError(`the registry refused to publish ${id} (403): ${message}`);
      case 413:
        throw new CliError(`the package is too large for the registry (413): ${message}`);
      default:
        if (response.status >= 400 && response.status < 500) throw new CliError(`the registry refused ${id} ${version} (${response.status}): ${message}`);
        throw new CliError(`the registry failed (${response.status}): ${message}`);
    }
  } finally {
    if (work) rmSync(work, { recursive: true, force: true });
  }
}
