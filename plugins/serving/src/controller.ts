/**
 * Revisions as scheduler services, and the deployment state that follows from them.
 *
 * A revision runs as one `service` workload (its replicas restarted one by one by the scheduler,
 * readiness-gated). The controller hears the workload's state changes and moves the revision and
 * its deployment on: a pending revision that becomes ready takes its traffic (all of it, or its
 * canary weight) and the revisions it replaces are stopped; a revision that never becomes ready
 * (its replicas keep exiting, or it is not ready in time) fails, and the deployment keeps serving
 * from what it had.
 */
import { existsSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { AiplatError, coreServices, type Knex, type PluginContext, type Principal, type Workload, type WorkloadSpec } from '@aiplat/plugin-sdk';
import { modelsService } from '@aiplat-plugins/models/api';
import { lineageOf } from '@aiplat-plugins/lineage/api';
import { REVISION_NODE, servingExtensionPoints, servingHooks, type DeploymentState, type RevisionState, type RuntimeContext, type ServingRuntime, type TrafficEntry } from '../api/index.js';
import { LIVE_REVISION_STATES, T, deploymentOf, parsed, pendingOf, primaryNumber, toRevision, type DeploymentRow, type RevisionRow } from './store.js';

/** Exits of a revision's replicas before it was ever ready that make it fail (a crash loop). */
export const CRASH_LOOP_RESTARTS = 3;

export interface ServingSettings {
  publicBaseUrl: string;
  upstreamTimeoutSeconds: number;
  readyTimeoutSeconds: number;
}

export function runtimesOf(plugin: PluginContext): ServingRuntime[] {
  return plugin.hooks.contributions(servingExtensionPoints.runtimes);
}

export function runtimeOf(plugin: PluginContext, id: string): ServingRuntime | undefined {
  return runtimesOf(plugin).find((r) => r.id === id);
}

export function dataDirOf(plugin: PluginContext): string {
  return path.join(plugin.platform.dataDir, 'plugins', 'serving');
}

export function revisionDirOf(plugin: PluginContext, deploymentId: string, revision: number): string {
  return path.join(dataDirOf(plugin), 'deployments', deploymentId, `r${revision}`);
}

/** The version's files in a folder the replicas read (written once per version; atomically). */
export async function modelFolder(plugin: PluginContext, versionId: string): Promise<string> {
  const folder = path.join(dataDirOf(plugin), 'models', versionId);
  if (existsSync(folder)) return folder;
  const partial = `${folder}.partial-${randomUUID()}`;
  try {
    await plugin.service(modelsService).materialise(versionId, partial);
    await rename(partial, folder).catch(async (err: NodeJS.ErrnoException) => {
      // Another request materialised it first.
      if (!existsSync(folder)) throw err;
    });
  } finally {
    await rm(partial, { recursive: true, force: true });
  }
  return folder;
}

/** The most cards one ready node has (checks such as tensor-parallel size use it). */
export async function maxGpusPerNode(db: Knex): Promise<number> {
  const rows = (await db('gpu_devices as g').join('nodes as n', 'n.id', 'g.node_id').where('g.present', true).whereNot('n.state', 'offline').groupBy('g.node_id').select('g.node_id').count('* as n')) as { n: number | string }[];
  return rows.reduce((m, r) => Math.max(m, Number(r.n)), 0);
}

/** The largest card's memory (MiB), or null without GPUs. */
export async function largestCardMiB(db: Knex): Promise<number | null> {
  const row = (await db('gpu_devices').where('present', true).max('memory_mib as m').first()) as { m: number | null } | undefined;
  return row?.m ? Number(row.m) : null;
}

function workloadName(deployment: string, revision: number): string {
  return `serve-${deployment.replace(/[^A-Za-z0-9._-]/g, '-')}-r${revision}`.slice(0, 120);
}

/** Submit a revision's service workload; answers it. Throws the scheduler's refusal (422 unschedulable…). */
export async function submitRevision(plugin: PluginContext, deployment: DeploymentRow, revision: RevisionRow, user: Principal): Promise<Workload> {
  const runtime = runtimeOf(plugin, revision.runtime);
  if (!runtime) throw new AiplatError('unprocessable', `The runtime "${revision.runtime}" is not installed or its plugin is disabled`, { field: 'runtime' });
  const context = await contextOf(plugin, deployment, revision);
  const launch = await runtime.launch(context);
  await mkdir(context.revisionDir, { recursive: true });
  for (const [name, content] of Object.entries(launch.files ?? {})) {
    const file = path.join(context.revisionDir, name);
    if (!file.startsWith(context.revisionDir + path.sep)) throw new AiplatError('internal', `The ${runtime.id} runtime asked to write ${name} outside the revision folder`);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, content);
  }
  const resources = context.resources;
  const spec: WorkloadSpec = {
    name: workloadName(deployment.name, revision.number),
    kind: 'service',
    team: deployment.team_id,
    executor: revision.executor,
    command: launch.command,
    env: { ...launch.env, AIPLAT_SERVED_MODEL: deployment.served_model_name },
    resources: { gpus: resources.gpus, ...(resources.gpuMemoryMiB ? { gpuMemoryMiB: resources.gpuMemoryMiB } : {}), ...(resources.cpu ? { cpu: resources.cpu } : {}), ...(resources.memoryMiB ? { memoryMiB: resources.memoryMiB } : {}) },
    replicas: revision.replicas,
    ports: [{ name: 'http', ...(launch.containerPort ? { containerPort: launch.containerPort } : {}) }],
    readiness: {
      httpGet: { port: 'http', path: launch.readiness.path },
      initialDelaySeconds: launch.readiness.initialDelaySeconds ?? 0,
      periodSeconds: launch.readiness.periodSeconds ?? 1,
      timeoutSeconds: launch.readiness.timeoutSeconds ?? 2,
      failureThreshold: launch.readiness.failureThreshold ?? 3,
    },
    restartPolicy: 'always',
    labels: { 'serving.deployment': deployment.id, 'serving.revision': revision.id, 'serving.revisionNumber': String(revision.number) },
    ...(launch.image ? { image: launch.image } : {}),
    ...(launch.workingDir ? { workingDir: launch.workingDir } : revision.executor === 'local' ? { workingDir: context.revisionDir } : {}),
    ...(launch.mounts || revision.executor !== 'local'
      ? { mounts: [...(revision.executor !== 'local' ? [{ source: context.model.path, target: '/model', readOnly: true }] : []), ...(launch.mounts ?? [])] }
      : {}),
  };
  const workload = await plugin.service(coreServices.workloads).submit(spec, { user });
  await plugin.db(T.revisions).where({ id: revision.id }).update({ workload_id: workload.id, upstream_model: launch.upstreamModel ?? null });
  return workload;
}

