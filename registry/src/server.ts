/**
 * The registry's HTTP service (docs/adr/0010): the publish and search API under /api/v1, the data
 * folder as a static mirror under /static/, and an npm registry for the @aiplat scope under /npm/.
 */
import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { readFile, rm, stat } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import Koa, { type Context } from 'koa';
import Router from '@koa/router';
import pino from 'pino';
import type { Logger } from '@aiplat/plugin-sdk';
import { searchIndex, SearchQueryError, type IndexEntry, type IndexVersion, type SearchQuery } from '@aiplat/plugin-sdk/package';
import { DEFAULT_MAX_UPLOAD_BYTES } from './config.js';
import { RegistryError, toErrorResponse } from './errors.js';
import { NpmScope } from './npm.js';
import { publishPackage } from './publish.js';
import { PublisherDirectory, type Publisher } from './publishers.js';
import { sendFile } from './send-file.js';
import { isPluginId, isVersion, RegistryStore, VERSION_FILES, type VersionFile } from './store.js';

export interface RegistryOptions {
  /** The data folder (created when missing). */
  dataDir: string;
  /** 0 picks a free port (see `url`). */
  port: number;
  host: string;
  /** A publishers file (re-read when it changes) or a fixed list. */
  publishers: string | Publisher[];
  logger?: Logger;
  /** Largest package a publish accepts, in bytes (512 MiB by default). */
  maxUploadBytes?: number;
  /** Base URL the registry is reached at, for the npm tarball links; the request's origin when unset. */
  publicUrl?: string;
}

export interface RunningRegistry {
  /** Where this process answers, e.g. http://127.0.0.1:8090. */
  url: string;
  port: number;
  store: RegistryStore;
  close(): Promise<void>;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const PACKAGE_TYPES = ['application/gzip', 'application/x-gzip', 'application/octet-stream'];
const SEARCH_PARAMS = ['q', 'category', 'aiplat', 'limit', 'cursor'] as const;
const IMMUTABLE = 'public, max-age=31536000, immutable';
const REVALIDATE = 'no-cache';

function idParam(value: string | undefined): string {
  const id = value ?? '';
  if (!isPluginId(id)) {
    throw new RegistryError('validation_failed', `"${id}" is not a plugin id: ids are 3–40 lowercase letters, digits or "-", starting with a letter.`, { field: 'id' });
  }
  return id;
}

function entryOf(store: RegistryStore, idText: string | undefined): IndexEntry {
  const id = idParam(idText);
  const entry = store.get(id);
  if (!entry) throw new RegistryError('not_found', `No plugin "${id}" is published on this registry.`, { id });
  return entry;
}

function versionOf(entry: IndexEntry, text: string | undefined): IndexVersion {
  const wanted = text === 'latest' ? entry.latest : (text ?? '');
  if (!isVersion(wanted)) {
    throw new RegistryError('validation_failed', `"${wanted}" is not a version: use a semver version such as 1.2.0, or "latest".`, { field: 'version' });
  }
  const found = entry.versions.find((v) => v.version === wanted);
  if (!found) {
    const known = entry.versions.slice(0, 10).map((v) => v.version);
    throw new RegistryError('not_found', `Plugin "${entry.id}" has no version ${wanted} (its versions, newest first: ${known.join(', ')}${entry.versions.length > 10 ? ', …' : ''}).`, {
      id: entry.id,
      version: wanted,
    });
  }
  return found;
}

function searchQuery(ctx: Context): SearchQuery {
  const query: SearchQuery = {};
  const unknown = Object.keys(ctx.query).filter((k) => !(SEARCH_PARAMS as readonly string[]).includes(k));
  if (unknown.length > 0) {
    throw new RegistryError('validation_failed', `Unknown search parameter${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `"${k}"`).join(', ')}: the search takes ${SEARCH_PARAMS.join(', ')}.`, { fields: unknown });
  }
  for (const key of SEARCH_PARAMS) {
    const value = ctx.query[key];
    if (value === undefined) continue;
    if (Array.isArray(value)) throw new RegistryError('validation_failed', `Give the search parameter "${key}" once, not ${value.length} times.`, { field: key });
    if (value.length > 200) throw new RegistryError('validation_failed', `The search parameter "${key}" is longer than 200 characters.`, { field: key });
    if (key === 'limit') {
      if (!/^\d+$/.test(value)) throw new RegistryError('validation_failed', `limit must be a whole number from 1 to 100, not "${value}".`, { field: 'limit' });
      query.limit = Number(value);
    } else if (value !== '') {
      query[key] = value;
    }
  }
  return query;
}

/** Counts the bytes of an upload and stops it past the limit. */
function byteLimit(max: number): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      seen += chunk.length;
      if (seen > max) {
        done(new RegistryError('payload_too_large', `The package is larger than this registry accepts (${max} bytes; REGISTRY_MAX_UPLOAD sets the limit).`, { limit: max }));
        return;
      }
      done(null, chunk);
    },
  });
}

