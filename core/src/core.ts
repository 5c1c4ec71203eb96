import 'reflect-metadata';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import http from 'node:http';
import { container as rootContainer } from 'tsyringe';
import pino from 'pino';
import {
  coreHooks,
  coreServices,
  PLUGIN_API_VERSION,
  type Logger,
  type PlatformInfo,
  type RouteDefinition,
} from '@aiplat/plugin-sdk';
import { basePath, type CoreConfig } from './config/config.js';
import { lockDataDir } from './db/lock.js';
import { openDatabase, type Database } from './db/database.js';
import { migrateCore } from './db/migrations.js';
import { AuthService } from './auth/auth-service.js';
import { authRoutes } from './auth/routes.js';
import { corePermissions, PermissionIndex } from './auth/permissions.js';
import { AuditWriter } from './audit/audit.js';
import { KernelHooks } from './kernel/hooks.js';
import { Kernel } from './kernel/kernel.js';
import { pluginAdminRoutes } from './kernel/routes.js';
import { buildApp } from './http/app.js';
import { HttpMetrics } from './http/metrics.js';
import { buildOpenApi } from './http/openapi.js';
import type { RouteRuntime } from './http/route-contract.js';
import { connectRedis } from './redis/redis.js';
import type { Redis } from 'ioredis';

export const CORE_VERSION: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

export interface RunningCore {
  url: string;
  port: number;
  config: CoreConfig;
  database: Database;
  kernel: Kernel;
  auth: AuthService;
  logger: Logger;
  /** Set when the admin was created with a generated password (printed once). */
  generatedAdminPassword?: string;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** A pino destination or logger to use instead of stdout. */
  logger?: pino.Logger;
}

export function createLogger(level: CoreConfig['logLevel']): pino.Logger {
  return pino({
    level,
    base: { service: 'aiplat' },
    redact: {
      paths: ['req.headers.authorization', 'password', '*.password', 'accessToken', 'refreshToken', '*.accessToken', '*.refreshToken', 'secret', '*.secret'],
      censor: '••••',
    },
  });
}