export async function contextOf(plugin: PluginContext, deployment: DeploymentRow, revision: RevisionRow): Promise<RuntimeContext> {
  const version = await plugin.service(modelsService).get(revision.model_version);
  return {
    deployment: { id: deployment.id, name: deployment.name, team: deployment.team_id },
    revision: revision.number,
    servedModelName: deployment.served_model_name,
    model: {
      versionId: revision.model_version,
      name: revision.model_name,
      number: revision.model_version_number,
      path: await modelFolder(plugin, revision.model_version),
      metadata: (version?.metadata ?? {}) as unknown as Record<string, unknown>,
    },
    revisionDir: revisionDirOf(plugin, deployment.id, revision.number),
    executor: revision.executor,
    resources: parsed(revision.resources),
    replicas: revision.replicas,
    options: parsed(revision.options),
    maxGpusPerNode: await maxGpusPerNode(plugin.db),
  };
}

async function callHook<A>(plugin: PluginContext, hook: Parameters<PluginContext['hooks']['call']>[0], arg: A): Promise<void> {
  try {
    await (plugin.hooks.call as (h: unknown, a: A) => Promise<unknown>)(hook, arg);
  } catch (err) {
    plugin.logger.warn({ err, hook: hook.id }, 'a tap of a serving hook failed');
  }
}

export async function recordLineage(plugin: PluginContext, deployment: DeploymentRow, revision: RevisionRow): Promise<void> {
  await lineageOf(plugin)
    ?.record(
      { from: { kind: 'models.version', id: revision.model_version }, to: { kind: REVISION_NODE, id: `${deployment.id}@${revision.number}`, label: `${deployment.name} r${revision.number}`, team: deployment.team_id }, relation: 'deployed-as' },
      { createdBy: revision.created_by ?? 'serving' },
    )
    .catch((err: unknown) => plugin.logger.warn({ err, deployment: deployment.id, revision: revision.number }, 'the lineage of a revision could not be recorded'));
}

/** What the deployment's state is, from its revisions. */
export function deriveState(d: Pick<DeploymentRow, 'stopped' | 'traffic' | 'pending'>, revisions: Pick<RevisionRow, 'number' | 'state'>[]): DeploymentState {
  if (d.stopped) return 'stopped';
  const traffic = parsed(d.traffic);
  if (traffic.length === 0) return d.pending ? 'deploying' : 'failed';
  const states = traffic.map((t) => revisions.find((r) => r.number === t.revision)?.state);
  return states.every((s) => s === 'ready') ? 'ready' : 'degraded';
}

/** Serialises the changes of one deployment (workload events arrive concurrently). */
const queues = new Map<string, Promise<unknown>>();
export function serialised<T>(deploymentId: string, fn: () => Promise<T>): Promise<T> {
  const previous = queues.get(deploymentId) ?? Promise.resolve();
  const next = previous.catch(() => undefined).then(fn);
  const tail = next.catch(() => undefined);
  queues.set(deploymentId, tail);
  void tail.then(() => {
    if (queues.get(deploymentId) === tail) queues.delete(deploymentId);
  });
  return next;
}

