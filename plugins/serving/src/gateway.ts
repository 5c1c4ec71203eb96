/**
 * The gateway's routes: the OpenAI-compatible entry (mounted at `/v1` and under the plugin), the
 * playground's entry (a signed-in user, one deployment, optionally one revision), team API keys,
 * live metrics, gateway settings (balancing, objectives) and the usage report.
 *
 * Who may call `/v1`: a gateway API key (`Authorization: Bearer sk-aiplat-…`), limited to its
 * team's deployments (and its models when it names some), its rate limits applied; or a platform
 * user's own token (session or personal API token) holding `serving:invoke` in the deployment's team.
 */
import { AiplatError, coreServices, passthrough, reply, json, type PluginContext, type PluginRegisterEnv, type Principal, type RouteContext } from '@aiplat/plugin-sdk';
import type { DeploymentMetrics, GatewaySettings, UsageReport } from '../api/index.js';
import { servingHooks } from '../api/index.js';
import type { ServingSettings } from './controller.js';
import { createKey, isGatewayKey, KeyCache, statusOf, toApiKey } from './keys.js';
import { breachOf, Meter, type Caller } from './meter.js';
import { forward, listModels, readJsonBody, type Router } from './proxy.js';
import { T, deploymentOf, gatewayOf, parsed, type ApiKeyRow, type DeploymentRow } from './store.js';

type Ctx = RouteContext<any, any, any>;

export interface GatewaySettingsOfPlugin extends ServingSettings {
  gpuHourPrice: number;
  currency: string;
  keyCacheSeconds: number;
  ejectAfterFailures: number;
  ejectSeconds: number;
}

const BEARER = /^Bearer\s+(.+)$/i;
const OPENAI_PATHS = ['/chat/completions', '/completions', '/embeddings'] as const;

/** Who called, and what they may reach. */
interface Authorized {
  caller: Caller;
  key: ApiKeyRow | null;
  may(deployment: DeploymentRow): boolean;
}

export class Gateway {
  readonly meter = new Meter();
  readonly keys: KeyCache;
  /** Deployments whose objective is broken now: since when. */
  private readonly breaches = new Map<string, number>();

  constructor(
    private readonly router: Router,
    private readonly settings: () => GatewaySettingsOfPlugin,
  ) {
    this.keys = new KeyCache(() => this.settings().keyCacheSeconds * 1000);
  }

  /**
   * The caller of a gateway request: an API key, or a platform user; 401 in OpenAI's words
   * otherwise. A key looked up a moment ago answers without waiting (the common case).
   */
  authorize(ctx: Ctx): Authorized | Promise<Authorized> {
    const header = ctx.headers.authorization;
    const token = header ? BEARER.exec(header)?.[1]?.trim() : undefined;
    if (!token) throw new AiplatError('unauthenticated', 'You didn’t provide an API key: send it as "Authorization: Bearer sk-aiplat-…" (create one under Serving → API keys)', { openaiCode: 'missing_api_key' });
    if (isGatewayKey(token)) {
      const cached = this.keys.cached(token);
      return cached !== undefined ? this.keyCaller(ctx, cached) : this.keys.find(ctx.plugin.db, token).then((key) => this.keyCaller(ctx, key));
    }
    return this.userCaller(ctx);
  }

  /** What a key may do, made once per looked-up row (a row is replaced when the cache looks it up again). */
  private readonly ofKey = new WeakMap<ApiKeyRow, { principal: Principal; authorized: Authorized }>();

  private keyCaller(ctx: Ctx, key: ApiKeyRow | null): Authorized {
    if (!key) throw new AiplatError('unauthenticated', 'Incorrect API key provided', { openaiCode: 'invalid_api_key' });
    const status = statusOf(key);
    if (status !== 'active') throw new AiplatError('unauthenticated', `This API key is ${status}`, { openaiCode: 'invalid_api_key' });
    let made = this.ofKey.get(key);
    if (!made) {
      const models = parsed(key.models);
      made = {
        principal: { id: `apikey:${key.id}`, username: key.name, roles: [], teams: [key.team_id], defaultTeam: key.team_id, via: 'custom' },
        authorized: {
          key,
          caller: { keyId: key.id, userId: null, name: key.name, team: key.team_id },
          may: (d) => d.team_id === key.team_id && (models.length === 0 || models.includes(d.served_model_name)),
        },
      };
      this.ofKey.set(key, made);
    }
    ctx.user = made.principal;
    return made.authorized;
  }

