import { AiplatError, reply, scoped, type RouteContext, type RouteDefinition, type WorkloadSpec } from '@aiplat/plugin-sdk';
import type { SchedulerRuntime } from './runtime.js';
import { workloadSpecSchema } from './spec.js';
import { Changes, iso, readWorkload, toWorkload, type ReplicaRow, type WorkloadRow } from './store.js';
import { gpuHours, gpusInUse, quotaStates, round } from './quotas.js';
import type { Knex } from 'knex';
import { settingsValidator } from '../http/validation.js';
import type { AddNodeRequest } from './connections.js';
import { SIMULATED_CAPTURES } from './devices/simulated.js';
import { loadCluster, NODE_STALE_SECONDS } from './ledger.js';
import { usedMiB } from './placement.js';

const STATES = ['pending', 'scheduled', 'running', 'ready', 'succeeded', 'failed', 'cancelled', 'lost'];
const idParams = { type: 'object', properties: { id: { type: 'string', minLength: 1, maxLength: 100 } } };
const cursor = { type: 'string', pattern: '^[0-9]{1,18}$' };

const workloadSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    name: { type: 'string' },
    kind: { enum: ['job', 'service'] },
    team: { type: 'string' },
    userId: { type: ['string', 'null'] },
    owner: { type: 'string', description: 'core for the API, or the plugin that submitted it' },
    executor: { type: 'string' },
    state: { enum: STATES },
    reason: { type: ['string', 'null'], description: 'why it is in its state: why it waits, why it failed' },
    priority: { type: 'string' },
    spec: { type: 'object' },
    attempt: { type: 'integer' },
    epoch: { type: 'integer', description: 'the fencing epoch: raised at every placement' },
    exitCode: { type: ['integer', 'null'] },
    placements: { type: 'array', items: { type: 'object' } },
    createdAt: { type: 'string', format: 'date-time' },
    updatedAt: { type: 'string', format: 'date-time' },
    startedAt: { type: ['string', 'null'], format: 'date-time' },
    finishedAt: { type: ['string', 'null'], format: 'date-time' },
  },
};

const logItem = (r: { id: number; replica: number; epoch: number; at: Date; text: string }) => ({ logId: r.id, replica: r.replica, epoch: r.epoch, at: iso(r.at), text: r.text });

async function visibleWorkload(ctx: RouteContext<any, any, any>, id: string): Promise<WorkloadRow> {
  const row = (await ctx.db('workloads').where({ id }).first()) as WorkloadRow | undefined;
  if (!row || !ctx.can('workloads:read', row.team_id)) throw new AiplatError('not_found', `No workload ${id}`);
  return row;
}

/** A caller may stop or retry their own workloads, or any of a team where they hold `workloads:manage`. */
function mayControl(ctx: RouteContext<any, any, any>, row: WorkloadRow, permission: string): void {
  if (row.user_id === ctx.user!.id && ctx.can(permission, row.team_id)) return;
  if (ctx.can('workloads:manage', row.team_id)) return;
  throw new AiplatError('forbidden', `Only the submitter (with "${permission}") or a holder of "workloads:manage" in team "${row.team_id}" may do this`, {
    permission: 'workloads:manage',
    team: row.team_id,
  });
}

const NODE_NAME = '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$';
const labelsSchema = { type: 'object', maxProperties: 32, propertyNames: { pattern: '^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$' }, additionalProperties: { type: 'string', maxLength: 256 } };
const envSchema = { type: 'object', maxProperties: 100, propertyNames: { pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }, additionalProperties: { type: 'string', maxLength: 4096 } };
const allowedImagesSchema = {
  type: 'array',
  maxItems: 100,
  uniqueItems: true,
  items: { type: 'string', minLength: 1, maxLength: 255, pattern: '^[A-Za-z0-9*?\\[][A-Za-z0-9._\\-/:@*?\\[\\]{},]*$' },
  description: 'image patterns this node runs (`local/*`, `registry.lan/team/**`, `pytorch/pytorch:2.*`); empty: any',
};

/** Variables the scheduler sets for each replica: not a node's to set. */
function checkEnv(env: Record<string, string> | undefined): void {
  for (const reserved of ['CUDA_VISIBLE_DEVICES', 'WORLD_SIZE', 'RANK', 'MASTER_ADDR', 'MASTER_PORT']) {
    if (env && reserved in env) throw new AiplatError('validation_failed', `env ${reserved} is set by the scheduler for each replica`, { field: `env.${reserved}` });
  }
}

interface NodeRow {
  id: string;
  name: string;
  address: string;
  provider: string;
  labels: Record<string, string>;
  user_labels: Record<string, string>;
  env: Record<string, string>;
  executors: string[];
  simulated: boolean;
  cpu: number | null;
  memory_mib: number | null;
  state: string;
  state_reason: string | null;
  seen_at: Date | string;
  connector: string | null;
  connection: Record<string, unknown> | null;
  connection_secrets: Record<string, unknown> | null;
  allowed_images: string[];
}

/** The state people see: a ready node whose core has been silent is not ready. */
function nodeState(n: Pick<NodeRow, 'state' | 'state_reason' | 'seen_at'>): { state: string; stateReason: string | null } {
  const silentFor = Math.round((Date.now() - new Date(n.seen_at).getTime()) / 1000);
  if (n.state === 'ready' && silentFor > NODE_STALE_SECONDS) {
    return { state: 'not-ready', stateReason: `its core has not reported it for ${silentFor} s` };
  }
  return { state: n.state, stateReason: n.state_reason };
}