/** Stop a revision's workload (it leaves traffic) and mark it retired. */
export async function retire(plugin: PluginContext, revision: RevisionRow, reason: string): Promise<void> {
  await plugin.db(T.revisions).where({ id: revision.id }).whereNot({ state: 'failed' }).update({ state: 'retired', reason, retired_at: new Date().toISOString() });
  if (revision.workload_id) {
    await plugin
      .service(coreServices.workloads)
      .cancel(revision.workload_id, { reason })
      .catch((err: unknown) => plugin.logger.debug({ err, workload: revision.workload_id }, 'a retired revision’s workload was already finished'));
  }
}

/** Store the deployment's state (and reason) after a change, tell the hooks when it became ready. */
export async function refresh(plugin: PluginContext, deploymentId: string, patch: Partial<Pick<DeploymentRow, 'traffic' | 'pending' | 'reason' | 'stopped' | 'latest_revision'>> = {}): Promise<DeploymentRow | undefined> {
  const before = (await plugin.db(T.deployments).where({ id: deploymentId }).first()) as DeploymentRow | undefined;
  if (!before) return undefined;
  const merged = { ...before, ...patch };
  const revisions = (await plugin.db(T.revisions).where({ deployment_id: deploymentId }).select('number', 'state')) as Pick<RevisionRow, 'number' | 'state'>[];
  const state = deriveState(merged, revisions);
  const update: Record<string, unknown> = { state, updated_at: new Date().toISOString() };
  if ('traffic' in patch) update.traffic = JSON.stringify(patch.traffic);
  if ('pending' in patch) update.pending = patch.pending === null ? null : JSON.stringify(patch.pending);
  if ('reason' in patch) update.reason = patch.reason;
  else if (state === 'ready') update.reason = null;
  if ('stopped' in patch) update.stopped = patch.stopped;
  if ('latest_revision' in patch) update.latest_revision = patch.latest_revision;
  const [after] = (await plugin.db(T.deployments).where({ id: deploymentId }).update(update).returning('*')) as DeploymentRow[];
  if (after && state === 'ready' && before.state !== 'ready') {
    const primary = (await plugin.db(T.revisions).where({ deployment_id: deploymentId, number: primaryNumber(after) }).first()) as RevisionRow | undefined;
    if (primary) await callHook(plugin, servingHooks.deploymentReady, { deployment: await deploymentOf(plugin.db, after), revision: toRevision(primary) });
  }
  return after;
}

const REVISION_STATE: Record<string, RevisionState> = { pending: 'starting', scheduled: 'starting', running: 'starting', ready: 'ready' };

/** A revision's workload changed state. */
export async function workloadChanged(plugin: PluginContext, workload: Workload, reason: string | null): Promise<void> {
  const revisionId = workload.spec.labels?.['serving.revision'];
  const deploymentId = workload.spec.labels?.['serving.deployment'];
  if (!revisionId || !deploymentId) return;
  await serialised(deploymentId, async () => {
    const revision = (await plugin.db(T.revisions).where({ id: revisionId }).first()) as RevisionRow | undefined;
    // Events of an earlier workload of the revision (before a stop and start) are old news.
    if (!revision || revision.workload_id !== workload.id || revision.state === 'retired' || revision.state === 'failed') return;
    if (['failed', 'lost', 'succeeded', 'cancelled'].includes(workload.state)) {
      await fail(plugin, revision, `its service ended (${workload.state}${reason ? `: ${reason}` : ''})`);
      return;
    }
    let state = REVISION_STATE[workload.state] ?? revision.state;
    if (state === 'starting' && revision.ready_at) state = 'degraded';
    const patch: Partial<RevisionRow> = { state, reason: state === 'ready' ? null : reason };
    if (state === 'ready' && !revision.ready_at) patch.ready_at = new Date().toISOString();
    await plugin.db(T.revisions).where({ id: revision.id }).update(patch);
    const deployment = (await plugin.db(T.deployments).where({ id: deploymentId }).first()) as DeploymentRow | undefined;
    if (!deployment) return;
    const pending = pendingOf(deployment);
    if (state === 'ready' && pending?.revision === revision.number) await promote(plugin, deployment, revision, pending.canaryWeight);
    else await refresh(plugin, deployment.id);
  });
}