  private async userCaller(ctx: Ctx): Promise<Authorized> {
    const user = await ctx.authenticate();
    if (!user) throw new AiplatError('unauthenticated', 'Incorrect API key provided', { openaiCode: 'invalid_api_key' });
    ctx.user = user;
    if (!ctx.can('serving:invoke')) throw new AiplatError('forbidden', 'This action needs the permission "serving:invoke"', { permission: 'serving:invoke' });
    return { key: null, caller: { keyId: null, userId: user.id, name: user.username, team: user.defaultTeam ?? '' }, may: (d) => ctx.can('serving:invoke', d.team_id) };
  }

  /** The key's budgets: requests per minute now, tokens per minute from what earlier answers used (a key without limits: none). */
  limit(ctx: Ctx, key: ApiKeyRow | null): Promise<((tokens: number) => void) | undefined> | undefined {
    if (!key || (key.rpm === null && key.tpm === null)) return undefined;
    return this.limitKey(ctx, key);
  }

  private async limitKey(ctx: Ctx, key: ApiKeyRow): Promise<((tokens: number) => void) | undefined> {
    const limiter = ctx.plugin.service(coreServices.rateLimiter);
    if (key.rpm !== null) {
      const r = await limiter.take(`key:${key.id}:requests`, 1, key.rpm, 60);
      if (!r.allowed) throw rateLimited(ctx, `Rate limit reached for requests: ${key.rpm} per minute on this key. Try again in ${Math.ceil(r.resetMs / 1000)} s`, r.resetMs);
    }
    if (key.tpm === null) return undefined;
    const tpm = key.tpm;
    const t = await limiter.peek(`key:${key.id}:tokens`, tpm, 60);
    if (!t.allowed) throw rateLimited(ctx, `Rate limit reached for tokens: ${tpm} per minute on this key (used ${t.used}). Try again in ${Math.ceil(t.resetMs / 1000)} s`, t.resetMs);
    return (tokens) => {
      void limiter.spend(`key:${key.id}:tokens`, tokens, tpm, 60).catch((err: unknown) => ctx.plugin.logger.warn({ err }, 'a token budget could not be counted'));
    };
  }

  /** Check every deployment with objectives; call `serving.sloBreached` when a breach starts. */
  async watch(plugin: PluginContext): Promise<void> {
    const rows = (await plugin.db(T.deployments).whereNotNull('gateway')) as DeploymentRow[];
    for (const row of rows) {
      const slo = gatewayOf(row).slo;
      if (slo.errorRate === null && slo.p99LatencyMs === null) {
        this.breaches.delete(row.id);
        continue;
      }
      const observed = this.meter.observed(row.id, slo.windowSeconds);
      const breach = breachOf(slo, observed);
      if (!breach) {
        this.breaches.delete(row.id);
        continue;
      }
      if (this.breaches.has(row.id)) continue;
      this.breaches.set(row.id, Date.now());
      plugin.logger.warn({ deployment: row.name, ...breach }, 'a deployment broke its objective');
      try {
        await plugin.hooks.call(servingHooks.sloBreached, { deployment: await deploymentOf(plugin.db, row), ...breach, windowSeconds: slo.windowSeconds, requests: observed.requests });
      } catch (err) {
        plugin.logger.warn({ err }, 'a tap of serving.sloBreached failed');
      }
    }
  }

  sloState(row: DeploymentRow): DeploymentMetrics['slo'] {
    const slo = gatewayOf(row).slo;
    const since = this.breaches.get(row.id);
    const observed = this.meter.observed(row.id, slo.windowSeconds);
    return { ...slo, breached: since !== undefined, breachedSince: since ? new Date(since).toISOString() : null, observed };
  }

