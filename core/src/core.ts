import 'reflect-metadata';
import './http/tick-shape.js'; // early, before the start-up's full collections (the module says why)
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import http from 'node:http';
import { container as rootContainer } from 'tsyringe';
import pino from 'pino';
import {
  coreHooks,
  coreServices,
  coreTopics,
  PLUGIN_API_VERSION,
  type Logger,
  type PlatformInfo,
  type RouteDefinition,
} from '@aiplat/plugin-sdk';
import { uiRoutes } from './web/routes.js';
import { webStatic } from './web/static.js';
import { basePath, type CoreConfig, type LogLevel } from './config/config.js';
import { lockDataDir } from './db/lock.js';
import { openDatabase, type Database } from './db/database.js';
import { migrateCore } from './db/migrations.js';
import { AuthService } from './auth/auth-service.js';
import { authRoutes } from './auth/routes.js';
import { OidcService } from './auth/oidc.js';
import { corePermissions } from './auth/permissions.js';
import { IdentityService } from './auth/identity.js';
import { identityRoutes } from './auth/identity-routes.js';
import { ApiTokens, isApiToken } from './auth/api-tokens.js';
import { AuditWriter } from './audit/audit.js';
import { AuditService } from './audit/service.js';
import { KernelHooks } from './kernel/hooks.js';
import { Kernel } from './kernel/kernel.js';
import { pluginAdminRoutes } from './kernel/routes.js';
import { PluginInstaller, readTrustedKeys } from './plugins/installer.js';
import { pluginPackageRoutes } from './plugins/routes.js';
import { registrySources } from './plugins/sources.js';
import { buildApp } from './http/app.js';
import { requestListener } from './http/direct.js';
import { HttpMetrics, dropPluginMetrics, pluginMetrics } from './http/metrics.js';
import { RateLimits } from './limits/rate-limiter.js';
import { AccessLog } from './http/access-log.js';
import { buildOpenApi } from './http/openapi.js';
import type { RouteRuntime } from './http/route-contract.js';
import { connectRedis } from './redis/redis.js';
import { Redactor } from './secrets/redactor.js';
import { SecretSettings } from './secrets/store.js';
import { pluginSettingsRoutes } from './secrets/routes.js';
import { dataDirInstanceId } from './db/instance.js';
import { createOperations, type OperationsService } from './operations/operations.js';
import { operationRoutes } from './operations/routes.js';
import { createEventHub, StreamServer, StreamTickets, streamRoutes, type EventHub } from './events/index.js';
import type { EventBus } from '@aiplat/plugin-sdk';
import { createStorage, type Storage } from './storage/storage.js';
import type { Redis } from 'ioredis';
import { SchedulerRuntime } from './scheduler/runtime.js';
import { schedulerRoutes } from './scheduler/routes.js';

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
  /** The event bus the core publishes on (e.g. the `operations` topic). */
  events: EventBus;
  /** Long-running operations; `forOwner(id)` is what a plugin gets as `coreServices.operations`. */
  operations: OperationsService;
  /** Blob storage; itself the core's namespace (`core/`), `forPlugin(id)` a plugin's. */
  storage: Storage;
  /** The scheduler, the GPU ledger's nodes and this core's agent (core/src/scheduler/). */
  scheduler: SchedulerRuntime;
  /** Set when the admin was created with a generated password (printed once). */
  generatedAdminPassword?: string;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** A pino logger whose level and destination to use instead of stdout (the core adds its redaction). */
  logger?: pino.Logger;
}

export interface LoggerOptions {
  /** Secret plaintexts and secret-named fields show as "••••" in every line. */
  redactor?: Redactor;
  /** Where the lines go; stdout by default. */
  destination?: pino.DestinationStream;
}