/** The pending revision is ready: it takes its traffic; revisions that lose all traffic stop. */
async function promote(plugin: PluginContext, deployment: DeploymentRow, revision: RevisionRow, canaryWeight: number | null): Promise<void> {
  const before = parsed(deployment.traffic);
  let traffic: TrafficEntry[];
  if (canaryWeight !== null && before.length > 0) {
    const main = primaryNumber(deployment);
    traffic = [
      { revision: main, weight: 100 - canaryWeight },
      { revision: revision.number, weight: canaryWeight },
    ];
  } else {
    traffic = [{ revision: revision.number, weight: 100 }];
  }
  const kept = new Set(traffic.map((t) => t.revision));
  const rows = (await plugin.db(T.revisions).where({ deployment_id: deployment.id }).whereIn('state', LIVE_REVISION_STATES)) as RevisionRow[];
  for (const r of rows) if (!kept.has(r.number)) await retire(plugin, r, `replaced by revision ${revision.number}`);
  const after = await refresh(plugin, deployment.id, { traffic, pending: null, reason: null });
  if (after) {
    const cause = revision.rollback_of !== null ? 'rollback' : canaryWeight !== null && before.length > 0 ? 'canary' : 'rollout';
    await callHook(plugin, servingHooks.revisionChanged, { deployment: await deploymentOf(plugin.db, after), revision: toRevision({ ...revision, state: 'ready' }), traffic, cause });
  }
}

/** A revision failed: stop it; the deployment keeps what it serves, or fails when nothing is left. */
export async function fail(plugin: PluginContext, revision: RevisionRow, reason: string): Promise<void> {
  await plugin.db(T.revisions).where({ id: revision.id }).update({ state: 'failed', reason, retired_at: new Date().toISOString() });
  if (revision.workload_id) {
    await plugin
      .service(coreServices.workloads)
      .cancel(revision.workload_id, { reason: `revision ${revision.number} failed: ${reason}` })
      .catch(() => undefined);
  }
  const deployment = (await plugin.db(T.deployments).where({ id: revision.deployment_id }).first()) as DeploymentRow | undefined;
  if (!deployment) return;
  const pending = pendingOf(deployment);
  const traffic = parsed(deployment.traffic).filter((t) => t.revision !== revision.number);
  // What was in traffic with it gets its share.
  const total = traffic.reduce((a, t) => a + t.weight, 0);
  const rebalanced = total > 0 && total !== 100 ? traffic.map((t, i) => ({ revision: t.revision, weight: i === 0 ? 100 - traffic.slice(1).reduce((a, x) => a + Math.round((x.weight * 100) / total), 0) : Math.round((t.weight * 100) / total) })) : traffic;
  const message = `revision ${revision.number} failed: ${reason}`;
  const after = await refresh(plugin, deployment.id, {
    traffic: rebalanced,
    ...(pending?.revision === revision.number ? { pending: null } : {}),
    reason: message,
  });
  if (after) await callHook(plugin, servingHooks.deploymentFailed, { deployment: await deploymentOf(plugin.db, after), revision: toRevision({ ...revision, state: 'failed', reason }), reason: message });
}

/**
 * A replica of a revision's workload ended and is being restarted (the workload keeps its state,
 * so only the `workloads` topic tells): a revision that was never ready fails after
 * `CRASH_LOOP_RESTARTS` such exits.
 */
export async function replicaRestarted(plugin: PluginContext, workloadId: string, reason: string | null): Promise<void> {
  const revision = (await plugin.db(T.revisions).where({ workload_id: workloadId }).first()) as RevisionRow | undefined;
  if (!revision || revision.state !== 'starting' || revision.ready_at) return;
  await serialised(revision.deployment_id, async () => {
    const current = (await plugin.db(T.revisions).where({ id: revision.id }).first()) as RevisionRow | undefined;
    if (!current || current.state !== 'starting' || current.workload_id !== workloadId) return;
    const restarts = (await plugin.db('workload_replicas').where({ workload_id: workloadId }).sum('restarts as n').first()) as { n: number | string | null } | undefined;
    const n = Number(restarts?.n ?? 0);
    if (n >= CRASH_LOOP_RESTARTS) await fail(plugin, current, `its replicas exited ${n} times before they were ready (last: ${reason ?? 'see the logs'})`);
  });
}

/** Fail revisions that were not ready in time (called every few seconds). */
export async function checkTimeouts(plugin: PluginContext, settings: ServingSettings): Promise<void> {
  const cutoff = new Date(Date.now() - settings.readyTimeoutSeconds * 1000).toISOString();
  const late = (await plugin.db(T.revisions).where({ state: 'starting' }).whereNull('ready_at').where('started_at', '<', cutoff)) as RevisionRow[];
  for (const r of late) {
    // A revision waiting for cards is not late: the scheduler says why it waits.
    const workload = r.workload_id ? await plugin.service(coreServices.workloads).get(r.workload_id) : undefined;
    if (workload?.state === 'pending') continue;
    await serialised(r.deployment_id, () => fail(plugin, r, `it was not ready within ${settings.readyTimeoutSeconds} s`));
  }
}
