import Koa, { type Middleware } from 'koa';
import Router from '@koa/router';
import compose from 'koa-compose';
import { AiplatError, type Logger, type RouteDefinition } from '@aiplat/plugin-sdk';
import { compileRoute, type RequestState, type RouteOwner, type RouteRuntime } from './route-contract.js';
import { toHttpError } from './errors.js';
import { finishRequest, requestIdOf, type RequestSinks } from './request-end.js';
import type { Redactor } from '../secrets/redactor.js';

export interface AppOptions extends RequestSinks {
  logger: Logger;
  metricsToken?: string;
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

export function buildApp(options: AppOptions): Koa<RequestState> {
  const app = new Koa<RequestState>({ proxy: true });
  const { logger, metrics } = options;

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
    const requestId = requestIdOf(ctx.get('x-request-id'));
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
    finishRequest(options, {
      requestId,
      method: ctx.method,
      route: (ctx as unknown as { _matchedRoute?: string })._matchedRoute ?? (ctx.path === '/metrics' ? '/metrics' : 'unmatched'),
      url: ctx.url,
      status: ctx.status,
      started,
      user: ctx.state.user?.username,
      plugin: ctx.state.plugin,
    });
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