/** Nodes as the API shows them, with their cards and what is held on each. */
async function nodeItems(db: Knex, ids?: string[]): Promise<Record<string, unknown>[]> {
  const nodeQuery = db('nodes').whereNot({ state: 'removed' }).orderBy('id');
  const deviceQuery = db('gpu_devices').where({ present: true }).orderBy(['node_id', 'index']);
  if (ids) {
    nodeQuery.whereIn('id', ids);
    deviceQuery.whereIn('node_id', ids);
  }
  const [nodes, devices, cluster] = await Promise.all([nodeQuery, deviceQuery, loadCluster(db, { includeCordoned: true })]);
  const byNode = new Map<string, Record<string, unknown>[]>();
  for (const d of devices as { id: string; node_id: string; index: number; uuid: string; model: string; memory_mib: number; details: Record<string, unknown> }[]) {
    const state = cluster.devices.get(d.id);
    const foreign = state?.foreignMiB ?? 0;
    const reserved = state ? usedMiB(state) - foreign : 0;
    byNode.set(d.node_id, [
      ...(byNode.get(d.node_id) ?? []),
      {
        id: d.id,
        index: d.index,
        uuid: d.uuid,
        model: d.model,
        memoryMiB: d.memory_mib,
        reservedMiB: reserved,
        // Held by processes aiplat did not start: counted as taken.
        foreignMiB: foreign,
        free: reserved === 0 && foreign === 0,
        details: d.details,
      },
    ]);
  }
  return (nodes as NodeRow[]).map((n) => ({
    id: n.id,
    name: n.name,
    address: n.address,
    provider: n.provider,
    ...nodeState(n),
    kind: n.connector,
    settings: n.connection,
    secrets: Object.fromEntries(Object.keys(n.connection_secrets ?? {}).map((field) => [field, { set: true }])),
    allowedImages: n.allowed_images,
    removable: n.connector !== null || n.state === 'offline',
    simulated: n.simulated,
    labels: { ...n.labels, ...n.user_labels },
    userLabels: n.user_labels,
    env: n.env,
    executors: n.executors,
    cpu: n.cpu,
    memoryMiB: n.memory_mib,
    seenAt: iso(n.seen_at),
    gpus: byNode.get(n.id) ?? [],
  }));
}