async function receiveUpload(ctx: Context, store: RegistryStore, max: number): Promise<string> {
  const type = ctx.request.type;
  if (!PACKAGE_TYPES.includes(type)) {
    throw new RegistryError(
      'unsupported_media_type',
      `Send the package (.tgz) as the raw request body with "Content-Type: application/gzip" (or application/octet-stream), not ${type ? `"${type}"` : 'without a Content-Type'}.`,
    );
  }
  const declared = ctx.request.length;
  if (declared !== undefined && declared > max) {
    throw new RegistryError('payload_too_large', `The package is ${declared} bytes; this registry accepts at most ${max} bytes (REGISTRY_MAX_UPLOAD sets the limit).`, { limit: max, size: declared });
  }
  const file = `${store.tempPath('upload')}.tgz`;
  try {
    await pipeline(ctx.req, byteLimit(max), createWriteStream(file, { flags: 'wx', mode: 0o644 }));
  } catch (error) {
    await rm(file, { force: true });
    if (error instanceof RegistryError) throw error;
    throw new RegistryError('bad_request', `The upload did not complete: ${(error as Error).message}.`);
  }
  if ((await stat(file)).size === 0) {
    await rm(file, { force: true });
    throw new RegistryError('bad_request', 'The request body is empty: send the package (.tgz) as the body.');
  }
  return file;
}

const versionLinks = (id: string, version: string) => {
  const base = `/api/v1/plugins/${id}/versions/${version}`;
  return { self: base, readme: `${base}/readme`, changelog: `${base}/changelog`, download: `${base}/download`, static: `/static/plugins/${id}/${version}/package.tgz` };
};