  /** The core's `/metrics`: the gateway's series. */
  prometheus(plugin: PluginContext): void {
    const metrics = plugin.service(coreServices.metrics);
    // One computation per scrape, shared by the series (made at the first scrape, not at start).
    let snapshot: { at: number; value: ReturnType<Meter['prometheus']> } | undefined;
    const take = () => {
      if (!snapshot || Date.now() - snapshot.at > 500) snapshot = { at: Date.now(), value: this.meter.prometheus() };
      return snapshot.value;
    };
    metrics.collect({ name: 'aiplat_serving_requests_total', help: 'Gateway requests by deployment, revision and outcome (ok, 4xx, error)', type: 'counter', samples: () => take().requests });
    metrics.collect({ name: 'aiplat_serving_tokens_total', help: 'Tokens metered by the gateway (kind: prompt, completion)', type: 'counter', samples: () => take().tokens });
    metrics.collect({ name: 'aiplat_serving_request_duration_seconds', help: 'Gateway request latency to the last byte (quantiles over the last minute)', type: 'summary', samples: () => take().duration });
    metrics.collect({ name: 'aiplat_serving_time_to_first_token_seconds', help: 'Time to the first token of streamed answers (quantiles over the last minute)', type: 'summary', samples: () => take().ttft });
    metrics.collect({ name: 'aiplat_serving_qps', help: 'Requests per second over the last minute', type: 'gauge', samples: () => take().qps });
    metrics.collect({ name: 'aiplat_serving_error_rate', help: 'Share of failed requests over the last minute', type: 'gauge', samples: () => take().errorRate });
    metrics.collect({
      name: 'aiplat_serving_requests_in_flight',
      help: 'Requests in flight per replica, as the gateway sees them',
      type: 'gauge',
      samples: () => [...this.router.states.values()].map((s) => ({ labels: { workload: s.workloadId, replica: s.replica }, value: s.outstanding })),
    });
    metrics.collect({
      name: 'aiplat_serving_replica_ejected',
      help: '1 while the gateway keeps a failing replica out of the rotation',
      type: 'gauge',
      samples: () => [...this.router.states.values()].map((s) => ({ labels: { workload: s.workloadId, replica: s.replica }, value: s.ejectedUntil === null ? 0 : 1 })),
    });
  }
}

function rateLimited(ctx: Ctx, message: string, resetMs: number): AiplatError {
  ctx.setHeader('retry-after', String(Math.max(1, Math.ceil(resetMs / 1000))));
  return new AiplatError('rate_limited', message, { openaiCode: 'rate_limit_exceeded' });
}

const keyBody = {
  type: 'object',
  additionalProperties: false,
  required: ['name'],
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 64 },
    team: { type: 'string', minLength: 1, maxLength: 64 },
    models: { type: 'array', maxItems: 32, uniqueItems: true, items: { type: 'string', minLength: 1, maxLength: 128 } },
    expiresAt: { type: ['string', 'null'], format: 'date-time' },
    requestsPerMinute: { type: ['integer', 'null'], minimum: 1, maximum: 1_000_000 },
    tokensPerMinute: { type: ['integer', 'null'], minimum: 1, maximum: 1_000_000_000 },
  },
};

const gatewayBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    balancing: { type: 'string', enum: ['round-robin', 'least-outstanding'] },
    slo: {
      type: 'object',
      additionalProperties: false,
      properties: {
        errorRate: { type: ['number', 'null'], minimum: 0, maximum: 1 },
        p99LatencyMs: { type: ['integer', 'null'], minimum: 1, maximum: 3_600_000 },
        windowSeconds: { type: 'integer', minimum: 10, maximum: 3600 },
      },
    },
  },
};

export interface GatewayRoutesOptions {
  gateway: Gateway;
  router: Router;
  settings: (plugin: PluginContext) => GatewaySettingsOfPlugin;
  /** A deployment the caller may read (404 otherwise), and its detail after a change. */
  deploymentOr404(ctx: Ctx, id: string, permission?: string): Promise<DeploymentRow>;
  detailOf(ctx: Ctx, id: string): Promise<unknown>;
  serialised<T>(id: string, fn: () => Promise<T>): Promise<T>;
}