/** `/api/v1/workloads`, `/nodes`, `/gpus/reservations`, `/quotas`, `/usage`, `/priority-classes`. */
export function schedulerRoutes(runtime: SchedulerRuntime, timeZone: string): RouteDefinition[] {
  const { scheduler } = runtime;
  /** Cancel or retry: the caller must see the workload and control it; the change is announced after commit. */
  const control = async (ctx: RouteContext<any, any, any>, permission: string, act: (row: WorkloadRow, changes: Changes) => Promise<void>) => {
    const row = await visibleWorkload(ctx, ctx.params.id);
    mayControl(ctx, row, permission);
    const changes = new Changes();
    await act(row, changes);
    ctx.auditInfo = { team: row.team_id };
    ctx.afterCommit(() => runtime.publish(changes));
    return readWorkload(ctx.db, row.id);
  };
  return [
    {
      method: 'POST',
      path: '/workloads',
      summary: 'Submit a job or a service',
      description:
        'The spec of ARCHITECTURE §5. `team` defaults to your default team. Refused with 422 `unschedulable` when it can never run (more GPUs than any node has, an unknown executor, team or priority class, over the team quota). `command` is argv: never run by a shell.',
      tags: ['workloads'],
      permission: 'workloads:create',
      body: { mode: 'json', schema: workloadSpecSchema, limit: 1024 * 1024 },
      responses: { 201: { description: 'The workload, pending', schema: workloadSchema } },
      handler: async (ctx) => {
        const changes = new Changes();
        const row = await scheduler.submit(ctx.db, ctx.body as WorkloadSpec, { user: ctx.user!, owner: 'core' }, changes);
        ctx.auditInfo = { resource: { type: 'workload', id: row.id }, team: row.team_id, details: { name: row.name, kind: row.kind } };
        ctx.afterCommit(() => runtime.publish(changes));
        const replicas = (await ctx.db('workload_replicas').where({ workload_id: row.id }).orderBy('replica')) as ReplicaRow[];
        return reply(201, toWorkload(row, replicas));
      },
    },
    {
      method: 'GET',
      path: '/workloads',
      summary: "Workloads of my teams (every team's with a global grant), newest first",
      tags: ['workloads'],
      permission: 'workloads:read',
      query: {
        type: 'object',
        properties: {
          team: { type: 'string', minLength: 1, maxLength: 100 },
          state: { type: 'string', pattern: `^(${STATES.join('|')})(,(${STATES.join('|')}))*$`, description: 'one state or several, comma-separated' },
          kind: { enum: ['job', 'service'] },
          owner: { type: 'string', minLength: 1, maxLength: 100 },
          mine: { type: 'boolean', default: false },
          label: { type: 'string', pattern: '^[^=]{1,63}=.{0,256}$', description: 'key=value' },
          limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
          cursor,
        },
      },
      handler: async (ctx) => {
        const q = ctx.query as { team?: string; state?: string; kind?: string; owner?: string; mine: boolean; label?: string; limit: number; cursor?: string };
        const query = scoped(ctx, 'workloads', 'workloads:read').orderBy('seq', 'desc').limit(q.limit + 1);
        if (q.team) query.where('team_id', q.team);
        if (q.state) query.whereIn('state', q.state.split(','));
        if (q.kind) query.where('kind', q.kind);
        if (q.owner) query.where('owner', q.owner);
        if (q.mine) query.where('user_id', ctx.user!.id);
        if (q.label) {
          const [key, ...value] = q.label.split('=');
          query.whereRaw("spec->'labels'->>? = ?", [key!, value.join('=')]);
        }
        if (q.cursor) query.where('seq', '<', Number(q.cursor));
        const rows = (await query) as WorkloadRow[];
        const page = rows.slice(0, q.limit);
        const replicas = page.length
          ? ((await ctx.db('workload_replicas').whereIn('workload_id', page.map((r) => r.id)).orderBy(['workload_id', 'replica'])) as ReplicaRow[])
          : [];
        const byWorkload = new Map<string, ReplicaRow[]>();
        for (const r of replicas) byWorkload.set(r.workload_id, [...(byWorkload.get(r.workload_id) ?? []), r]);
        return {
          items: page.map((row) => toWorkload(row, byWorkload.get(row.id) ?? [])),
          nextCursor: rows.length > q.limit ? String(page[page.length - 1]!.seq) : null,
        };
      },
    },
    {
      method: 'GET',
      path: '/workloads/summary',
      summary: 'How many workloads of my teams are in each state (dashboard)',
      tags: ['workloads'],
      permission: 'workloads:read',
      query: { type: 'object', properties: { team: { type: 'string', minLength: 1, maxLength: 100 } } },
      handler: async (ctx) => {
        const q = ctx.query as { team?: string };
        const query = scoped(ctx, 'workloads', 'workloads:read').groupBy('state').select('state', ctx.db.raw('count(*)::int as n'));
        if (q.team) query.where('team_id', q.team);
        const rows = (await query) as { state: string; n: number }[];
        const byState: Record<string, number> = Object.fromEntries(STATES.map((state) => [state, 0]));
        for (const r of rows) byState[r.state] = Number(r.n);
        return { byState };
      },
    },
    {
      method: 'GET',
      path: '/workloads/:id',
      summary: 'One workload with its placements and why it is in its state',
      tags: ['workloads'],
      permission: 'workloads:read',
      params: idParams,
      responses: { 200: { description: 'The workload', schema: workloadSchema } },
      handler: async (ctx) => {
        await visibleWorkload(ctx, ctx.params.id);
        return readWorkload(ctx.db, ctx.params.id);
      },
    },
    {
      method: 'POST',
      path: '/workloads/:id/cancel',
      summary: 'Cancel: a pending workload at once; running replicas get SIGTERM, a grace period, then SIGKILL',
      tags: ['workloads'],
      permission: 'workloads:cancel',
      params: idParams,
      body: { mode: 'none' },
      auditResource: ({ params }) => ({ type: 'workload', id: params.id }),
      handler: async (ctx) => {
        return control(ctx, 'workloads:cancel', (row, changes) => scheduler.cancel(ctx.db, row.id, `cancelled by ${ctx.user!.username}`, changes));
      },
    },
    {
      method: 'POST',
      path: '/workloads/:id/retry',
      summary: 'Run a finished workload again (a new attempt of the same spec)',
      tags: ['workloads'],
      permission: 'workloads:create',
      params: idParams,
      body: { mode: 'none' },
      auditResource: ({ params }) => ({ type: 'workload', id: params.id }),
      handler: async (ctx) => {
        return control(ctx, 'workloads:create', (row, changes) => scheduler.retry(ctx.db, row.id, changes));
      },
    },
    {
      method: 'GET',
      path: '/workloads/:id/logs',
      summary: 'Stored output, oldest first (follow live on the stream topic workloads/<id>/logs)',
      tags: ['workloads'],
      permission: 'workloads:read',
      params: idParams,
      query: {
        type: 'object',
        properties: {
          replica: { type: 'integer', minimum: 0, maximum: 255 },
          after: { ...cursor, description: 'the logId of the last chunk you have' },
          tail: { type: 'integer', minimum: 1, maximum: 1000, description: 'only the last N chunks (oldest first); then follow with after=' },
          limit: { type: 'integer', minimum: 1, maximum: 1000, default: 200 },
        },
      },
      handler: async (ctx) => {
        await visibleWorkload(ctx, ctx.params.id);
        const q = ctx.query as { replica?: number; after?: string; limit: number; tail?: number };
        if (q.tail !== undefined) {
          if (q.after) throw new AiplatError('validation_failed', 'tail and after cannot be used together', { field: 'tail' });
          const last = ctx.db('workload_logs').where({ workload_id: ctx.params.id }).orderBy('id', 'desc').limit(q.tail);
          if (q.replica !== undefined) last.where({ replica: q.replica });
          const rows = ((await last) as { id: number; replica: number; epoch: number; at: Date; text: string }[]).reverse();
          return {
            items: rows.map(logItem),
            nextCursor: rows.length > 0 ? String(rows[rows.length - 1]!.id) : (q.after ?? null),
            topic: `workloads/${ctx.params.id}/logs`,
          };
        }
        const query = ctx.db('workload_logs').where({ workload_id: ctx.params.id }).orderBy('id').limit(q.limit + 1);
        if (q.replica !== undefined) query.where({ replica: q.replica });
        if (q.after) query.where('id', '>', Number(q.after));
        const rows = (await query) as { id: number; replica: number; epoch: number; at: Date; text: string }[];
        const page = rows.slice(0, q.limit);
        return {
          items: page.map(logItem),
          nextCursor: rows.length > q.limit ? String(page[page.length - 1]!.id) : null,
          topic: `workloads/${ctx.params.id}/logs`,
        };
      },
    },
    {
      method: 'GET',
      path: '/workloads/:id/metrics',
      summary: 'Metric series parsed from JSON lines on stdout ({"type":"metric","step":10,"loss":2.31})',
      tags: ['workloads'],
      permission: 'workloads:read',
      params: idParams,
      query: { type: 'object', properties: { name: { type: 'string', minLength: 1, maxLength: 100 } } },
      handler: async (ctx) => {
        await visibleWorkload(ctx, ctx.params.id);
        const rows = (await ctx.db('workload_metrics').where({ workload_id: ctx.params.id }).orderBy('id').limit(100_000)) as {
          replica: number;
          at: Date;
          step: number | null;
          values: Record<string, number>;
        }[];
        const series = new Map<string, { step: number | null; value: number; replica: number; at: string | null }[]>();
        const only = (ctx.query as { name?: string }).name;
        for (const r of rows) {
          for (const [name, value] of Object.entries(r.values)) {
            if (only && name !== only) continue;
            if (!series.has(name)) series.set(name, []);
            series.get(name)!.push({ step: r.step, value, replica: r.replica, at: iso(r.at) });
          }
        }
        return { series: [...series].map(([name, points]) => ({ name, points })), topic: `workloads/${ctx.params.id}/metrics` };
      },
    },
    {
      method: 'GET',
      path: '/workloads/:id/events',
      summary: 'Every state transition, with its reason',
      tags: ['workloads'],
      permission: 'workloads:read',
      params: idParams,
      handler: async (ctx) => {
        await visibleWorkload(ctx, ctx.params.id);
        const rows = (await ctx.db('workload_events').where({ workload_id: ctx.params.id }).orderBy('id')) as {
          id: number;
          at: Date;
          from_state: string | null;
          to_state: string;
          reason: string | null;
          epoch: number;
          details: Record<string, unknown>;
        }[];
        return { items: rows.map((r) => ({ id: r.id, at: iso(r.at), from: r.from_state, to: r.to_state, reason: r.reason, epoch: r.epoch, details: r.details })) };
      },
    },
    {
      method: 'GET',
      path: '/nodes',
      summary: 'Nodes with their GPUs, and what is reserved on each',
      tags: ['gpus'],
      permission: 'nodes:read',
      handler: async (ctx) => ({ items: await nodeItems(ctx.db) }),
    },
    {
      method: 'POST',
      path: '/nodes',
      summary: 'Add a host as a node (a remote Docker engine by socket or TCP URL, ...), reached through the node connector of its kind',
      description:
        'The host is reached before anything is stored: one that does not answer is refused with 422 `node_unreachable`. `secrets` (TLS CA, certificate and key, PEM) are stored encrypted with AIPLAT_SECRET_KEY. `simulatedGpus` gives a host without GPUs simulated cards from a real capture (demonstrations, development): they are labelled simulated everywhere.',
      tags: ['gpus'],
      permission: 'nodes:manage',
      body: {
        mode: 'json',
        schema: {
          type: 'object',
          additionalProperties: false,
          required: ['kind', 'name', 'settings'],
          properties: {
            kind: { type: 'string', pattern: '^[a-z][a-z0-9-]{0,40}$', description: 'the connector kind, e.g. "docker"' },
            name: { type: 'string', pattern: NODE_NAME, description: 'becomes the node id' },
            settings: { type: 'object', additionalProperties: true, description: "the connector's settings, e.g. { url: \"tcp://10.0.0.5:2376\" }" },
            secrets: { type: 'object', maxProperties: 10, additionalProperties: { type: 'string', minLength: 1, maxLength: 65536 } },
            labels: labelsSchema,
            env: envSchema,
            allowedImages: allowedImagesSchema,
            simulatedGpus: { enum: Object.keys(SIMULATED_CAPTURES), description: 'simulated cards from a capture, for machines without GPUs' },
          },
        },
      },
      // Reaching the host may take seconds: not in a request transaction (the embedded database
      // has one connection). The node is stored in a transaction of its own, then audited.
      mutates: false,
      auditResource: ({ body }) => ({ type: 'node', id: (body as { name?: string } | undefined)?.name ?? '' }),
      responses: { 201: { description: 'The node, ready' } },
      handler: async (ctx) => {
        const body = ctx.body as AddNodeRequest & { labels?: Record<string, string> };
        checkEnv(body.env);
        const connector = runtime.connections.connector(body.kind);
        // The connector's own schema: its fields named in the error, its defaults applied.
        const settings = connector ? settingsValidator(connector.settingsSchema).validate(body.settings) : body.settings;
        const id = await runtime.connections.add(ctx.db, { ...body, settings });
        await ctx.audit('core:POST /nodes', { method: 'POST', path: '/api/v1/nodes', kind: body.kind, settings }, { resource: { type: 'node', id } });
        runtime.scheduler.nudge();
        await runtime.publishNodes([id]);
        return reply(201, (await nodeItems(ctx.db, [id]))[0]);
      },
    },
    {
      method: 'DELETE',
      path: '/nodes/:id',
      summary: 'Remove a node: one added through the API, or a discovered one that went offline. Drain it first: a node that runs work is not removed',
      tags: ['gpus'],
      permission: 'nodes:manage',
      params: idParams,
      auditResource: ({ params }) => ({ type: 'node', id: params.id }),
      handler: async (ctx) => {
        const node = (await ctx.db('nodes').where({ id: ctx.params.id }).whereNot({ state: 'removed' }).forUpdate().first('id', 'state', 'connector')) as
          | { id: string; state: string; connector: string | null }
          | undefined;
        if (!node) throw new AiplatError('not_found', `No node ${ctx.params.id}`);
        if (node.connector === null && node.state !== 'offline') {
          throw new AiplatError('conflict', `Node ${node.id} is discovered by its core and still reports in: removed now, it would come back at the next round. Cordon it, or remove it once it is offline`);
        }
        const live = (await ctx.db('workload_replicas').where({ node_id: node.id }).whereIn('state', ['placed', 'starting', 'running', 'ready']).count('* as n').first()) as { n: number | string };
        if (Number(live.n) > 0) {
          throw new AiplatError('conflict', `Node ${node.id} still runs ${live.n} replica${Number(live.n) === 1 ? '' : 's'}: drain it (with evict to move the work) and remove it when it is idle`, { running: Number(live.n) });
        }
        // Its cards stay in the ledger's history (reservations refer to them), never placed on again.
        await ctx.db('nodes').where({ id: node.id }).update({ state: 'removed', state_reason: null, connection_secrets: null });
        await ctx.db('gpu_devices').where({ node_id: node.id }).update({ present: false, updated_at: ctx.db.fn.now() });
        if (node.connector) {
          const kind = node.connector;
          ctx.afterCommit(() => runtime.connections.disconnect(kind, node.id));
        }
        ctx.afterCommit(() => runtime.publishNodes([node.id]));
        return reply(204);
      },
    },
    {
      method: 'PATCH',
      path: '/nodes/:id',
      summary: "Change a node: cordon or uncordon it (no new work), its labels (null removes one), the environment every replica on it gets",
      tags: ['gpus'],
      permission: 'nodes:manage',
      params: idParams,
      body: {
        mode: 'json',
        schema: {
          type: 'object',
          additionalProperties: false,
          minProperties: 1,
          properties: {
            cordoned: { type: 'boolean' },
            labels: { type: 'object', maxProperties: 32, propertyNames: { pattern: '^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$' }, additionalProperties: { type: ['string', 'null'], maxLength: 256 } },
            env: envSchema,
            allowedImages: allowedImagesSchema,
          },
        },
      },
      auditResource: ({ params }) => ({ type: 'node', id: params.id }),
      handler: async (ctx) => {
        const body = ctx.body as { cordoned?: boolean; labels?: Record<string, string | null>; env?: Record<string, string>; allowedImages?: string[] };
        const node = (await ctx.db('nodes').where({ id: ctx.params.id }).whereNot({ state: 'removed' }).forUpdate().first('id', 'state', 'user_labels')) as
          | { id: string; state: string; user_labels: Record<string, string> }
          | undefined;
        if (!node) throw new AiplatError('not_found', `No node ${ctx.params.id}`);
        for (const reserved of ['CUDA_VISIBLE_DEVICES', 'WORLD_SIZE', 'RANK', 'MASTER_ADDR', 'MASTER_PORT']) {
          if (body.env && reserved in body.env) throw new AiplatError('validation_failed', `env ${reserved} is set by the scheduler for each replica`, { field: `env.${reserved}` });
        }
        const patch: Record<string, unknown> = {};
        if (body.cordoned !== undefined) {
          if (node.state === 'offline' && !body.cordoned) throw new AiplatError('conflict', `Node ${node.id} is offline: it becomes ready when its core reports it again`);
          if (node.state === 'not-ready' && !body.cordoned) throw new AiplatError('conflict', `Node ${node.id} is not ready: it becomes ready when its host answers again`);
          // Cordoning keeps "not ready" visible through the reason; uncordoning a cordoned node whose host is down makes it not ready at the next round.
          if (node.state !== 'not-ready' || body.cordoned) patch.state = body.cordoned ? 'cordoned' : 'ready';
        }
        if (body.allowedImages) patch.allowed_images = JSON.stringify(body.allowedImages);
        if (body.labels) {
          const labels = { ...node.user_labels };
          for (const [key, value] of Object.entries(body.labels)) {
            if (value === null) delete labels[key];
            else labels[key] = value;
          }
          patch.user_labels = JSON.stringify(labels);
        }
        if (body.env) patch.env = JSON.stringify(body.env);
        await ctx.db('nodes').where({ id: node.id }).update(patch);
        ctx.afterCommit(() => {
          runtime.scheduler.nudge();
          return runtime.publishNodes([node.id]);
        });
        const row = (await ctx.db('nodes').where({ id: node.id }).first()) as NodeRow;
        return { id: row.id, ...nodeState(row), labels: { ...row.labels, ...row.user_labels }, userLabels: row.user_labels, env: row.env, allowedImages: row.allowed_images };
      },
    },
    {
      method: 'POST',
      path: '/nodes/:id/drain',
      summary: 'Cordon a node and, with evict, stop its running work so it is placed elsewhere (SIGTERM, grace, SIGKILL; back to the queue)',
      tags: ['gpus'],
      permission: 'nodes:manage',
      params: idParams,
      body: { mode: 'json', schema: { type: 'object', additionalProperties: false, properties: { evict: { type: 'boolean', default: false } } } },
      auditResource: ({ params }) => ({ type: 'node', id: params.id }),
      handler: async (ctx) => {
        const { evict } = ctx.body as { evict: boolean };
        const node = (await ctx.db('nodes').where({ id: ctx.params.id }).whereNot({ state: 'removed' }).forUpdate().first('id', 'state')) as { id: string; state: string } | undefined;
        if (!node) throw new AiplatError('not_found', `No node ${ctx.params.id}`);
        if (node.state === 'ready' || node.state === 'not-ready') await ctx.db('nodes').where({ id: node.id }).update({ state: 'cordoned' });
        const running = (await ctx.db('workload_replicas')
          .where({ node_id: node.id })
          .whereIn('state', ['placed', 'starting', 'running', 'ready'])
          .distinct('workload_id')
          .pluck('workload_id')) as string[];
        let evicted: string[] = [];
        if (evict && running.length > 0) {
          const stopped = (await ctx.db('workloads')
            .whereIn('id', running)
            .whereNull('stopping')
            .whereIn('state', ['scheduled', 'running', 'ready'])
            .update({ stopping: `evicted:${node.id}`, updated_at: ctx.db.fn.now() })
            .returning(['id', 'state', 'epoch'])) as { id: string; state: string; epoch: number }[];
          if (stopped.length > 0) {
            await ctx.db('workload_events').insert(stopped.map((w) => ({ workload_id: w.id, from_state: w.state, to_state: w.state, reason: `stopping: node ${node.id} is drained`, epoch: w.epoch })));
          }
          evicted = stopped.map((w) => w.id);
        }
        ctx.afterCommit(() => {
          runtime.agent.nudge();
          runtime.scheduler.nudge();
          return runtime.publishNodes([node.id]);
        });
        return { id: node.id, state: 'cordoned', running: running.length, evicted };
      },
    },
    {
      method: 'GET',
      path: '/nodes/:node/gpus/:index/metrics',
      summary: "One card's samples over time (utilisation, memory, temperature, power), averaged into at most ~500 points",
      tags: ['gpus'],
      permission: 'nodes:read',
      params: { type: 'object', properties: { node: { type: 'string', minLength: 1, maxLength: 100 }, index: { type: 'integer', minimum: 0, maximum: 10000 } } },
      query: {
        type: 'object',
        properties: {
          from: { type: 'string', format: 'date-time', description: 'default: an hour ago' },
          to: { type: 'string', format: 'date-time', description: 'default: now' },
        },
      },
      handler: async (ctx) => {
        const { node, index } = ctx.params as unknown as { node: string; index: number };
        const device = (await ctx.db('gpu_devices').where({ node_id: node, index }).first('id', 'model', 'memory_mib')) as { id: string; model: string; memory_mib: number } | undefined;
        if (!device) throw new AiplatError('not_found', `No GPU ${index} on node ${node}`);
        const q = ctx.query as { from?: string; to?: string };
        const to = q.to ? new Date(q.to) : new Date();
        const from = q.from ? new Date(q.from) : new Date(to.getTime() - 3600_000);
        if (from >= to) throw new AiplatError('validation_failed', '"from" must be before "to"', { field: 'from' });
        const step = Math.max(1, Math.ceil((to.getTime() - from.getTime()) / 1000 / 500));
        const { rows } = (await ctx.db.raw(
          `select date_bin(make_interval(secs => ?), at, ?::timestamptz) as t,
                  avg(utilization_percent) as util, avg(memory_used_mib) as used, avg(temperature_c) as temp, avg(power_w) as power
             from gpu_samples where device_id = ? and at >= ? and at < ? group by 1 order by 1`,
          [step, from, device.id, from, to],
        )) as { rows: { t: Date | string; util: number | null; used: number | null; temp: number | null; power: number | null }[] };
        const point = (value: number | null) => (value === null ? null : Math.round(Number(value) * 100) / 100);
        return {
          deviceId: device.id,
          model: device.model,
          memoryMiB: device.memory_mib,
          from: from.toISOString(),
          to: to.toISOString(),
          stepSeconds: step,
          points: rows.map((r) => ({ at: iso(r.t), utilizationPercent: point(r.util), memoryUsedMiB: point(r.used), temperatureC: point(r.temp), powerW: point(r.power) })),
        };
      },
    },
    {
      method: 'GET',
      path: '/gpus/metrics',
      summary: 'All cards together over time: average utilisation, memory used and total (the dashboard), averaged into at most ~500 points',
      tags: ['gpus'],
      permission: 'nodes:read',
      query: {
        type: 'object',
        properties: {
          from: { type: 'string', format: 'date-time', description: 'default: an hour ago' },
          to: { type: 'string', format: 'date-time', description: 'default: now' },
          node: { type: 'string', minLength: 1, maxLength: 100, description: 'one node only' },
        },
      },
      handler: async (ctx) => {
        const q = ctx.query as { from?: string; to?: string; node?: string };
        const to = q.to ? new Date(q.to) : new Date();
        const from = q.from ? new Date(q.from) : new Date(to.getTime() - 3600_000);
        if (from >= to) throw new AiplatError('validation_failed', '"from" must be before "to"', { field: 'from' });
        const step = Math.max(1, Math.ceil((to.getTime() - from.getTime()) / 1000 / 500));
        // Per bucket: each card's average first, then the cards together (a card sampled more often does not weigh more).
        const { rows } = (await ctx.db.raw(
          `with per_card as (
             select date_bin(make_interval(secs => ?), s.at, ?::timestamptz) as t, s.device_id,
                    avg(s.utilization_percent) as util, avg(s.memory_used_mib) as used, avg(s.memory_total_mib) as total
               from gpu_samples s join gpu_devices d on d.id = s.device_id
              where s.at >= ? and s.at < ?${q.node ? ' and d.node_id = ?' : ''}
              group by 1, 2)
           select t, avg(util) as util, sum(used) as used, sum(total) as total, count(*)::int as cards from per_card group by t order by t`,
          [step, from, from, to, ...(q.node ? [q.node] : [])],
        )) as { rows: { t: Date | string; util: number | null; used: number | null; total: number | null; cards: number }[] };
        const point = (value: number | null) => (value === null ? null : Math.round(Number(value) * 100) / 100);
        return {
          from: from.toISOString(),
          to: to.toISOString(),
          stepSeconds: step,
          points: rows.map((r) => ({ at: iso(r.t), utilizationPercent: point(r.util), memoryUsedMiB: point(r.used), memoryTotalMiB: point(r.total), cards: r.cards })),
        };
      },
    },
    {
      method: 'GET',
      path: '/gpus/reservations',
      summary: 'Reservations of GPUs: live ones by default, with ?history=true released ones too',
      tags: ['gpus'],
      permission: 'nodes:read',
      query: {
        type: 'object',
        properties: {
          history: { type: 'boolean', default: false },
          node: { type: 'string', minLength: 1, maxLength: 100 },
          workload: { type: 'string', minLength: 1, maxLength: 100 },
          limit: { type: 'integer', minimum: 1, maximum: 1000, default: 200 },
          cursor,
        },
      },
      handler: async (ctx) => {
        const q = ctx.query as { history: boolean; node?: string; workload?: string; limit: number; cursor?: string };
        const query = ctx.db('gpu_reservations').orderBy('gpu_reservations.id', 'desc').limit(q.limit + 1);
        if (!q.history) query.whereRaw('upper_inf(gpu_reservations.held)');
        if (q.node) query.where('gpu_reservations.node_id', q.node);
        if (q.workload) query.where('gpu_reservations.workload_id', q.workload);
        if (q.cursor) query.where('gpu_reservations.id', '<', Number(q.cursor));
        // Team-scoped: other teams' reservations show only that the card is taken.
        query.leftJoin('workloads as w', 'w.id', 'gpu_reservations.workload_id');
        const rows = (await query.select('gpu_reservations.*', 'w.name as workload_name', ctx.db.raw('lower(memory) as lo'), ctx.db.raw('upper(memory) as hi'), ctx.db.raw('lower(held) as since'), ctx.db.raw('upper(held) as until'))) as {
          id: number;
          device_id: string;
          node_id: string;
          workload_id: string;
          replica: number;
          epoch: number;
          team_id: string;
          user_id: string | null;
          whole: boolean;
          lo: number;
          hi: number;
          since: Date;
          until: Date | null;
          released_reason: string | null;
          workload_name: string | null;
        }[];
        const page = rows.slice(0, q.limit);
        return {
          items: page.map((r) => {
            const visible = ctx.can('workloads:read', r.team_id);
            return {
              id: String(r.id),
              deviceId: r.device_id,
              nodeId: r.node_id,
              whole: r.whole,
              memoryMiB: r.hi - r.lo,
              memoryRange: [r.lo, r.hi],
              since: iso(r.since),
              until: iso(r.until),
              team: r.team_id,
              ...(visible ? { workloadId: r.workload_id, workloadName: r.workload_name, replica: r.replica, epoch: r.epoch, userId: r.user_id, releasedReason: r.released_reason } : {}),
            };
          }),
          nextCursor: rows.length > q.limit ? String(page[page.length - 1]!.id) : null,
        };
      },
    },
    {
      method: 'GET',
      path: '/quotas',
      summary: "My teams' quotas (used, limit) and the free cards by model: what I can get before I submit",
      tags: ['workloads'],
      permission: 'workloads:read',
      handler: async (ctx) => {
        const teams = ctx.can('workloads:read', null) && (ctx.query as { all?: boolean }).all ? undefined : (ctx.user!.teams ?? []);
        const [states, cluster, pending] = await Promise.all([
          quotaStates(ctx.db, timeZone, teams),
          loadCluster(ctx.db),
          ctx.db('workloads')
            .where({ state: 'pending' })
            .whereIn('team_id', ctx.user!.teams ?? [])
            .select('id', 'name', 'team_id', 'reason')
            .orderBy('seq')
            .limit(200),
        ]);
        const inUse = await gpusInUse(ctx.db, ctx.user!.teams ?? []);
        const free = new Map<string, { model: string; free: number; total: number; freeMemoryMiB: number }>();
        for (const node of cluster.nodes) {
          for (const d of node.devices) {
            const entry = free.get(d.model) ?? { model: d.model, free: 0, total: 0, freeMemoryMiB: 0 };
            entry.total++;
            if (d.used.length === 0) entry.free++;
            entry.freeMemoryMiB += d.memoryMiB - usedMiB(d);
            free.set(d.model, entry);
          }
        }
        const myTeams = ctx.user!.teams ?? [];
        return {
          teams: myTeams.map((team) => {
            const quota = states.find((s) => s.team === team);
            return {
              team,
              gpusInUse: round(inUse.get(team) ?? 0),
              quota: quota ? { gpus: quota.gpus, gpuHours: quota.gpuHours, period: quota.period, gpuHoursUsed: quota.gpuHoursUsed, periodStart: quota.periodStart, periodEnd: quota.periodEnd } : null,
            };
          }),
          freeGpus: [...free.values()],
          waiting: (pending as { id: string; name: string; team_id: string; reason: string | null }[]).map((p) => ({ id: p.id, name: p.name, team: p.team_id, reason: p.reason })),
        };
      },
    },
    {
      method: 'PUT',
      path: '/teams/:id/quota',
      summary: "Set a team's quota (null removes a limit)",
      tags: ['workloads'],
      permission: 'quotas:manage',
      params: idParams,
      body: {
        mode: 'json',
        schema: {
          type: 'object',
          additionalProperties: false,
          required: ['gpus', 'gpuHours'],
          properties: {
            gpus: { type: ['number', 'null'], minimum: 0, maximum: 100000 },
            gpuHours: { type: ['number', 'null'], minimum: 0, maximum: 1e9 },
            period: { enum: ['day', 'week', 'month'], default: 'month' },
          },
        },
      },
      auditResource: ({ params }) => ({ type: 'team', id: params.id }),
      handler: async (ctx) => {
        const body = ctx.body as { gpus: number | null; gpuHours: number | null; period: 'day' | 'week' | 'month' };
        const team = (await ctx.db('teams').where({ id: ctx.params.id }).first('id')) as { id: string } | undefined;
        if (!team) throw new AiplatError('not_found', `No team ${ctx.params.id}`);
        await ctx.db('team_quotas')
          .insert({ team_id: team.id, gpus: body.gpus, gpu_hours: body.gpuHours, period: body.period, updated_at: ctx.db.fn.now() })
          .onConflict('team_id')
          .merge();
        ctx.auditInfo = { team: team.id, details: body };
        ctx.afterCommit(() => runtime.scheduler.nudge());
        return { team: team.id, ...body };
      },
    },
    {
      method: 'GET',
      path: '/usage',
      summary: 'GPU-hours per team or per user between two times (default: the last 30 days)',
      tags: ['workloads'],
      permission: 'workloads:read',
      query: {
        type: 'object',
        properties: {
          groupBy: { enum: ['team', 'user'], default: 'team' },
          from: { type: 'string', format: 'date-time' },
          to: { type: 'string', format: 'date-time' },
        },
      },
      handler: async (ctx) => {
        const q = ctx.query as { groupBy: 'team' | 'user'; from?: string; to?: string };
        const to = q.to ? new Date(q.to) : new Date();
        const from = q.from ? new Date(q.from) : new Date(to.getTime() - 30 * 86400_000);
        if (from >= to) throw new AiplatError('validation_failed', '"from" must be before "to"', { field: 'from' });
        const global = ctx.can('workloads:read', null);
        const teams = global ? undefined : (ctx.user!.teams ?? []).filter((t) => ctx.can('workloads:read', t));
        const hours = await gpuHours(ctx.db, { from, to, groupBy: q.groupBy, teams });
        return { from: from.toISOString(), to: to.toISOString(), groupBy: q.groupBy, items: [...hours].map(([key, value]) => ({ [q.groupBy]: key, gpuHours: round(value) })) };
      },
    },
    {
      method: 'GET',
      path: '/priority-classes',
      summary: 'Priority classes, highest first',
      tags: ['workloads'],
      permission: 'workloads:read',
      handler: async (ctx) => ({ items: await ctx.db('priority_classes').orderBy('value', 'desc').select('name', 'value', 'preemptible', 'description') }),
    },
    {
      method: 'PUT',
      path: '/priority-classes/:name',
      summary: 'Create or change a priority class (higher value is placed first; preemptible work may be stopped for higher)',
      tags: ['workloads'],
      permission: 'scheduler:manage',
      params: { type: 'object', properties: { name: { type: 'string', pattern: '^[a-z][a-z0-9-]{0,39}$' } } },
      body: {
        mode: 'json',
        schema: {
          type: 'object',
          additionalProperties: false,
          required: ['value'],
          properties: {
            value: { type: 'integer', minimum: -1000000, maximum: 1000000 },
            preemptible: { type: 'boolean', default: true },
            description: { type: 'string', maxLength: 500 },
          },
        },
      },
      auditResource: ({ params }) => ({ type: 'priority-class', id: params.name }),
      handler: async (ctx) => {
        const body = ctx.body as { value: number; preemptible: boolean; description?: string };
        await ctx.db('priority_classes')
          .insert({ name: ctx.params.name, value: body.value, preemptible: body.preemptible, description: body.description ?? null })
          .onConflict('name')
          .merge();
        // Queued work of the class moves to its new place in the queue.
        await ctx.db('workloads').where({ priority: ctx.params.name, state: 'pending' }).update({ priority_value: body.value });
        ctx.afterCommit(() => runtime.scheduler.nudge());
        return { name: ctx.params.name, ...body };
      },
    },
    {
      method: 'DELETE',
      path: '/priority-classes/:name',
      summary: 'Remove a priority class no unfinished workload uses',
      tags: ['workloads'],
      permission: 'scheduler:manage',
      params: { type: 'object', properties: { name: { type: 'string', pattern: '^[a-z][a-z0-9-]{0,39}$' } } },
      body: { mode: 'none' },
      auditResource: ({ params }) => ({ type: 'priority-class', id: params.name }),
      handler: async (ctx) => {
        if (ctx.params.name === 'normal') throw new AiplatError('conflict', 'The class "normal" is the default of every spec without a priority; it cannot be removed');
        const used = (await ctx.db('workloads').where({ priority: ctx.params.name }).whereNotIn('state', ['succeeded', 'failed', 'cancelled', 'lost']).count('* as n').first()) as { n: number };
        if (Number(used.n) > 0) throw new AiplatError('conflict', `${used.n} unfinished workload(s) use the class "${ctx.params.name}"`);
        const removed = await ctx.db('priority_classes').where({ name: ctx.params.name }).delete();
        if (removed === 0) throw new AiplatError('not_found', `No priority class ${ctx.params.name}`);
        return undefined;
      },
    },
  ];
}
