/**
 * The serving plugin: a deployment serves a model version on a runtime that a plugin contributes
 * (`serving.runtimes`), as a scheduler `service` workload per revision. Every change makes a
 * revision; a new revision takes the traffic once its replicas are ready (all of it, or a canary
 * weight), rollback makes a new revision restoring an earlier one. The `/v1` alias forwards
 * OpenAI requests by model name to a ready replica (src/proxy.ts); the API docs are generated per
 * deployment (src/docs.ts). Revision folders live under `<data dir>/plugins/serving/deployments/`.
 */
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { Ajv, type ValidateFunction } from 'ajv';
import { AiplatError, coreServices, definePlugin, json, reply, scoped, scopedOr404, workloadHooks, type EventSubscription, type PluginContext, type Principal, type RouteContext } from '@aiplat/plugin-sdk';
import { modelsService, type ModelVersion } from '@aiplat-plugins/models/api';
import { lineageOf } from '@aiplat-plugins/lineage/api';
import { REVISION_NODE, servingExtensionPoints, servingHooks, type ApiDocs, type DeploymentDetail, type EngineStatus, type ReplicaStatus, type RuntimeContext, type RuntimeInfo, type ServingResources, type ServingRuntime, type TrafficEntry } from '../api/index.js';
import {
  checkTimeouts,
  dataDirOf,
  fail,
  largestCardMiB,
  maxGpusPerNode,
  recordLineage,
  refresh,
  replicaRestarted,
  retire,
  revisionDirOf,
  runtimeOf,
  runtimesOf,
  serialised,
  submitRevision,
  workloadChanged,
} from './controller.js';
import { openApiOf, snippetsOf } from './docs.js';
import { Gateway, registerGatewayRoutes, type GatewaySettingsOfPlugin } from './gateway.js';
import { Router } from './proxy.js';
import { LIVE_REVISION_STATES, T, deploymentOf, migrations, parsed, pendingOf, primaryNumber, revisionsOf, toRevision, type DeploymentRow, type RevisionRow } from './store.js';

export type { ServingSettings } from './controller.js';

type Ctx = RouteContext<any, any, any>;

const NAME = '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$';
const SERVED_NAME = '^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$';

const resourcesSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    gpus: { type: 'integer', minimum: 0, maximum: 64, default: 0 },
    gpuMemoryMiB: { type: 'integer', minimum: 1, maximum: 4_194_304 },
    cpu: { type: 'number', exclusiveMinimum: 0, maximum: 1024 },
    memoryMiB: { type: 'integer', minimum: 1, maximum: 67_108_864 },
  },
};

const revisionFields = {
  modelVersion: { type: 'string', minLength: 1, maxLength: 64 },
  runtime: { type: 'string', minLength: 1, maxLength: 64 },
  executor: { type: 'string', minLength: 1, maxLength: 64 },
  resources: resourcesSchema,
  replicas: { type: 'integer', minimum: 1, maximum: 32 },
  options: { type: 'object', additionalProperties: true },
};

const deployBody = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'modelVersion', 'runtime'],
  properties: {
    name: { type: 'string', pattern: NAME },
    team: { type: 'string', minLength: 1, maxLength: 64 },
    servedModelName: { type: 'string', pattern: SERVED_NAME },
    ...revisionFields,
  },
};

const changeBody = {
  type: 'object',
  additionalProperties: false,
  properties: { ...revisionFields, canaryWeight: { type: 'integer', minimum: 1, maximum: 99 } },
};

const trafficBody = {
  type: 'object',
  additionalProperties: false,
  required: ['traffic'],
  properties: {
    traffic: {
      type: 'array',
      minItems: 1,
      maxItems: 4,
      items: { type: 'object', additionalProperties: false, required: ['revision', 'weight'], properties: { revision: { type: 'integer', minimum: 1 }, weight: { type: 'integer', minimum: 0, maximum: 100 } } },
    },
  },
};

const estimateBody = {
  type: 'object',
  additionalProperties: false,
  required: ['modelVersion', 'runtime'],
  properties: { ...revisionFields },
};

let plugin: PluginContext | undefined;
let timer: NodeJS.Timeout | undefined;
let restarts: EventSubscription | undefined;
let flusher: NodeJS.Timeout | undefined;
/** The running plugin's settings (the defaults while it is not running). */
const currentSettings = () => settingsOf(plugin ?? ({ config: {} } as PluginContext));
const router = new Router(() => {
  if (!plugin) throw new AiplatError('unavailable', 'The serving plugin is not running');
  return plugin;
}, currentSettings);
const gateway = new Gateway(router, currentSettings);

function settingsOf(ctx: PluginContext): GatewaySettingsOfPlugin {
  const c = ctx.config as Partial<GatewaySettingsOfPlugin>;
  return {
    publicBaseUrl: c.publicBaseUrl ?? '',
    upstreamTimeoutSeconds: c.upstreamTimeoutSeconds ?? 300,
    readyTimeoutSeconds: c.readyTimeoutSeconds ?? 600,
    gpuHourPrice: c.gpuHourPrice ?? 0,
    currency: c.currency ?? 'USD',
    keyCacheSeconds: c.keyCacheSeconds ?? 5,
    ejectAfterFailures: c.ejectAfterFailures ?? 3,
    ejectSeconds: c.ejectSeconds ?? 10,
  };
}

// ---- runtimes ----