export function registerGatewayRoutes(env: PluginRegisterEnv, o: GatewayRoutesOptions): void {
  const { gateway, router } = o;

  // ---- the OpenAI-compatible entry (/v1 and /api/plugins/serving/...) ----

  env.route({
    method: 'GET',
    path: '/models',
    summary: 'OpenAI: the served models you may call',
    custom: { reason: 'OpenAI clients authenticate with gateway API keys (Bearer sk-aiplat-…); platform users may use their own token' },
    audit: 'metered',
    errors: 'openai',
    handler: async (ctx) => {
      const who = await gateway.authorize(ctx);
      return listModels(ctx, who.may);
    },
  });

  for (const sub of OPENAI_PATHS) {
    env.route({
      method: 'POST',
      path: sub,
      summary: `OpenAI: ${sub.slice(1)} from a deployed model (forwarded by "model" to a ready replica)`,
      custom: { reason: 'OpenAI clients authenticate with gateway API keys (Bearer sk-aiplat-…); platform users may use their own token' },
      mutates: false,
      audit: 'metered',
      errors: 'openai',
      body: passthrough(),
      handler: async (ctx) => {
        const found = gateway.authorize(ctx);
        const who = found instanceof Promise ? await found : found;
        const { body, raw } = await readJsonBody(ctx);
        const limited = gateway.limit(ctx, who.key);
        const onTokens = limited ? await limited : undefined;
        await forward(ctx, router, o.settings(ctx.plugin), sub, body, { caller: who.caller, may: who.may, meter: gateway.meter, onTokens, raw });
      },
    });
  }

  // ---- the playground: a signed-in user, one deployment (and revision) ----

  for (const sub of ['/chat/completions', '/completions'] as const) {
    env.route({
      method: 'POST',
      path: `/playground${sub}`,
      summary: `Playground: ${sub.slice(1)} from one deployment (optionally one of its serving revisions), as the signed-in user`,
      permission: 'serving:invoke',
      mutates: false,
      audit: 'metered',
      errors: 'openai',
      body: passthrough(),
      query: {
        type: 'object',
        additionalProperties: false,
        required: ['deployment'],
        properties: { deployment: { type: 'string', minLength: 1, maxLength: 64 }, revision: { type: 'integer', minimum: 1 } },
      },
      handler: async (ctx) => {
        const q = ctx.query as { deployment: string; revision?: number };
        const row = await o.deploymentOr404(ctx, q.deployment, 'serving:invoke');
        const { body } = await readJsonBody(ctx);
        const user = ctx.user!;
        await forward(ctx, router, o.settings(ctx.plugin), sub, { ...body, model: row.served_model_name }, {
          caller: { keyId: null, userId: user.id, name: user.username, team: row.team_id },
          may: (d) => d.id === row.id,
          revision: q.revision,
          meter: gateway.meter,
        });
      },
    });
  }

  // ---- API keys ----

  env.route({
    method: 'GET',
    path: '/keys',
    summary: 'Gateway API keys of your teams (never their secrets)',
    permission: 'serving:keys',
    query: { type: 'object', additionalProperties: false, properties: { team: { type: 'string', maxLength: 64 } } },
    handler: async (ctx) => {
      const q = ctx.query as { team?: string };
      const rows = (await ctx.db(T.keys).orderBy('created_at', 'desc')) as ApiKeyRow[];
      return { items: rows.filter((r) => ctx.can('serving:keys', r.team_id) && (!q.team || r.team_id === q.team)).map(toApiKey) };
    },
  });

  env.route({
    method: 'POST',
    path: '/keys',
    summary: 'Create a gateway API key for a team (its secret is in this answer only)',
    permission: 'serving:keys',
    audit: 'explicit',
    body: json(keyBody),
    handler: async (ctx) => {
      const body = ctx.body as { name: string; team?: string; models?: string[]; expiresAt?: string | null; requestsPerMinute?: number | null; tokensPerMinute?: number | null };
      const user = ctx.user!;
      const team = body.team ?? user.defaultTeam ?? user.teams?.[0];
      if (!team || !ctx.can('serving:keys', team)) throw new AiplatError('forbidden', `You do not hold "serving:keys" in team "${team ?? '(none)'}"`, { permission: 'serving:keys', team });
      if (body.expiresAt && new Date(body.expiresAt).getTime() <= Date.now()) throw new AiplatError('validation_failed', 'expiresAt is in the past: give a time to come, or none', { field: 'expiresAt' });
      const models = body.models ?? [];
      if (models.length) {
        const known = (await ctx.db(T.deployments).where({ team_id: team }).whereIn('served_model_name', models).pluck('served_model_name')) as string[];
        const unknown = models.filter((m) => !known.includes(m));
        if (unknown.length) throw new AiplatError('validation_failed', `Team ${team} serves no model named ${unknown.map((m) => `"${m}"`).join(', ')}`, { field: 'models' });
      }
      const { row, secret } = await createKey(ctx.db, {
        name: body.name,
        team,
        models,
        expiresAt: body.expiresAt ?? null,
        requestsPerMinute: body.requestsPerMinute ?? null,
        tokensPerMinute: body.tokensPerMinute ?? null,
        createdBy: user.id,
      });
      await ctx.audit('serving:key.create', { key: row.id, name: row.name, prefix: row.prefix, models, expiresAt: row.expires_at, requestsPerMinute: row.rpm, tokensPerMinute: row.tpm }, { resource: { type: 'api-key', id: row.id }, team });
      return reply(201, { ...toApiKey(row), secret });
    },
  });

  env.route({
    method: 'DELETE',
    path: '/keys/:id',
    summary: 'Revoke a gateway API key (refused from now on; it stays listed as revoked)',
    permission: 'serving:keys',
    audit: 'explicit',
    handler: async (ctx) => {
      const row = (await ctx.db(T.keys).where({ id: ctx.params.id }).first()) as ApiKeyRow | undefined;
      if (!row || !ctx.can('serving:keys', row.team_id)) throw new AiplatError('not_found', `No API key ${ctx.params.id}`);
      if (row.revoked_at) return toApiKey(row);
      const [revoked] = (await ctx.db(T.keys).where({ id: row.id }).update({ revoked_at: new Date().toISOString() }).returning('*')) as ApiKeyRow[];
      gateway.keys.forget(row.hash);
      await ctx.audit('serving:key.revoke', { key: row.id, name: row.name }, { resource: { type: 'api-key', id: row.id }, team: row.team_id });
      return toApiKey(revoked!);
    },
  });

  // ---- live metrics and gateway settings ----

  env.route({
    method: 'GET',
    path: '/deployments/:id/metrics',
    summary: 'Live traffic of a deployment as the gateway sees it: QPS, latency, TTFT, tokens/s, errors, replicas, top callers',
    permission: 'serving:read',
    query: { type: 'object', additionalProperties: false, properties: { window: { type: 'integer', minimum: 60, maximum: 3600, default: 300 } } },
    handler: async (ctx): Promise<DeploymentMetrics> => {
      const row = await o.deploymentOr404(ctx, ctx.params.id);
      const window = (ctx.query as { window?: number }).window ?? 300;
      gateway.meter.names.set(row.id, row.name);
      const live = gateway.meter.metrics(row.id, window);
      // The gateway's view of the replicas of the revisions in traffic.
      const route = await router.route(row.served_model_name);
      const replicas: DeploymentMetrics['replicas'] = [];
      for (const t of route?.targets ?? []) {
        for (const r of await router.ready(t.workloadId)) {
          replicas.push({ revision: t.revision, replica: r.replica, outstanding: r.state.outstanding, ejected: r.state.ejectedUntil !== null, ejectedUntil: r.state.ejectedUntil ? new Date(r.state.ejectedUntil).toISOString() : null, consecutiveFailures: r.state.consecutiveFailures });
        }
      }
      return { ...live, replicas, slo: gateway.sloState(row) };
    },
  });

  env.route({
    method: 'PUT',
    path: '/deployments/:id/gateway',
    summary: 'Set how the gateway balances a deployment and its objectives (error rate, p99 latency)',
    permission: 'serving:write',
    audit: 'explicit',
    mutates: false,
    body: json(gatewayBody),
    handler: async (ctx) => {
      const row = await o.deploymentOr404(ctx, ctx.params.id, 'serving:write');
      const body = ctx.body as { balancing?: GatewaySettings['balancing']; slo?: Partial<GatewaySettings['slo']> };
      return o.serialised(row.id, async () => {
        const current = (await ctx.plugin.db(T.deployments).where({ id: row.id }).first()) as DeploymentRow;
        const before = gatewayOf(current);
        const after: GatewaySettings = { balancing: body.balancing ?? before.balancing, slo: { ...before.slo, ...(body.slo ?? {}) } };
        await ctx.plugin.db(T.deployments).where({ id: row.id }).update({ gateway: JSON.stringify(after), updated_at: new Date().toISOString() });
        await ctx.audit('serving:deployment.gateway', { deployment: row.id, before, after }, { resource: { type: 'deployment', id: row.id }, team: row.team_id });
        router.invalidate();
        return o.detailOf(ctx, row.id);
      });
    },
  });

  // ---- usage ----

  env.route({
    method: 'GET',
    path: '/usage',
    summary: 'Metered use of the gateway per team, API key or deployment, with the GPU-hours and cost it stands for',
    permission: 'serving:keys',
    query: {
      type: 'object',
      additionalProperties: false,
      properties: {
        from: { type: 'string', format: 'date-time' },
        to: { type: 'string', format: 'date-time' },
        groupBy: { type: 'string', enum: ['team', 'key', 'deployment'], default: 'team' },
      },
    },
    handler: async (ctx): Promise<UsageReport> => {
      const q = ctx.query as { from?: string; to?: string; groupBy?: UsageReport['groupBy'] };
      const to = q.to ? new Date(q.to) : new Date();
      const from = q.from ? new Date(q.from) : new Date(to.getTime() - 7 * 86_400_000);
      if (from >= to) throw new AiplatError('validation_failed', '"from" must be before "to"', { field: 'from' });
      const groupBy = q.groupBy ?? 'team';
      // What is still in memory counts too.
      await gateway.meter.flush(ctx.plugin.db).catch((err: unknown) => ctx.log.warn({ err }, 'metered usage could not be written'));
      const rows = (await ctx.db(T.usage)
        .where('minute', '>=', from.toISOString())
        .where('minute', '<', to.toISOString())
        .groupBy('deployment_id', 'team_id', 'key_id')
        .select('deployment_id', 'team_id', 'key_id')
        .sum({ requests: 'requests', errors: 'errors', prompt: 'prompt_tokens', completion: 'completion_tokens' })) as { deployment_id: string; team_id: string; key_id: string; requests: string | number; errors: string | number; prompt: string | number; completion: string | number }[];
      const visible = rows.filter((r) => ctx.can('serving:keys', r.team_id));
      // A deployment's GPU-hours are shared out by each caller's share of its tokens (requests when no tokens).
      const deploymentIds = [...new Set(rows.map((r) => r.deployment_id))];
      const revisions = deploymentIds.length ? ((await ctx.db(T.revisions).whereIn('deployment_id', deploymentIds).whereNotNull('workload_id').select('deployment_id', 'workload_id')) as { deployment_id: string; workload_id: string }[]) : [];
      const hoursByWorkload = await ctx.plugin.service(coreServices.workloads).gpuHours(revisions.map((r) => r.workload_id), { from, to });
      const hoursByDeployment = new Map<string, number>();
      for (const r of revisions) hoursByDeployment.set(r.deployment_id, (hoursByDeployment.get(r.deployment_id) ?? 0) + (hoursByWorkload[r.workload_id] ?? 0));
      const weight = (r: (typeof rows)[number]) => Number(r.prompt) + Number(r.completion) || Number(r.requests);
      const totalWeight = new Map<string, number>();
      for (const r of rows) totalWeight.set(r.deployment_id, (totalWeight.get(r.deployment_id) ?? 0) + weight(r));
      const settings = o.settings(ctx.plugin);
      const groups = new Map<string, UsageReport['items'][number]>();
      for (const r of visible) {
        const id = groupBy === 'team' ? r.team_id : groupBy === 'deployment' ? r.deployment_id : r.key_id || null;
        const k = id ?? '';
        let g = groups.get(k);
        if (!g) groups.set(k, (g = { id, name: id ?? '', requests: 0, errors: 0, promptTokens: 0, completionTokens: 0, totalTokens: 0, gpuHours: 0, cost: 0 }));
        g.requests += Number(r.requests);
        g.errors += Number(r.errors);
        g.promptTokens += Number(r.prompt);
        g.completionTokens += Number(r.completion);
        g.totalTokens += Number(r.prompt) + Number(r.completion);
        const share = (totalWeight.get(r.deployment_id) ?? 0) > 0 ? weight(r) / totalWeight.get(r.deployment_id)! : 0;
        g.gpuHours += (hoursByDeployment.get(r.deployment_id) ?? 0) * share;
      }
      // Names for people.
      const ids = [...groups.values()].map((g) => g.id).filter((x): x is string => !!x);
      const names = new Map<string, string>();
      if (ids.length) {
        if (groupBy === 'team') for (const t of (await ctx.db('teams').whereIn('id', ids).select('id', 'name')) as { id: string; name: string }[]) names.set(t.id, t.name);
        if (groupBy === 'key') for (const k of (await ctx.db(T.keys).whereIn('id', ids).select('id', 'name')) as { id: string; name: string }[]) names.set(k.id, k.name);
        if (groupBy === 'deployment') for (const d of (await ctx.db(T.deployments).whereIn('id', ids).select('id', 'name')) as { id: string; name: string }[]) names.set(d.id, d.name);
      }
      const items = [...groups.values()]
        .map((g) => ({ ...g, name: g.id ? (names.get(g.id) ?? g.id) : groupBy === 'key' ? '(platform users, no key)' : '', gpuHours: Math.round(g.gpuHours * 1e4) / 1e4, cost: Math.round(g.gpuHours * settings.gpuHourPrice * 100) / 100 }))
        .sort((a, b) => b.requests - a.requests);
      return { from: from.toISOString(), to: to.toISOString(), groupBy, gpuHourPrice: settings.gpuHourPrice, currency: settings.currency, items };
    },
  });
}