/** Start the core: database, migrations, bootstrap admin, plugins, HTTP. */
export async function startCore(config: CoreConfig, options: StartOptions = {}): Promise<RunningCore> {
  const logger = options.logger ?? createLogger(config.logLevel);
  const lock = lockDataDir(config.dataDir);
  let database: Database | undefined;
  let redis: Redis | undefined;
  try {
    if (config.redisUrl) redis = await connectRedis(config.redisUrl, logger);
    database = await openDatabase({ dataDir: config.dataDir, databaseUrl: config.databaseUrl, logger });
    const db = database.knex;
    await migrateCore(db);

    const auth = await AuthService.create({ db, secretKey: config.secretKey, accessTtl: config.accessTokenTtl, logger });
    const bootstrap = await auth.bootstrapAdmin(config.adminPassword);
    if (bootstrap.generatedPassword) {
      // Printed once, on the console only: it is never stored in clear.
      process.stderr.write(
        `\n  aiplat created the administrator account.\n    username: admin\n    password: ${bootstrap.generatedPassword}\n  Change it after signing in (or set AIPLAT_ADMIN_PASSWORD before the first start).\n\n`,
      );
    }

    // The hooks guard taps by plugin state, which the kernel (created next) knows.
    const kernelHolder: { current?: Kernel } = {};
    const hooks = new KernelHooks((owner) => kernelHolder.current?.isActive(owner) ?? owner === 'core');
    for (const hook of Object.values(coreHooks)) hooks.declareHook(hook, 'core');

    const platform: PlatformInfo = {
      version: CORE_VERSION,
      pluginApi: PLUGIN_API_VERSION,
      database: database.kind,
      dataDir: config.dataDir,
      publicUrl: config.publicUrl,
    };
    const container = rootContainer.createChildContainer();
    container.register(coreServices.logger.id, { useValue: logger });
    container.register(coreServices.database.id, { useValue: db });
    container.register(coreServices.hooks.id, { useValue: hooks });
    container.register(coreServices.platform.id, { useValue: platform });

    const permissions = new PermissionIndex();
    const audit = new AuditWriter();
    const routeRuntime: RouteRuntime = {
      db: () => db,
      authenticate: auth.authenticate,
      authorize: permissions.can,
      audit,
      logger,
    };
    const kernel = new Kernel({
      pluginDirs: config.pluginDirs,
      settings: {
        read: async (id) =>
          (((await db('plugin_states').where({ id }).first('config')) as { config?: Record<string, unknown> } | undefined)?.config ?? {}),
      },
      db,
      logger,
      hooks,
      container,
      platform,
      routeRuntime,
      corePermissions: new Set(corePermissions.map((p) => p.id)),
    });
    kernelHolder.current = kernel;
    const refreshPermissions = () =>
      permissions.rebuild([...corePermissions, ...kernel.allManifests().flatMap((m) => m.permissions ?? [])]);
    await kernel.boot();
    refreshPermissions();

    const coreRoutes: RouteDefinition[] = [
      {
        method: 'GET',
        path: '/health',
        summary: 'Liveness and readiness',
        tags: ['system'],
        public: { reason: 'load balancers and orchestrators probe it without credentials' },
        handler: async (ctx) => {
          let databaseUp = true;
          try {
            await ctx.db.raw('select 1');
          } catch {
            databaseUp = false;
          }
          const body = {
            status: databaseUp ? 'ok' : 'degraded',
            version: CORE_VERSION,
            pluginApi: PLUGIN_API_VERSION,
            database: database!.kind,
            redis: redis?.status === 'ready',
          };
          return databaseUp ? body : { __aiplatReply: true, status: 503, body };
        },
      },
      {
        method: 'GET',
        path: '/openapi.json',
        summary: 'OpenAPI 3.1 description of the core and the enabled plugins',
        tags: ['system'],
        public: { reason: 'an API description holds no data and tools read it before signing in' },
        handler: () =>
          buildOpenApi(
            [
              { prefix: '/api/v1', owner: 'core', routes: coreRoutes },
              ...kernel.routesOf().flatMap(({ plugin, routes, aliases }) => [
                { prefix: `/api/plugins/${plugin}`, owner: plugin, routes },
                ...aliases.map((alias) => ({ prefix: alias, owner: plugin, routes })),
              ]),
            ],
            { version: CORE_VERSION, serverUrl: config.publicUrl },
          ),
      },
      ...authRoutes(auth),
      ...pluginAdminRoutes(kernel),
    ];

    const metrics = new HttpMetrics();
    const app = buildApp({
      logger,
      metrics,
      metricsToken: config.metricsToken,
      hooks,
      basePath: basePath(config),
      coreRoutes,
      coreOwner: { id: 'core', permissions: new Set(corePermissions.map((p) => p.id)) },
      routeRuntime,
      pluginDispatcher: kernel.dispatcher(),
    });

    const server = http.createServer(app.callback());
    server.keepAliveTimeout = 65_000;
    let inFlight = 0;
    server.on('request', (_req, res) => {
      inFlight++;
      res.once('close', () => inFlight--);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, config.host, () => resolve());
    });
    const port = (server.address() as AddressInfo).port;
    const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
    const url = `http://${host}:${port}`;
    logger.info({ url, database: database.kind, plugins: kernel.list().map((p) => `${p.id}:${p.state}`) }, 'aiplat core listening');

    let stopping: Promise<void> | undefined;
    const stop = () =>
      (stopping ??= (async () => {
        logger.info('shutting down: draining requests');
        server.close();
        server.closeIdleConnections();
        const deadline = Date.now() + config.shutdownGrace * 1000;
        while (inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
        server.closeAllConnections();
        await kernel.stopAll();
        await database!.close();
        redis?.disconnect();
        lock.release();
        logger.info('stopped');
      })());

    return { url, port, config, database, kernel, auth, logger, generatedAdminPassword: bootstrap.generatedPassword, stop };
  } catch (error) {
    await database?.close().catch(() => undefined);
    redis?.disconnect();
    lock.release();
    throw error;
  }
}
