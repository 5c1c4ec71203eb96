import { randomUUID } from 'node:crypto';
import Koa, { type Middleware } from 'koa';
import Router from '@koa/router';
import compose from 'koa-compose';
import { AiplatError, coreHooks, type Logger, type RouteDefinition } from '@aiplat/plugin-sdk';
import { compileRoute, type RequestState, type RouteOwner, type RouteRuntime } from './route-contract.js';
import { toHttpError } from './errors.js';
import type { HttpMetrics } from './metrics.js';
import type { AccessLog } from './access-log.js';
import type { KernelHooks } from '../kernel/hooks.js';
import type { Redactor } from '../secrets/redactor.js';

export interface AppOptions {
  logger: Logger;
  accessLog: AccessLog;
  metrics: HttpMetrics;
  metricsToken?: string;
  hooks: KernelHooks;
  basePath: string;
  coreRoutes: RouteDefinition[];
  coreOwner: RouteOwner;
  routeRuntime: RouteRuntime;
  pluginDispatcher: Middleware<RequestState>;
  /** Serves the web shell and the plugins' UI remotes (after plugin routes and aliases). */
  webStatic?: Middleware<RequestState>;
  /** Applied to every error body, so a secret in a message or details shows as "••••". */
  redactor?: Redactor;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function buildApp(options: AppOptions): Koa<RequestState> {
  const app = new Koa<RequestState>({ proxy: true });
  const { logger, metrics, hooks, accessLog } = options;

  const coreRouter = new Router<RequestState>({ prefix: '/api/v1' });
  for (const route of options.coreRoutes) {
    coreRouter[route.method.toLowerCase() as 'get'](route.path, compileRoute(route, options.coreOwner, options.routeRuntime));
  }

  // Behind a reverse proxy that does not strip PUBLIC_URL's path, strip it here.
  if (options.basePath) {
    const base = options.basePath;
    app.use(async (ctx, next) => {
      if (ctx.path === base || ctx.path.startsWith(`${base}/`)) ctx.path = ctx.path.slice(base.length) || '/';
      await next();
    });
  }

  app.use(async (ctx, next) => {
    const started = process.hrtime.bigint();
    const incoming = ctx.get('x-request-id');
    const requestId = incoming && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    ctx.state.requestId = requestId;
    ctx.state.errorStyle = 'aiplat';
    ctx.set('x-request-id', requestId);
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) throw new AiplatError('not_found', `Nothing is at ${ctx.method} ${ctx.path}`);
    } catch (error) {
      const http = toHttpError(error, requestId, ctx.state.errorStyle);
      if (http.serverFault) logger.error({ err: error, requestId, method: ctx.method, path: ctx.path }, 'request failed');
      ctx.status = http.status;
      ctx.body = options.redactor ? options.redactor.redactValue(http.body) : http.body;
      // A body the handler did not read must not be left hanging on a keep-alive connection.
      if (!ctx.req.complete) ctx.set('connection', 'close');
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const route = (ctx as unknown as { _matchedRoute?: string })._matchedRoute ?? (ctx.path === '/metrics' ? '/metrics' : 'unmatched');
    metrics.observe(ctx.method, route, ctx.status, seconds);
    accessLog.write({ requestId, method: ctx.method, url: ctx.url, status: ctx.status, ms: Math.round(seconds * 1e5) / 100, user: ctx.state.user?.username });
    if (hooks.isUsed(coreHooks.requestFinished)) {
      hooks.callSync(coreHooks.requestFinished, {
        method: ctx.method,
        route,
        status: ctx.status,
        durationMs: seconds * 1000,
        plugin: ctx.state.plugin,
        requestId,
      });
    }
  });

  // Prometheus scrapes are public unless a scrape token is configured.
  const serveMetrics = async (ctx: Koa.ParameterizedContext<RequestState>) => {
    if (ctx.method !== 'GET') throw new AiplatError('method_not_allowed');
    if (options.metricsToken && ctx.get('authorization') !== `Bearer ${options.metricsToken}`) {
      throw new AiplatError('unauthenticated', 'This endpoint needs the scrape token (Authorization: Bearer <AIPLAT_METRICS_TOKEN>)');
    }
    ctx.type = metrics.registry.contentType;
    ctx.body = await metrics.registry.metrics();
  };
  app.use((ctx, next) => (ctx.path === '/metrics' ? serveMetrics(ctx) : next()));

  app.use(options.pluginDispatcher);
  if (options.webStatic) app.use(options.webStatic);
  app.use(
    compose([
      coreRouter.routes() as unknown as Middleware<RequestState>,
      coreRouter.allowedMethods({
        throw: true,
        methodNotAllowed: () => new AiplatError('method_not_allowed'),
        notImplemented: () => new AiplatError('method_not_allowed'),
      }) as unknown as Middleware<RequestState>,
    ]),
  );
  return app;
}