export function createLogger(level: LogLevel, options: LoggerOptions = {}): pino.Logger {
  const redactor = options.redactor ?? new Redactor();
  const pinoOptions: pino.LoggerOptions = {
    level,
    base: { service: 'aiplat' },
    // Field names here (cheap), known plaintexts in the finished line (error messages and stacks included).
    formatters: { log: (obj) => redactor.redactNames(obj) },
    hooks: { streamWrite: (line) => redactor.redactText(line) },
  };
  if (options.destination) return pino(pinoOptions, options.destination);
  // stdout, buffered: one write per 4 KiB of log lines instead of one per line (an access log line
  // per request would otherwise cost a system call each). Flushed every 250 ms, so a quiet core's
  // lines are never late by more than that, and on stop and on exit.
  const stdout = pino.destination({ dest: 1, sync: false, minLength: 4096 });
  setInterval(() => {
    try {
      stdout.flush();
    } catch {
      // a destroyed destination has nothing left to flush
    }
  }, 250).unref();
  process.once('exit', () => {
    try {
      stdout.flushSync();
    } catch {
      // nothing more can be done for log lines at exit
    }
  });
  return pino(pinoOptions, stdout);
}

/** The core's logger: on the given logger's destination and level when there is one, always redacting. */
function coreLogger(config: CoreConfig, redactor: Redactor, given: pino.Logger | undefined): pino.Logger {
  if (!given) return createLogger(config.logLevel, { redactor });
  const destination = (given as unknown as Record<symbol, pino.DestinationStream>)[pino.symbols.streamSym];
  return createLogger(given.level as LogLevel, { redactor, destination });
}

