/**
 * The web shell and the plugins' UI remotes, served by the core (ARCHITECTURE §4).
 *
 * - `/_remotes/<plugin id>/<file>`: the built remote of an enabled plugin (the folder of its
 *   manifest's `web.remoteEntry`); a disabled, failed or unknown plugin's remote answers 404.
 * - everything else that is not `/api/…` or `/metrics`: the shell's production build, with the
 *   single-page-app fallback to `index.html` for the shell's own routes.
 *
 * Both are static code without data, public like any web app's assets. Hashed assets are cached
 * for a year; `index.html`, `remoteEntry.js` and `mf-manifest.json` are revalidated on every load,
 * so a plugin upgrade or a new shell build shows on the next page load. Files precompressed at build
 * time (`.br`, `.gz`) are sent when the browser accepts them.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import send from 'koa-send';
import type { Middleware, ParameterizedContext } from 'koa';
import { AiplatError, PLUGIN_ID_PATTERN } from '@aiplat/plugin-sdk';
import type { Kernel } from '../kernel/kernel.js';
import type { RequestState } from '../http/route-contract.js';

export interface WebStaticOptions {
  kernel: Kernel;
  /** The shell's build folder (`web-shell/dist`); it may be missing (not built). */
  shellDir: string;
  /** PUBLIC_URL's path prefix ('' at the root). */
  basePath: string;
  version: string;
}

const PLUGIN_ID = new RegExp(PLUGIN_ID_PATTERN);
const YEAR = 365 * 24 * 3600 * 1000;

type Ctx = ParameterizedContext<RequestState>;

function markRoute(ctx: Ctx, route: string): void {
  // The metrics label: one series per kind of static file, not one per file.
  (ctx as unknown as { _matchedRoute?: string })._matchedRoute = route;
}

/** The folder a plugin's built remote lives in, or undefined when it has no UI or is not enabled. */
export function remoteDir(kernel: Kernel, id: string): string | undefined {
  // Asked for every file of a remote: map lookups only (kernel.status would list dependents).
  if (!PLUGIN_ID.test(id) || !kernel.has(id) || !kernel.isActive(id)) return undefined;
  const manifest = kernel.manifestOf(id);
  const dir = kernel.dirOf(id);
  if (!manifest?.web || !dir) return undefined;
  return path.dirname(path.resolve(dir, manifest.web.remoteEntry));
}

async function sendFile(ctx: Ctx, root: string, file: string, immutable: boolean): Promise<boolean> {
  try {
    const sent = await send(ctx, file, {
      root,
      immutable,
      maxage: immutable ? YEAR : 0,
      brotli: true,
      gzip: true,
      hidden: false,
      index: false,
      setHeaders: (res) => {
        if (!immutable) res.setHeader('cache-control', 'no-cache');
        res.setHeader('x-content-type-options', 'nosniff');
      },
    });
    if (!sent) return false;
    if (ctx.fresh) {
      ctx.status = 304;
      ctx.body = null;
    }
    return true;
  } catch (error) {
    const status = (error as { status?: number }).status;
    if (status === 404 || status === 400 || status === 403) return false;
    throw error;
  }
}

export function webStatic(options: WebStaticOptions): Middleware<RequestState> {
  const { kernel, shellDir, basePath } = options;
  let indexCache: { mtimeMs: number; html: string } | undefined;

  /** index.html with a <base href> for PUBLIC_URL's path and the shell's boot settings. */
  const indexHtml = (): string | undefined => {
    const file = path.join(shellDir, 'index.html');
    if (!existsSync(file)) return undefined;
    const { mtimeMs } = statSync(file);
    if (indexCache?.mtimeMs !== mtimeMs) {
      const boot = JSON.stringify({ basePath, version: options.version }).replace(/</g, '\\u003c');
      const html = readFileSync(file, 'utf8').replace(
        /<head>/i,
        `<head>\n    <base href="${basePath}/" />\n    <script>window.__AIPLAT__ = ${boot};</script>`,
      );
      indexCache = { mtimeMs, html };
    }
    return indexCache.html;
  };

  const serveRemote = async (ctx: Ctx) => {
    markRoute(ctx, '/_remotes/:plugin/*');
    const rest = ctx.path.slice('/_remotes/'.length);
    const slash = rest.indexOf('/');
    const id = slash === -1 ? rest : rest.slice(0, slash);
    const file = slash === -1 ? '' : rest.slice(slash + 1);
    const root = remoteDir(kernel, id);
    if (!root) throw new AiplatError('not_found', `No enabled plugin "${id}" with a web UI`);
    if (!file || !(await sendFile(ctx, root, file, file.startsWith('assets/')))) {
      throw new AiplatError('not_found', `Plugin ${id} has no UI file "${file}" (is its remote built? npm run build:ui)`);
    }
  };

  const serveShell = async (ctx: Ctx, next: () => Promise<unknown>) => {
    const file = ctx.path.slice(1);
    if (file && file !== 'index.html' && (await sendFile(ctx, shellDir, file, file.startsWith('assets/')))) {
      markRoute(ctx, '/assets/*');
      return;
    }
    // A path with a file extension that does not exist is a missing file, not a shell route.
    if (path.extname(ctx.path) && ctx.path !== '/index.html') return next();
    markRoute(ctx, '/');
    const html = indexHtml();
    ctx.set('cache-control', 'no-cache');
    ctx.type = 'html';
    if (!html) {
      ctx.status = 503;
      ctx.body =
        '<!doctype html><meta charset="utf-8"><title>aiplat</title><body style="font-family:sans-serif;padding:2rem">' +
        '<h1>The aiplat web shell is not built</h1><p>Run <code>npm run build:ui</code> (or <code>npm start</code>, which builds it), then reload. ' +
        `The API is up: <a href="${basePath}/api/v1/health">${basePath}/api/v1/health</a>.</p>`;
      return;
    }
    ctx.body = html;
  };

  return async (ctx, next) => {
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return next();
    const p = ctx.path;
    if (p.startsWith('/api/') || p === '/api' || p === '/metrics') return next();
    if (p.startsWith('/_remotes/')) return serveRemote(ctx);
    return serveShell(ctx, next);
  };
}