const engines = new Map<string, { at: number; status: Promise<EngineStatus> }>();

/** Whether a runtime's engine runs here (asked at most every 10 s per runtime and executor). */
function engineOf(runtime: ServingRuntime, executor: string): Promise<EngineStatus> {
  const key = `${runtime.id}\u0000${executor}`;
  const cached = engines.get(key);
  if (cached && Date.now() - cached.at < 10_000) return cached.status;
  const status = runtime.engine(executor).catch((err: unknown) => ({ available: false, version: null, reason: `checking the engine failed: ${(err as Error).message}` }));
  engines.set(key, { at: Date.now(), status });
  return status;
}

const validators = new WeakMap<ServingRuntime, ValidateFunction>();

/** The runtime's options with defaults filled in, or a 400 naming the bad option. */
function validOptions(runtime: ServingRuntime, options: Record<string, unknown>): Record<string, unknown> {
  let validate = validators.get(runtime);
  if (!validate) {
    validate = new Ajv({ useDefaults: true, allErrors: false, strict: false }).compile(runtime.optionsSchema);
    validators.set(runtime, validate);
  }
  const copy = structuredClone(options);
  if (!validate(copy)) {
    const e = validate.errors![0]!;
    const at = e.instancePath ? e.instancePath.slice(1).replace(/\//g, '.') : ((e.params as { additionalProperty?: string }).additionalProperty ?? '');
    const what = e.keyword === 'additionalProperties' ? `is not an option of the ${runtime.id} runtime` : e.message;
    throw new AiplatError('validation_failed', `Option ${at || '(options)'} ${what}`, { field: `options.${at}`, runtime: runtime.id });
  }
  return copy;
}

function executorsOf(runtime: ServingRuntime): string[] {
  return runtime.executors ?? ['local'];
}

async function runtimeInfo(runtime: ServingRuntime): Promise<RuntimeInfo> {
  const executors = executorsOf(runtime);
  // Available when it runs on any of its executors; the reason is the first executor's.
  const statuses = await Promise.all(executors.map((e) => engineOf(runtime, e)));
  const ok = statuses.find((s) => s.available);
  return {
    id: runtime.id,
    title: runtime.title,
    description: runtime.description,
    protocol: runtime.protocol,
    gpu: runtime.gpu,
    executors,
    optionsSchema: runtime.optionsSchema,
    engine: ok ?? statuses[0] ?? { available: false, version: null, reason: 'no executor' },
  };
}

// ---- checking a revision before anything starts ----

interface RevisionInput {
  modelVersion: string;
  runtime: string;
  executor: string;
  resources: ServingResources;
  replicas: number;
  options: Record<string, unknown>;
}

interface Checked {
  input: RevisionInput;
  version: ModelVersion;
  modelName: string;
  runtime: ServingRuntime;
}

/** Every reason to refuse a revision, found before anything is written or started. */
async function check(ctx: Ctx, input: RevisionInput, deployment: { id: string; name: string; team: string; servedModelName: string }, revision: number): Promise<Checked> {
  const p = ctx.plugin;
  const models = p.service(modelsService);
  const version = await models.get(input.modelVersion);
  const model = version ? await models.model(version.modelId) : undefined;
  if (!version || !model || !ctx.can('models:read', model.team)) throw new AiplatError('validation_failed', `No model version ${input.modelVersion}`, { field: 'modelVersion' });
  if (version.metadata.adapter) throw new AiplatError('unprocessable', `Version ${version.number} of ${model.name} is a LoRA adapter, not a whole model: deploy its base model, or a version with the adapter merged`, { field: 'modelVersion' });
  const runtime = runtimeOf(p, input.runtime);
  if (!runtime) throw new AiplatError('validation_failed', `No runtime "${input.runtime}": one of ${runtimesOf(p).map((r) => r.id).join(', ') || '(none installed: enable a serving runtime plugin)'}`, { field: 'runtime' });
  if (!executorsOf(runtime).includes(input.executor)) throw new AiplatError('unprocessable', `The ${runtime.id} runtime runs on the ${executorsOf(runtime).join(' or ')} executor, not ${input.executor}`, { field: 'executor' });
  const r = input.resources;
  const gpuAsked = r.gpus > 0 || !!r.gpuMemoryMiB;
  if (r.gpuMemoryMiB && r.gpus > 1) throw new AiplatError('validation_failed', 'A GPU memory share is a slice of one card: give gpus 0 or 1 with gpuMemoryMiB', { field: 'resources.gpuMemoryMiB' });
  if (runtime.gpu === 'required' && !gpuAsked) throw new AiplatError('unprocessable', `The ${runtime.id} runtime needs a GPU: ask for resources.gpus or resources.gpuMemoryMiB`, { field: 'resources.gpus' });
  if (runtime.gpu === 'none' && gpuAsked) throw new AiplatError('unprocessable', `The ${runtime.id} runtime uses no GPU: set resources.gpus to 0`, { field: 'resources.gpus' });
  const maxGpus = await maxGpusPerNode(ctx.db);
  if (r.gpus > maxGpus) throw new AiplatError('unschedulable', `Each replica asks for ${r.gpus} GPU${r.gpus === 1 ? '' : 's'}, but the largest node has ${maxGpus}`, { field: 'resources.gpus', reasons: [`more GPUs per replica than any node has (${maxGpus})`] });
  if (r.gpuMemoryMiB) {
    const card = await largestCardMiB(ctx.db);
    if (!card || r.gpuMemoryMiB > card) throw new AiplatError('unschedulable', card ? `A ${r.gpuMemoryMiB} MiB share is larger than the largest card (${card} MiB)` : 'There is no GPU to take a memory share of', { field: 'resources.gpuMemoryMiB' });
  }
  const options = validOptions(runtime, input.options);
  const context: RuntimeContext = {
    deployment,
    revision,
    servedModelName: deployment.servedModelName,
    model: { versionId: version.id, name: model.name, number: version.number, path: path.join(dataDirOf(p), 'models', version.id), metadata: version.metadata as unknown as Record<string, unknown> },
    revisionDir: revisionDirOf(p, deployment.id, revision),
    executor: input.executor,
    resources: r,
    replicas: input.replicas,
    options,
    maxGpusPerNode: maxGpus,
  };
  const refusal = runtime.check?.(context);
  if (refusal) throw new AiplatError('unprocessable', refusal, { field: 'options', runtime: runtime.id });
  // Last: a request that could never work says so even where the engine is missing.
  const engine = await engineOf(runtime, input.executor);
  if (!engine.available) throw new AiplatError('unprocessable', `The ${runtime.id} runtime cannot run here: ${engine.reason ?? 'its engine is missing'}`, { field: 'runtime', engine });
  return { input: { ...input, options }, version, modelName: model.name, runtime };
}

/** In words, what a revision changes against another (`replicas: 1 → 2`). */
function changeOf(before: RevisionRow | undefined, after: RevisionInput, afterVersion: { modelName: string; number: number }): string {
  if (!before) return 'first revision';
  const parts: string[] = [];
  const show = (v: unknown) => (v === undefined ? '(default)' : JSON.stringify(v));
  if (before.model_version !== after.modelVersion) parts.push(`model: ${before.model_name} v${before.model_version_number} → ${afterVersion.modelName} v${afterVersion.number}`);
  if (before.runtime !== after.runtime) parts.push(`runtime: ${before.runtime} → ${after.runtime}`);
  if (before.executor !== after.executor) parts.push(`executor: ${before.executor} → ${after.executor}`);
  if (before.replicas !== after.replicas) parts.push(`replicas: ${before.replicas} → ${after.replicas}`);
  const r0 = parsed(before.resources) as unknown as Record<string, unknown>;
  const r1 = after.resources as unknown as Record<string, unknown>;
  for (const k of new Set([...Object.keys(r0), ...Object.keys(r1)])) if (JSON.stringify(r0[k]) !== JSON.stringify(r1[k])) parts.push(`resources.${k}: ${show(r0[k])} → ${show(r1[k])}`);
  const o0 = parsed(before.options);
  for (const k of new Set([...Object.keys(o0), ...Object.keys(after.options)])) if (JSON.stringify(o0[k]) !== JSON.stringify(after.options[k])) parts.push(`options.${k}: ${show(o0[k])} → ${show(after.options[k])}`);
  return parts.length ? parts.join('; ') : 'no change (restart)';
}

// ---- reading ----

async function deploymentOr404(ctx: Ctx, id: string, permission = 'serving:read'): Promise<DeploymentRow> {
  return scopedOr404<DeploymentRow>(ctx, T.deployments, permission, { id }, `No deployment ${id}`);
}

/** The base URL of `/v1` as a client of this request would reach it. */
function baseUrlOf(ctx: Ctx): string {
  const configured = settingsOf(ctx.plugin).publicBaseUrl || ctx.plugin.platform.publicUrl;
  if (configured) return `${configured.replace(/\/+$/, '')}/v1`;
  const proto = String(ctx.headers['x-forwarded-proto'] ?? '').split(',')[0]?.trim() || 'http';
  const host = String(ctx.headers['x-forwarded-host'] ?? ctx.headers.host ?? 'localhost').split(',')[0]!.trim();
  return `${proto}://${host}/v1`;
}

async function replicasOf(ctx: Ctx, revisions: RevisionRow[]): Promise<ReplicaStatus[]> {
  const live = revisions.filter((r) => r.workload_id && (LIVE_REVISION_STATES as readonly string[]).includes(r.state));
  if (live.length === 0) return [];
  const rows = (await ctx.db('workload_replicas').whereIn('workload_id', live.map((r) => r.workload_id!)).orderBy('replica')) as {
    workload_id: string;
    replica: number;
    node_id: string | null;
    state: string;
    ports: Record<string, number> | string | null;
    devices: { index: number; lo: number; hi: number; whole: boolean }[] | string | null;
    restarts: number | null;
  }[];
  const out: ReplicaStatus[] = [];
  for (const r of live) {
    for (const row of rows.filter((x) => x.workload_id === r.workload_id)) {
      const ports = row.ports ? parsed(row.ports) : {};
      const devices = row.devices ? parsed(row.devices) : [];
      out.push({
        revision: r.number,
        replica: row.replica,
        state: row.state,
        inRotation: row.state === 'ready',
        nodeId: row.node_id ?? '',
        port: ports.http ?? null,
        devices: devices.map((d) => ({ index: d.index, memoryMiB: d.hi - d.lo, whole: d.whole })),
        restarts: Number(row.restarts ?? 0),
      });
    }
  }
  return out.sort((a, b) => b.revision - a.revision || a.replica - b.replica);
}

async function detailOf(ctx: Ctx, id: string): Promise<DeploymentDetail> {
  const row = (await ctx.db(T.deployments).where({ id }).first()) as DeploymentRow;
  const revisions = await revisionsOf(ctx.db, id);
  return {
    ...(await deploymentOf(ctx.db, row)),
    revisions: revisions.map(toRevision),
    replicas: await replicasOf(ctx, revisions),
    baseUrl: baseUrlOf(ctx),
  };
}

/** The revision a change starts from: the one with most traffic, else the newest. */
async function baseRevision(ctx: Ctx, row: DeploymentRow): Promise<RevisionRow> {
  return (await ctx.db(T.revisions).where({ deployment_id: row.id, number: primaryNumber(row) }).first()) as RevisionRow;
}

/** Make revision `number` from a checked input and submit it; on a refusal nothing stays behind. */
async function startRevision(ctx: Ctx, row: DeploymentRow, checked: Checked, number: number, extra: { change: string; rollbackOf: number | null; canaryWeight: number | null }, user: Principal): Promise<RevisionRow> {
  const p = ctx.plugin;
  const [revision] = (await p
    .db(T.revisions)
    .insert({
      id: randomUUID(),
      deployment_id: row.id,
      number,
      state: 'starting',
      model_version: checked.version.id,
      model_name: checked.modelName,
      model_version_number: checked.version.number,
      max_model_len: checked.version.metadata.contextLength ?? null,
      runtime: checked.runtime.id,
      executor: checked.input.executor,
      resources: JSON.stringify(checked.input.resources),
      replicas: checked.input.replicas,
      options: JSON.stringify(checked.input.options),
      change: extra.change,
      rollback_of: extra.rollbackOf,
      created_by: user.id,
    })
    .returning('*')) as RevisionRow[];
  const previous = { pending: row.pending, latest: row.latest_revision };
  await p.db(T.deployments).where({ id: row.id }).update({ pending: JSON.stringify({ revision: number, canaryWeight: extra.canaryWeight }), latest_revision: number, updated_at: new Date().toISOString() });
  try {
    await submitRevision(p, { ...row, pending: { revision: number, canaryWeight: extra.canaryWeight }, latest_revision: number }, revision!, user);
  } catch (err) {
    await p.db(T.revisions).where({ id: revision!.id }).delete();
    await p.db(T.deployments).where({ id: row.id }).update({ pending: previous.pending === null ? null : JSON.stringify(parsed(previous.pending)), latest_revision: previous.latest });
    await rm(revisionDirOf(p, row.id, number), { recursive: true, force: true });
    throw err;
  }
  const started = (await p.db(T.revisions).where({ id: revision!.id }).first()) as RevisionRow;
  await recordLineage(p, row, started);
  return started;
}

/** A revision's configuration, to check (and run) again as it was. */
function configOf(r: RevisionRow): RevisionInput {
  return { modelVersion: r.model_version, runtime: r.runtime, executor: r.executor, resources: parsed(r.resources), replicas: r.replicas, options: parsed(r.options) };
}

function inputOf(body: Record<string, any>, base?: RevisionRow): RevisionInput {
  return {
    modelVersion: body.modelVersion ?? base?.model_version,
    runtime: body.runtime ?? base?.runtime,
    executor: body.executor ?? base?.executor ?? 'local',
    resources: { gpus: 0, ...(body.resources ?? (base ? parsed(base.resources) : {})) },
    replicas: body.replicas ?? base?.replicas ?? 1,
    // A new runtime starts from its own defaults; the same runtime from the base's options.
    options: body.options ?? (base && (body.runtime ?? base.runtime) === base.runtime ? parsed(base.options) : {}),
  };
}

async function callRevisionChanged(ctx: Ctx, row: DeploymentRow, revision: RevisionRow, traffic: TrafficEntry[], cause: 'created' | 'rollout' | 'canary' | 'traffic' | 'rollback'): Promise<void> {
  try {
    await ctx.plugin.hooks.call(servingHooks.revisionChanged, { deployment: await deploymentOf(ctx.plugin.db, row), revision: toRevision(revision), traffic, cause });
  } catch (err) {
    ctx.log.warn({ err }, 'a tap of serving.revisionChanged failed');
  }
}

export default definePlugin<Partial<GatewaySettingsOfPlugin>>({
  register(env) {
    env.declareHook(servingHooks.deploymentReady);
    env.declareHook(servingHooks.deploymentFailed);
    env.declareHook(servingHooks.revisionChanged);
    env.declareHook(servingHooks.sloBreached);
    env.declareExtensionPoint(servingExtensionPoints.runtimes);
    env.migrations(migrations());
    env.tap(workloadHooks.stateChanged, async (change) => {
      if (!change.workload.spec.labels?.['serving.revision'] || !plugin) return;
      router.invalidate();
      const p = plugin;
      // Not awaited: the change is queued behind the deployment's other changes, and a route that
      // holds that queue may be the one whose submission announced this change.
      void workloadChanged(p, change.workload, change.reason)
        .catch((err: unknown) => p.logger.warn({ err }, 'a revision could not follow its workload'))
        .finally(() => router.invalidate());
    });

    env.route({
      method: 'GET',
      path: '/runtimes',
      summary: 'The serving runtimes (from runtime plugins) and whether their engines run here',
      permission: 'serving:read',
      handler: async (ctx) => ({ items: await Promise.all(runtimesOf(ctx.plugin).map((r) => runtimeInfo(r))) }),
    });

    env.route({
      method: 'GET',
      path: '/deployments',
      summary: 'Deployments of your teams',
      permission: 'serving:read',
      query: {
        type: 'object',
        additionalProperties: false,
        properties: { team: { type: 'string', maxLength: 64 }, state: { type: 'string', enum: ['deploying', 'ready', 'degraded', 'failed', 'stopped'] }, q: { type: 'string', maxLength: 200 } },
      },
      handler: async (ctx) => {
        const q = ctx.query as { team?: string; state?: string; q?: string };
        let query = scoped(ctx, T.deployments, 'serving:read');
        if (q.team) query = query.where({ team_id: q.team });
        if (q.state) query = query.where({ state: q.state });
        if (q.q) {
          const like = `%${q.q.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
          query = query.where((w) => w.whereILike('name', like).orWhereILike('served_model_name', like));
        }
        const rows = (await query.orderBy('updated_at', 'desc').limit(500)) as DeploymentRow[];
        return { items: await Promise.all(rows.map((r) => deploymentOf(ctx.db, r))) };
      },
    });

    env.route({
      method: 'GET',
      path: '/deployments/:id',
      summary: 'A deployment with its revisions and replicas',
      permission: 'serving:read',
      handler: async (ctx) => detailOf(ctx, (await deploymentOr404(ctx, ctx.params.id)).id),
    });

    // Not one transaction: it materialises the model and submits a workload (with its own
    // transaction); what it wrote is removed again when the scheduler refuses.
    env.route({
      method: 'POST',
      path: '/deployments',
      summary: 'Deploy a model version',
      permission: 'serving:write',
      mutates: false,
      audit: 'explicit',
      body: json(deployBody),
      handler: async (ctx) => {
        const p = ctx.plugin;
        const body = ctx.body as Record<string, any>;
        const user = ctx.user!;
        const team = body.team ?? user.defaultTeam ?? user.teams?.[0];
        if (!team || !ctx.can('serving:write', team)) throw new AiplatError('forbidden', `You do not hold "serving:write" in team "${team ?? '(none)'}"`, { permission: 'serving:write', team });
        const servedModelName = (body.servedModelName as string | undefined) ?? (body.name as string);
        if (await p.db(T.deployments).where({ team_id: team, name: body.name }).first()) throw new AiplatError('conflict', `Team ${team} already has a deployment named ${body.name}`, { field: 'name' });
        if (await p.db(T.deployments).where({ served_model_name: servedModelName }).first()) throw new AiplatError('conflict', `A deployment already serves the model name "${servedModelName}": choose another servedModelName`, { field: 'servedModelName' });
        const id = randomUUID();
        const checked = await check(ctx, inputOf(body), { id, name: body.name, team, servedModelName }, 1);
        const [row] = (await p
          .db(T.deployments)
          .insert({ id, name: body.name, team_id: team, created_by: user.id, served_model_name: servedModelName, state: 'deploying', traffic: '[]', pending: null, latest_revision: 0 })
          .returning('*')) as DeploymentRow[];
        gateway.meter.names.set(id, body.name);
        let revision: RevisionRow;
        try {
          revision = await startRevision(ctx, row!, checked, 1, { change: 'first revision', rollbackOf: null, canaryWeight: null }, user);
        } catch (err) {
          await p.db(T.deployments).where({ id }).delete();
          await rm(path.join(dataDirOf(p), 'deployments', id), { recursive: true, force: true });
          throw err;
        }
        await ctx.audit('serving:deployment.create', { deployment: id, name: body.name, modelVersion: checked.version.id, runtime: checked.runtime.id, revision: 1 }, { resource: { type: 'deployment', id }, team });
        await callRevisionChanged(ctx, row!, revision, [], 'created');
        router.invalidate();
        return reply(201, await detailOf(ctx, id));
      },
    });

    env.route({
      method: 'POST',
      path: '/deployments/:id/revisions',
      summary: 'Change a deployment: a new revision that takes the traffic when ready (or a canary share)',
      permission: 'serving:write',
      mutates: false,
      audit: 'explicit',
      body: json(changeBody),
      handler: async (ctx) => {
        const row = await deploymentOr404(ctx, ctx.params.id, 'serving:write');
        const body = ctx.body as Record<string, any>;
        return serialised(row.id, async () => {
          const current = (await ctx.plugin.db(T.deployments).where({ id: row.id }).first()) as DeploymentRow;
          const pending = pendingOf(current);
          if (pending) throw new AiplatError('conflict', `Revision ${pending.revision} is still rolling out: wait until it is ready or fails`, { revision: pending.revision });
          if (current.stopped) throw new AiplatError('conflict', 'The deployment is stopped: start it first');
          if (body.canaryWeight !== undefined && parsed(current.traffic).length === 0) throw new AiplatError('conflict', 'A canary needs a revision that already serves: this deployment has none ready', { field: 'canaryWeight' });
          const base = await baseRevision(ctx, current);
          const number = current.latest_revision + 1;
          const checked = await check(ctx, inputOf(body, base), { id: current.id, name: current.name, team: current.team_id, servedModelName: current.served_model_name }, number);
          const change = changeOf(base, checked.input, { modelName: checked.modelName, number: checked.version.number });
          const revision = await startRevision(ctx, current, checked, number, { change, rollbackOf: null, canaryWeight: body.canaryWeight ?? null }, ctx.user!);
          await ctx.audit('serving:revision.create', { deployment: row.id, revision: number, change, canaryWeight: body.canaryWeight ?? null }, { resource: { type: 'deployment', id: row.id }, team: row.team_id });
          await callRevisionChanged(ctx, current, revision, parsed(current.traffic), 'created');
          return reply(201, await detailOf(ctx, row.id));
        });
      },
    });

    env.route({
      method: 'POST',
      path: '/deployments/:id/rollback',
      summary: 'Roll back: a new revision restoring an earlier one (its model version, runtime, options, resources)',
      permission: 'serving:write',
      mutates: false,
      audit: 'explicit',
      body: json({ type: 'object', additionalProperties: false, required: ['revision'], properties: { revision: { type: 'integer', minimum: 1 } } }),
      handler: async (ctx) => {
        const row = await deploymentOr404(ctx, ctx.params.id, 'serving:write');
        const to = (ctx.body as { revision: number }).revision;
        return serialised(row.id, async () => {
          const current = (await ctx.plugin.db(T.deployments).where({ id: row.id }).first()) as DeploymentRow;
          const target = (await ctx.plugin.db(T.revisions).where({ deployment_id: row.id, number: to }).first()) as RevisionRow | undefined;
          if (!target) throw new AiplatError('not_found', `Deployment ${row.name} has no revision ${to}`, { field: 'revision' });
          const traffic = parsed(current.traffic);
          if (traffic.length === 1 && traffic[0]!.revision === to && !current.pending) throw new AiplatError('conflict', `Revision ${to} already serves all traffic`, { field: 'revision' });
          if (current.stopped) throw new AiplatError('conflict', 'The deployment is stopped: start it first');
          // A rollout in progress is abandoned: the rollback replaces it.
          const pending = pendingOf(current);
          if (pending) {
            const inFlight = (await ctx.plugin.db(T.revisions).where({ deployment_id: row.id, number: pending.revision }).first()) as RevisionRow | undefined;
            if (inFlight) await retire(ctx.plugin, inFlight, `abandoned for a rollback to revision ${to}`);
            await ctx.plugin.db(T.deployments).where({ id: row.id }).update({ pending: null });
            current.pending = null;
          }
          const number = current.latest_revision + 1;
          const checked = await check(
            ctx,
            configOf(target),
            { id: current.id, name: current.name, team: current.team_id, servedModelName: current.served_model_name },
            number,
          );
          const revision = await startRevision(ctx, current, checked, number, { change: `rollback to revision ${to}`, rollbackOf: to, canaryWeight: null }, ctx.user!);
          await ctx.audit('serving:deployment.rollback', { deployment: row.id, to, revision: number }, { resource: { type: 'deployment', id: row.id }, team: row.team_id });
          await callRevisionChanged(ctx, current, revision, traffic, 'created');
          return reply(201, await detailOf(ctx, row.id));
        });
      },
    });

    env.route({
      method: 'PUT',
      path: '/deployments/:id/traffic',
      summary: 'Set the traffic split between ready revisions (canary weights; promote with 100 on one)',
      permission: 'serving:write',
      audit: 'explicit',
      mutates: false,
      body: json(trafficBody),
      handler: async (ctx) => {
        const row = await deploymentOr404(ctx, ctx.params.id, 'serving:write');
        const wanted = (ctx.body as { traffic: TrafficEntry[] }).traffic.filter((t) => t.weight > 0);
        const total = wanted.reduce((a, t) => a + t.weight, 0);
        if (total !== 100) throw new AiplatError('validation_failed', `The weights add up to ${total}, not 100`, { field: 'traffic' });
        if (new Set(wanted.map((t) => t.revision)).size !== wanted.length) throw new AiplatError('validation_failed', 'A revision appears twice', { field: 'traffic' });
        return serialised(row.id, async () => {
          const current = (await ctx.plugin.db(T.deployments).where({ id: row.id }).first()) as DeploymentRow;
          if (current.stopped) throw new AiplatError('conflict', 'The deployment is stopped: start it first');
          const revisions = await revisionsOf(ctx.plugin.db, row.id);
          for (const t of wanted) {
            const r = revisions.find((x) => x.number === t.revision);
            if (!r) throw new AiplatError('validation_failed', `Deployment ${row.name} has no revision ${t.revision}`, { field: 'traffic' });
            if (r.state !== 'ready' && r.state !== 'degraded') throw new AiplatError('conflict', `Revision ${t.revision} is ${r.state}: only running revisions take traffic (roll back to it to run it again)`, { field: 'traffic', revision: t.revision });
          }
          const keep = new Set(wanted.map((t) => t.revision));
          const pending = pendingOf(current);
          for (const r of revisions) if (!keep.has(r.number) && ['ready', 'degraded'].includes(r.state) && r.number !== pending?.revision) await retire(ctx.plugin, r, 'taken out of traffic');
          const after = await refresh(ctx.plugin, row.id, { traffic: wanted, ...(pending && keep.has(pending.revision) ? { pending: null } : {}) });
          await ctx.audit('serving:deployment.traffic', { deployment: row.id, traffic: wanted }, { resource: { type: 'deployment', id: row.id }, team: row.team_id });
          const top = revisions.find((r) => r.number === primaryNumber(after!))!;
          await callRevisionChanged(ctx, after!, top, wanted, 'traffic');
          router.invalidate();
          return detailOf(ctx, row.id);
        });
      },
    });

    env.route({
      method: 'POST',
      path: '/deployments/:id/stop',
      summary: 'Stop every replica (the deployment keeps its revisions; start brings the live ones back)',
      permission: 'serving:write',
      audit: 'explicit',
      mutates: false,
      handler: async (ctx) => {
        const row = await deploymentOr404(ctx, ctx.params.id, 'serving:write');
        return serialised(row.id, async () => {
          const current = (await ctx.plugin.db(T.deployments).where({ id: row.id }).first()) as DeploymentRow;
          if (current.stopped) return detailOf(ctx, row.id);
          const pending = pendingOf(current);
          const live = (await ctx.plugin.db(T.revisions).where({ deployment_id: row.id }).whereIn('state', LIVE_REVISION_STATES)) as RevisionRow[];
          // Revisions in traffic come back on start: their state says stopped, not retired for good.
          for (const r of live) await retire(ctx.plugin, r, r.number === pending?.revision ? 'the deployment was stopped during its rollout' : 'stopped');
          await refresh(ctx.plugin, row.id, { stopped: true, pending: null, reason: `stopped by ${ctx.user!.username}` });
          await ctx.audit('serving:deployment.stop', { deployment: row.id }, { resource: { type: 'deployment', id: row.id }, team: row.team_id });
          router.invalidate();
          return detailOf(ctx, row.id);
        });
      },
    });

    env.route({
      method: 'POST',
      path: '/deployments/:id/start',
      summary: 'Start a stopped deployment: its traffic revisions run again',
      permission: 'serving:write',
      audit: 'explicit',
      mutates: false,
      handler: async (ctx) => {
        const row = await deploymentOr404(ctx, ctx.params.id, 'serving:write');
        return serialised(row.id, async () => {
          const current = (await ctx.plugin.db(T.deployments).where({ id: row.id }).first()) as DeploymentRow;
          if (!current.stopped) throw new AiplatError('conflict', 'The deployment is not stopped');
          // The revision with most traffic runs again (a canary's share returns when the operator sets it).
          const number = primaryNumber(current);
          const rows = (await ctx.plugin.db(T.revisions).where({ deployment_id: row.id, number })) as RevisionRow[];
          if (rows.length === 0) throw new AiplatError('conflict', `Deployment ${row.name} has no revision ${number} to start`);
          // Starting again: check them as new (the engine, the cards may have changed).
          for (const r of rows) {
            await check(ctx, configOf(r), { id: row.id, name: row.name, team: row.team_id, servedModelName: row.served_model_name }, r.number);
          }
          // It comes back as pending: the traffic follows its readiness.
          await ctx.plugin.db(T.deployments).where({ id: row.id }).update({ stopped: false, traffic: '[]', pending: JSON.stringify({ revision: number, canaryWeight: null }) });
          for (const r of rows) {
            await ctx.plugin.db(T.revisions).where({ id: r.id }).update({ state: 'starting', reason: null, started_at: new Date().toISOString(), ready_at: null, retired_at: null });
            try {
              await submitRevision(ctx.plugin, { ...current, stopped: false }, r, ctx.user!);
            } catch (err) {
              await fail(ctx.plugin, r, `it could not start again: ${(err as Error).message}`);
            }
          }
          await refresh(ctx.plugin, row.id, { reason: null });
          await ctx.audit('serving:deployment.start', { deployment: row.id }, { resource: { type: 'deployment', id: row.id }, team: row.team_id });
          router.invalidate();
          return detailOf(ctx, row.id);
        });
      },
    });

    env.route({
      method: 'DELETE',
      path: '/deployments/:id',
      summary: 'Delete a deployment (its replicas stop)',
      permission: 'serving:write',
      audit: 'explicit',
      mutates: false,
      handler: async (ctx) => {
        const row = await deploymentOr404(ctx, ctx.params.id, 'serving:write');
        await serialised(row.id, async () => {
          const live = (await ctx.plugin.db(T.revisions).where({ deployment_id: row.id }).whereIn('state', LIVE_REVISION_STATES)) as RevisionRow[];
          for (const r of live) await retire(ctx.plugin, r, 'the deployment was deleted');
          await ctx.plugin.db(T.deployments).where({ id: row.id }).delete();
          await rm(path.join(dataDirOf(ctx.plugin), 'deployments', row.id), { recursive: true, force: true });
        });
        gateway.meter.forget(row.id);
        await ctx.audit('serving:deployment.delete', { deployment: row.id, name: row.name }, { resource: { type: 'deployment', id: row.id }, team: row.team_id });
        router.invalidate();
        return undefined;
      },
    });

    env.route({
      method: 'GET',
      path: '/deployments/:id/api-docs',
      summary: 'How to call a deployment: its OpenAPI document and code snippets',
      permission: 'serving:read',
      handler: async (ctx): Promise<ApiDocs> => {
        const row = await deploymentOr404(ctx, ctx.params.id);
        const primary = await baseRevision(ctx, row);
        const baseUrl = baseUrlOf(ctx);
        const runtime = primary ? runtimeOf(ctx.plugin, primary.runtime) : undefined;
        return {
          baseUrl,
          model: row.served_model_name,
          openapi: openApiOf({ baseUrl, model: row.served_model_name, deployment: row.name, revision: primary?.number ?? 0, runtime }),
          snippets: snippetsOf(baseUrl, row.served_model_name),
        };
      },
    });

    env.route({
      method: 'GET',
      path: '/deployments/:id/openapi.json',
      summary: 'The OpenAPI document of a deployment',
      permission: 'serving:read',
      handler: async (ctx) => {
        const row = await deploymentOr404(ctx, ctx.params.id);
        const primary = await baseRevision(ctx, row);
        return openApiOf({ baseUrl: baseUrlOf(ctx), model: row.served_model_name, deployment: row.name, revision: primary?.number ?? 0, runtime: primary ? runtimeOf(ctx.plugin, primary.runtime) : undefined });
      },
    });

    env.route({
      method: 'POST',
      path: '/estimate',
      summary: 'GPU memory a deployment would need, and whether it fits the cards there are',
      permission: 'serving:read',
      mutates: false,
      body: json(estimateBody),
      handler: async (ctx) => {
        const body = ctx.body as Record<string, any>;
        const models = ctx.plugin.service(modelsService);
        const version = await models.get(body.modelVersion);
        const model = version ? await models.model(version.modelId) : undefined;
        if (!version || !model || !ctx.can('models:read', model.team)) throw new AiplatError('validation_failed', `No model version ${body.modelVersion}`, { field: 'modelVersion' });
        const runtime = runtimeOf(ctx.plugin, body.runtime);
        if (!runtime) throw new AiplatError('validation_failed', `No runtime "${body.runtime}"`, { field: 'runtime' });
        const options = validOptions(runtime, body.options ?? {});
        const resources: ServingResources = { gpus: 0, ...(body.resources ?? {}) };
        const replicas = body.replicas ?? 1;
        const weightsMiB = Math.ceil((version.metadata.sizes?.weightBytes ?? version.totalSize) / 1048576);
        const context = { model: { versionId: version.id, name: model.name, number: version.number, path: '', metadata: version.metadata as unknown as Record<string, unknown> }, options, resources };
        const perReplicaMiB = Math.ceil(runtime.estimateGpuMemoryMiB?.(context) ?? weightsMiB * 1.2);
        const card = await largestCardMiB(ctx.db);
        const cpuOnly = resources.gpus === 0 && !resources.gpuMemoryMiB;
        const room = resources.gpuMemoryMiB ?? (card ? card * Math.max(1, resources.gpus) : null);
        let fits = true;
        let reason: string | null = null;
        if (cpuOnly) reason = 'CPU only: the weights go into main memory';
        else if (room === null) {
          fits = false;
          reason = 'There is no GPU on the platform';
        } else if (perReplicaMiB > room) {
          fits = false;
          reason = `A replica needs about ${perReplicaMiB} MiB, more than the ${room} MiB it gets`;
        }
        return { weightsMiB, perReplicaMiB, totalMiB: cpuOnly ? 0 : perReplicaMiB * replicas, gpuMemoryMiB: card, fits, reason };
      },
    });

    registerGatewayRoutes(env, {
      gateway,
      router,
      settings: settingsOf,
      deploymentOr404,
      detailOf,
      serialised,
    });
  },

  async start(ctx) {
    plugin = ctx;
    router.invalidate();
    lineageOf(ctx)?.describeKind(REVISION_NODE, { route: '/serving/deployments/{id}' });
    timer = setInterval(() => {
      const p = plugin;
      if (p) void checkTimeouts(p, settingsOf(p)).catch((err: unknown) => p.logger.warn({ err }, 'checking revisions that are late failed'));
    }, 5000);
    timer.unref();
    // Metered usage to the table every 5 s; objectives checked as often.
    flusher = setInterval(() => {
      const p = plugin;
      if (!p) return;
      void gateway.meter.flush(p.db).catch((err: unknown) => p.logger.warn({ err }, 'metered usage could not be written (kept for the next try)'));
      void gateway.watch(p).catch((err: unknown) => p.logger.warn({ err }, 'checking the deployments’ objectives failed'));
    }, 5000);
    flusher.unref();
    gateway.prometheus(ctx);
    for (const d of (await ctx.db(T.deployments).select('id', 'name')) as { id: string; name: string }[]) gateway.meter.names.set(d.id, d.name);
    // A replica restarting keeps its workload's state: the workloads topic says so, the hook does not.
    restarts = ctx.service(coreServices.events).subscribe<{ id: string; owner: string; from: string | null; state: string; reason: string | null }>('workloads', (event) => {
      const e = event.payload;
      if (e.owner !== 'serving' || e.from !== e.state || !e.reason?.endsWith('restarting it')) return;
      router.invalidate();
      void replicaRestarted(ctx, e.id, e.reason.replace(/; restarting it$/, '')).catch((err: unknown) => ctx.logger.warn({ err }, 'a restarted replica could not be followed'));
    });
  },

  async stop(ctx) {
    if (flusher) clearInterval(flusher);
    flusher = undefined;
    await gateway.meter.flush(ctx.db).catch((err: unknown) => ctx.logger.warn({ err }, 'metered usage could not be written at stop'));
    gateway.keys.clear();
    await router.close();
    restarts?.unsubscribe();
    restarts = undefined;
    if (timer) clearInterval(timer);
    timer = undefined;
    plugin = undefined;
    engines.clear();
  },
});