/** Build the Koa application over an opened store. */
export function createRegistryApp(options: { store: RegistryStore; publishers: PublisherDirectory; logger: Logger; maxUploadBytes: number; publicUrl?: string }): Koa {
  const { store, publishers, logger, maxUploadBytes } = options;
  const npm = new NpmScope(store.dataDir);
  const app = new Koa();
  const api = new Router({ prefix: '/api/v1' });

  app.use(async (ctx, next) => {
    const started = process.hrtime.bigint();
    const incoming = ctx.get('x-request-id');
    const requestId = incoming && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    ctx.set('x-request-id', requestId);
    try {
      await next();
      if (ctx.status === 405 && ctx.body === undefined) {
        throw new RegistryError('method_not_allowed', `${ctx.method} is not allowed at ${ctx.path}; it accepts ${ctx.response.get('Allow') || 'other methods'}.`);
      }
      if (ctx.status === 404 && ctx.body === undefined) {
        throw new RegistryError('not_found', `Nothing is at ${ctx.method} ${ctx.path}. The registry answers under /api/v1/, /static/ and /npm/.`);
      }
    } catch (error) {
      const response = toErrorResponse(error, requestId);
      if (response.serverFault) logger.error({ err: error, requestId, method: ctx.method, path: ctx.path }, 'request failed');
      ctx.status = response.status;
      ctx.body = response.body;
      // A body the handler did not read must not be left hanging on a keep-alive connection.
      if (!ctx.req.complete) ctx.set('Connection', 'close');
    }
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    logger.debug({ requestId, method: ctx.method, url: ctx.url, status: ctx.status, ms: Math.round(ms * 100) / 100 }, 'request');
  });

  api.get('/health', (ctx) => {
    const plugins = store.entries();
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { status: 'ok', plugins: plugins.length, versions: plugins.reduce((n, e) => n + e.versions.length, 0) };
  });

  api.post('/packages', async (ctx) => {
    const publisher = await publishers.authenticate(ctx.get('authorization') || undefined);
    const file = await receiveUpload(ctx, store, maxUploadBytes);
    const { entry, version, verification } = await publishPackage(store, file, publisher);
    logger.info({ id: entry.id, version: version.version, publisher: publisher.name, signed: version.signed, verification: verification.status }, 'published');
    ctx.status = 201;
    ctx.set('Location', `/api/v1/plugins/${entry.id}/versions/${version.version}`);
    ctx.body = { id: entry.id, ...version, latest: entry.latest, verification: { status: verification.status, reason: verification.reason }, links: versionLinks(entry.id, version.version) };
  });

  api.get('/plugins', (ctx) => {
    const query = searchQuery(ctx);
    try {
      ctx.body = searchIndex(store.entries(), query);
    } catch (error) {
      if (error instanceof SearchQueryError) throw new RegistryError('validation_failed', `${error.message}.`, { field: error.field });
      throw error;
    }
    ctx.set('Cache-Control', REVALIDATE);
  });

  api.get('/plugins/:id', (ctx) => {
    ctx.body = entryOf(store, ctx.params.id);
    ctx.set('Cache-Control', REVALIDATE);
  });

  api.get('/plugins/:id/versions', (ctx) => {
    const entry = entryOf(store, ctx.params.id);
    ctx.body = { id: entry.id, latest: entry.latest, versions: entry.versions };
    ctx.set('Cache-Control', REVALIDATE);
  });

  api.get('/plugins/:id/versions/:version', async (ctx) => {
    const entry = entryOf(store, ctx.params.id);
    const version = versionOf(entry, ctx.params.version);
    const manifest = JSON.parse(await readFile(store.versionFile(entry.id, version.version, 'aiplat-plugin.json'), 'utf8')) as Record<string, unknown>;
    const has = async (file: VersionFile) => (await stat(store.versionFile(entry.id, version.version, file)).catch(() => undefined)) !== undefined;
    ctx.body = { id: entry.id, ...version, manifest, hasReadme: await has('README.md'), hasChangelog: await has('CHANGELOG.md'), links: versionLinks(entry.id, version.version) };
    ctx.set('Cache-Control', ctx.params.version === 'latest' ? REVALIDATE : IMMUTABLE);
  });

  for (const [route, file] of [
    ['readme', 'README.md'],
    ['changelog', 'CHANGELOG.md'],
  ] as const) {
    api.get(`/plugins/:id/versions/:version/${route}`, async (ctx) => {
      const entry = entryOf(store, ctx.params.id);
      const version = versionOf(entry, ctx.params.version);
      await sendFile(ctx, store.versionFile(entry.id, version.version, file), {
        type: 'text/markdown; charset=utf-8',
        cacheControl: ctx.params.version === 'latest' ? REVALIDATE : IMMUTABLE,
        notFound: () => new RegistryError('not_found', `${entry.id} ${version.version} has no ${file}.`, { id: entry.id, version: version.version }),
      });
    });
  }

  api.get('/plugins/:id/versions/:version/download', async (ctx) => {
    const entry = entryOf(store, ctx.params.id);
    const version = versionOf(entry, ctx.params.version);
    await sendFile(ctx, store.versionFile(entry.id, version.version, 'package.tgz'), {
      type: 'application/gzip',
      etag: version.sha256,
      filename: `${entry.id}-${version.version}.tgz`,
      cacheControl: ctx.params.version === 'latest' ? REVALIDATE : IMMUTABLE,
      notFound: () => new RegistryError('internal', `${entry.id} ${version.version}: package.tgz is missing from the data folder.`),
    });
  });

  // The data folder as a static mirror: only the files of the mirror layout, nothing else
  // (not the publishers file, not .tmp), with every path segment checked.
  app.use(async (ctx, next) => {
    if (ctx.path !== '/static' && !ctx.path.startsWith('/static/')) return next();
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') {
      ctx.set('Allow', 'GET, HEAD');
      throw new RegistryError('method_not_allowed', `The static mirror is read-only: ${ctx.method} is not allowed (publish with POST /api/v1/packages).`);
    }
    let parts: string[];
    try {
      parts = ctx.path.slice('/static/'.length).split('/').map(decodeURIComponent);
    } catch {
      throw new RegistryError('bad_request', `${ctx.path} is not a valid URL path.`);
    }
    const notFound = () =>
      new RegistryError('not_found', `Nothing is at ${ctx.path}. The static mirror holds index.json, plugins/<id>/index.json and plugins/<id>/<version>/{${VERSION_FILES.join(',')}}.`);
    const [a, b, c, d, ...more] = parts;
    if (more.length > 0) throw notFound();
    if (a === 'index.json' && b === undefined) {
      return sendFile(ctx, store.indexFile, { type: 'application/json; charset=utf-8', cacheControl: REVALIDATE, notFound });
    }
    if (a !== 'plugins' || b === undefined || !isPluginId(b)) throw notFound();
    if (c === 'index.json' && d === undefined) {
      return sendFile(ctx, path.join(store.pluginsDir, b, 'index.json'), { type: 'application/json; charset=utf-8', cacheControl: REVALIDATE, notFound });
    }
    if (c === undefined || !isVersion(c) || d === undefined || !(VERSION_FILES as readonly string[]).includes(d)) throw notFound();
    const file = d as VersionFile;
    const record = store.get(b)?.versions.find((v) => v.version === c);
    if (!record) throw notFound();
    return sendFile(ctx, store.versionFile(b, c, file), {
      type: file === 'package.tgz' ? 'application/gzip' : file === 'aiplat-plugin.json' ? 'application/json; charset=utf-8' : 'text/markdown; charset=utf-8',
      ...(file === 'package.tgz' ? { etag: record.sha256 } : {}),
      cacheControl: IMMUTABLE,
      notFound,
    });
  });

  app.use(async (ctx, next) => {
    if (ctx.path !== '/npm' && !ctx.path.startsWith('/npm/')) return next();
    // Tarball links point back at where the client reached the registry (REGISTRY_PUBLIC_URL behind a proxy).
    return npm.handle(ctx, ctx.path.slice('/npm'.length), options.publicUrl ?? `${ctx.protocol}://${ctx.host || `${ctx.socket.localAddress}:${ctx.socket.localPort}`}`);
  });

  app.use(api.routes());
  app.use(api.allowedMethods());
  return app;
}