/** Start the core: database, migrations, bootstrap admin, plugins, HTTP. */
export async function startCore(config: CoreConfig, options: StartOptions = {}): Promise<RunningCore> {
  // The one redactor of logs, audit details and error bodies; the secret settings teach it their plaintexts.
  const redactor = new Redactor();
  for (const value of [config.secretKey, config.adminPassword, config.metricsToken, config.oidc?.clientSecret, config.s3SecretAccessKey]) redactor.addSecret(value);
  const logger = coreLogger(config, redactor, options.logger);
  const lock = lockDataDir(config.dataDir);
  let database: Database | undefined;
  let redis: Redis | undefined;
  let runningOperations: OperationsService | undefined;
  let hub: EventHub | undefined;
  let scheduler: SchedulerRuntime | undefined;
  try {
    if (config.redisUrl) redis = await connectRedis(config.redisUrl, logger);
    database = await openDatabase({ dataDir: config.dataDir, databaseUrl: config.databaseUrl, logger });
    const db = database.knex;
    await migrateCore(db);
    // Refuses to start when stored secrets need AIPLAT_SECRET_KEY and it is missing or wrong.
    const secretSettings = await SecretSettings.open({ db, masterKey: config.secretKey, redactor, logger });
    // The event bus: in this process, or through Redis when REDIS_URL is set (core/src/events/).
    const eventHub = await createEventHub({ db, redis, logger });
    hub = eventHub;
    const events: EventBus = eventHub.coreBus();
    const operations = createOperations({ db, events, logger, instanceId: dataDirInstanceId(config.dataDir) });
    runningOperations = operations;
    await operations.init();
    // Blobs: the data folder's storage/, or an S3-compatible bucket, checked here (the AWS SDK loads only then).
    const s3 = config.storage === 's3' ? (await import('./storage/s3-backend.js')).S3Backend.fromConfig(config, logger) : undefined;
    const storage = await createStorage({ dataDir: config.dataDir, logger, backend: s3 });

    // Users, roles and teams, held in memory for cheap authorization (core/src/auth/identity.ts).
    const identity = new IdentityService(() => db, logger);
    const auth = await AuthService.create({ db, secretKey: config.secretKey, accessTtl: config.accessTokenTtl, logger, principal: (user) => identity.principal(user) });
    const bootstrap = await auth.bootstrapAdmin(config.adminPassword);
    if (bootstrap.generatedPassword) {
      // Printed once, on the console only: it is never stored in clear.
      process.stderr.write(
        `\n  aiplat created the administrator account.\n    username: admin\n    password: ${bootstrap.generatedPassword}\n  Keep it: it is shown only this once (set AIPLAT_ADMIN_PASSWORD before the first start to choose it).\n\n`,
      );
    }

    // The hooks guard taps by plugin state, which the kernel (created next) knows.
    const kernelHolder: { current?: Kernel } = {};
    const hooks = new KernelHooks((owner) => kernelHolder.current?.isActive(owner) ?? owner === 'core');
    for (const hook of Object.values(coreHooks)) hooks.declareHook(hook, 'core');

    // [scheduler] Declares its hooks and extension points before plugins register against them.
    const instanceId = dataDirInstanceId(config.dataDir);
    const schedulerRuntime = new SchedulerRuntime({
      sealer: {
        get canStoreSecrets() {
          return secretSettings.canStoreSecrets;
        },
        seal: (nodeId, secrets) => secretSettings.sealNodeSecrets(nodeId, secrets),
        open: (nodeId, sealed) => secretSettings.openNodeSecrets(nodeId, sealed),
      },
      db,
      kind: database.kind,
      events,
      hooks,
      logger,
      instanceId,
      dataDir: config.dataDir,
      nodeId: config.nodeId,
      strategy: config.schedulerStrategy,
      preemption: config.schedulerPreemption,
      timeZone: config.quotaTimeZone,
      stopGrace: config.stopGrace,
      simulatedGpus: config.simulatedGpus,
      simulatedNodes: config.simulatedNodes,
      gpuSampleSeconds: config.gpuSampleSeconds,
      gpuMetricsRetentionHours: config.gpuMetricsRetentionHours,
      canInTeam: (principal, permission, team) => identity.canInTeam(principal, permission, team),
      teamExists: (team) => identity.teamExists(team),
    });
    scheduler = schedulerRuntime;

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

    await identity.load();
    const apiTokens = new ApiTokens(() => db, identity);
    // [audit] The hash-chained, append-only audit log (core/src/audit/, docs/audit.md).
    const audit = new AuditWriter(redactor, {
      logger,
      serialize: database.kind === 'postgres' ? 'advisory-lock' : 'single-connection',
      // BENCHMARK ONLY: `npm run bench:http` compares a mutating route with audit on and off.
      disabledForBench: process.env.AIPLAT_AUDIT_DISABLED_FOR_BENCH === '1',
    });
    const auditService = new AuditService({ db: () => db, writer: audit, logger, headFile: config.auditHeadFile, headInterval: config.auditHeadInterval });
    const routeRuntime: RouteRuntime = {
      db: () => db,
      // A bearer token is a personal API token (aip_…) or a signed-in session's access token; either
      // way the user must still be active.
      authenticate: async (token) => {
        if (!token) return undefined;
        if (isApiToken(token)) return apiTokens.verify(token);
        const principal = await auth.tokens.verifyAccess(token);
        return principal && identity.isActive(principal.id) ? principal : undefined;
      },
      cachedPrincipal: (token) => {
        if (isApiToken(token)) return apiTokens.cached(token);
        const principal = auth.tokens.cached(token);
        return principal && identity.isActive(principal.id) ? principal : undefined;
      },
      authorize: identity.can,
      authorizeInTeam: (principal, permission, teamId) => identity.canInTeam(principal, permission, teamId),
      audit,
      logger,
    };
    // Prometheus metrics: the core's own and the series plugins give (coreServices.metrics).
    const metrics = new HttpMetrics();
    const pluginMetricNames = new Map<string, Set<string>>();
    const rateLimits = new RateLimits(redis);
    const kernel = new Kernel({
      pluginDirs: config.pluginDirs,
      settings: secretSettings,
      db,
      logger,
      hooks,
      container,
      platform,
      routeRuntime,
      corePermissions: new Set(corePermissions.map((p) => p.id)),
      // Services each plugin gets in its own scope, by service-ref id.
      scopedServices: (pluginId) => ({
        [coreServices.storage.id]: storage.forPlugin(pluginId),
        [coreServices.operations.id]: operations.forOwner(pluginId),
        [coreServices.events.id]: eventHub.bus(pluginId),
        [coreServices.audit.id]: auditService.forPlugin(pluginId),
        [coreServices.workloads.id]: schedulerRuntime.service(pluginId),
        [coreServices.rateLimiter.id]: rateLimits.forOwner(pluginId),
        [coreServices.metrics.id]: pluginMetrics(metrics.registry, pluginId, pluginMetricNames),
      }),
      // Every plugin state change after boot goes out on the `plugins` topic; a stopped plugin's subscriptions end.
      onStateChange: (status) => {
        auditService.pluginStateChanged(status);
        if (status.state !== 'enabled') {
          eventHub.release(status.id);
          dropPluginMetrics(metrics.registry, status.id, pluginMetricNames);
        }
        if (kernelHolder.current?.manifestOf(status.id)?.web) {
          events
            .publish(coreTopics.ui, { pluginId: status.id, state: status.state })
            .catch((error: Error) => logger.warn({ err: error.message, plugin: status.id }, 'cannot publish a UI change'));
        }
        events
          .publish(coreTopics.plugins, { id: status.id, state: status.state, ...(status.reason ? { reason: status.reason } : {}) }, { permission: 'plugins:read' })
          .catch((error: Error) => logger.warn({ err: error.message, plugin: status.id }, 'cannot publish a plugin state change'));
      },
    });
    kernelHolder.current = kernel;
    const refreshPermissions = () => identity.setDeclarations([...corePermissions, ...kernel.allManifests().flatMap((m) => m.permissions ?? [])]);
    // [plugins] Packages installed at run time (core/src/plugins/, docs/adr/0010): verified, kept in storage.
    const installer = new PluginInstaller({
      db: () => db,
      kernel,
      storage,
      operations: operations.forOwner('core'),
      audit,
      logger: logger.child({ component: 'plugins' }),
      dataDir: config.dataDir,
      trustedKeys: readTrustedKeys(config.trustedKeysFile),
      sources: registrySources(config.registries),
      maxBytes: config.packageMaxMiB,
      onChanged: () => refreshPermissions(),
      events,
    });
    await kernel.boot(await installer.prepare());
    // Another replica's installs, upgrades, rollbacks and uninstalls are followed here.
    installer.listen();
    refreshPermissions();
    await auditService.bootFailures(kernel.list());
    // Another replica changed users, roles, teams or tokens: reload (this replica reloads itself too).
    const identityChanged = async (kind: 'users' | 'roles' | 'teams' | 'tokens') => {
      if (kind === 'tokens' || kind === 'users') apiTokens.forgetAll();
      await identity.reload();
      await events.publish('identity', { kind }, { permission: 'users:read' }).catch((error: Error) => logger.warn({ err: error.message }, 'cannot publish an identity change'));
    };
    events.subscribe<{ kind: string }>('identity', (event) => {
      if (event.payload.kind === 'tokens' || event.payload.kind === 'users') apiTokens.forgetAll();
      void identity.reload();
    });
    // Single sign-on (core/src/auth/oidc.ts); its redirect URI needs the core's own URL when PUBLIC_URL is unset.
    const ownUrl = { current: '' };
    const oidc = new OidcService({
      config: config.oidc,
      publicUrl: config.publicUrl,
      ownUrl: () => ownUrl.current,
      basePath: basePath(config),
      auth,
      identity,
      audit,
      changed: identityChanged,
      logger,
    });

    const tickets = new StreamTickets(() => db);
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
      ...authRoutes(auth, (principal) => identity.permissionsOf(principal.id).all),
      ...oidc.routes(),
      ...identityRoutes({
        identity,
        auth,
        apiTokens,
        changed: identityChanged,
        passwordMinLength: config.passwordMinLength,
        permissionOwners: () => {
          const owners = new Map<string, string>(corePermissions.map((p) => [p.id, 'core']));
          for (const m of kernel.allManifests()) for (const p of m.permissions ?? []) owners.set(p.id, m.id);
          return owners;
        },
      }),
      // Before the admin routes: /plugins/unsigned-allowlist and /plugins/trusted-keys are not plugin ids.
      ...pluginPackageRoutes(kernel, installer),
      ...pluginAdminRoutes(kernel, () => installer.installed()),
      ...pluginSettingsRoutes(kernel, secretSettings),
      ...auditService.routes(),
      ...operationRoutes(operations, identity.can),
      ...schedulerRoutes(schedulerRuntime, config.quotaTimeZone),
      ...streamRoutes(tickets),
      ...uiRoutes(kernel, identity.can, basePath(config)),
    ];

    const accessLog = new AccessLog(logger, redactor);
    const app = buildApp({
      logger,
      accessLog,
      metrics,
      metricsToken: config.metricsToken,
      hooks,
      basePath: basePath(config),
      coreRoutes,
      coreOwner: { id: 'core', permissions: new Set(corePermissions.map((p) => p.id)) },
      routeRuntime,
      pluginDispatcher: kernel.dispatcher(),
      webStatic: webStatic({ kernel, shellDir: config.webDir, basePath: basePath(config), version: CORE_VERSION }),
      redactor,
    });

    // Data-plane routes (the gateway's /v1 calls) go straight to their handler; the rest through Koa.
    const server = http.createServer(requestListener({ app, lookup: kernel.directLookup(), logger, accessLog, metrics, hooks, basePath: basePath(config), redactor }));
    server.keepAliveTimeout = 65_000;
    // WebSocket /api/v1/stream: the ticket is checked before the upgrade.
    const stream = new StreamServer({
      hub: eventHub,
      consumeTicket: (ticket) => tickets.consume(ticket),
      can: identity.can,
      logger,
      basePath: basePath(config),
      registry: metrics.registry,
    });
    stream.attach(server);
    let inFlight = 0;
    server.on('request', (_req, res) => {
      inFlight++;
      res.once('close', () => inFlight--);
    });
    // Nodes are discovered (and running replicas re-attached) before the first request: a
    // submission never meets an empty cluster on a first start.
    await schedulerRuntime.start(metrics.registry);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, config.host, () => resolve());
    });
    const port = (server.address() as AddressInfo).port;
    const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
    const url = `http://${host}:${port}`;
    ownUrl.current = url;
    logger.info({ url, database: database.kind, plugins: kernel.list().map((p) => `${p.id}:${p.state}`) }, 'aiplat core listening');
    logger.flush();

    await auditService.start();
    let stopping: Promise<void> | undefined;
    const stop = () =>
      (stopping ??= (async () => {
        logger.info('shutting down: draining requests');
        server.close();
        server.closeIdleConnections();
        await stream.close();
        const deadline = Date.now() + config.shutdownGrace * 1000;
        while (inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
        server.closeAllConnections();
        await operations.stop();
        await installer.close();
        await schedulerRuntime.stop();
        auditService.beginShutdown();
        await kernel.stopAll();
        await auditService.stop();
        await eventHub.close();
        storage.backend.close?.();
        await database!.close();
        redis?.disconnect();
        lock.release();
        accessLog.flush();
        logger.info('stopped');
        logger.flush();
      })());

    return { url, port, config, database, kernel, auth, logger, storage, events, operations, scheduler: schedulerRuntime, generatedAdminPassword: bootstrap.generatedPassword, stop };
  } catch (error) {
    await runningOperations?.stop().catch(() => undefined);
    await scheduler?.stop().catch(() => undefined);
    await hub?.close().catch(() => undefined);
    await database?.close().catch(() => undefined);
    redis?.disconnect();
    lock.release();
    throw error;
  }
}