/** Open the data folder and the publishers, and listen. */
export async function startRegistry(options: RegistryOptions): Promise<RunningRegistry> {
  const logger: Logger = options.logger ?? (pino({ level: 'info', base: { service: 'aiplat-registry' } }) as unknown as Logger);
  const store = await RegistryStore.open(options.dataDir, logger);
  const publishers = await PublisherDirectory.open(options.publishers, logger);
  const app = createRegistryApp({
    store,
    publishers,
    logger,
    maxUploadBytes: options.maxUploadBytes ?? DEFAULT_MAX_UPLOAD_BYTES,
    ...(options.publicUrl ? { publicUrl: options.publicUrl.replace(/\/+$/, '') } : {}),
  });
  const server = http.createServer(app.callback());
  // Large packages over slow links: allow a long upload, but not a slow start.
  server.requestTimeout = 30 * 60_000;
  server.headersTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const shown = options.host === '0.0.0.0' || options.host === '::' || options.host === '' ? '127.0.0.1' : options.host.includes(':') ? `[${options.host}]` : options.host;
  const url = `http://${shown}:${port}`;
  logger.info({ url, dataDir: store.dataDir }, 'registry listening');
  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    store,
    close() {
      closing ??= new Promise<void>((resolve) => {
        // Keep-alive connections close as soon as their request is answered; uploads in flight
        // get a moment to finish, then their connections go too.
        const idle = setInterval(() => server.closeIdleConnections(), 50);
        const force = setTimeout(() => server.closeAllConnections(), 5_000);
        server.close(() => {
          clearInterval(idle);
          clearTimeout(force);
          resolve();
        });
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}
