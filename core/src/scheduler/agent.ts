import net from 'node:net';
import http from 'node:http';
import type { Knex } from 'knex';
import type { EventBus, Executor, Logger, ReplicaLaunch, ReplicaReporter, WorkloadSpec } from '@aiplat/plugin-sdk';
import { Changes, releaseReservations, transition, type ReplicaRow, type WorkloadRow } from './store.js';

/** Output is written to the database and the stream at most this often per replica. */
const FLUSH_MS = 150;
/** Largest log text in one event (events carry at most 64 KiB of JSON). */
const EVENT_TEXT = 24 * 1024;
/** Agent passes run on every workload change (the `workloads` topic); this timer is the fallback, and the clock of timeouts and readiness checks. */
const FALLBACK_TICK_MS = 1000;

export interface AgentOptions {
  db: Knex;
  logger: Logger;
  events: EventBus;
  executors: () => Executor[];
  /** Seconds between SIGTERM and SIGKILL when replicas are stopped. */
  graceSeconds: number;
  onChanges: (changes: Changes) => Promise<void>;
  /** Capacity was freed or work needs placing: ask the scheduler for a pass. */
  nudgeScheduler: () => void;
  /** Nodes this core runs work on (its agent id in `nodes.agent`). */
  nodes: () => ReadonlySet<string>;
}

interface Live {
  key: string;
  workloadId: string;
  replica: number;
  epoch: number;
  executor: Executor;
  handle: Record<string, unknown> | undefined;
  text: string;
  offset: number;
  flushing: Promise<void>;
  exited?: { exitCode: number | null; signal?: string | null } | { lost: string };
  stopSent: boolean;
  /** The `started` report being recorded (finish waits for it). */
  startedRecorded?: Promise<void>;
  readiness?: { failures: number; nextAt: number; ready: boolean };
  ports: Record<string, number>;
  /** Where its published ports are reached for readiness checks: this machine, or an added host's address. */
  host: string;
}

class StaleOutput extends Error {}

/**
 * Run a transaction again when PostgreSQL aborted it to break a deadlock or a serialization
 * conflict (40P01, 40001): both mean "try again", and the work is idempotent per epoch.
 */
export async function withRetry<T>(run: () => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await run();
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (attempt >= attempts || (code !== '40P01' && code !== '40001')) throw error;
      await new Promise((r) => setTimeout(r, 10 * attempt + Math.random() * 20));
    }
  }
}

function keyOf(workloadId: string, replica: number, epoch: number): string {
  return `${workloadId}/${replica}/${epoch}`;
}

/** A parsed metric line: `{"type":"metric","step":10,"loss":2.31}`. */
export function parseMetric(line: string): { step: number | null; values: Record<string, number> } | undefined {
  const trimmed = line.trim();
  if (!trimmed.startsWith('{') || !trimmed.includes('"metric"')) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(trimmed);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || (parsed as { type?: unknown }).type !== 'metric') return undefined;
  const values: Record<string, number> = {};
  let step: number | null = null;
  for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) {
    if (k === 'type') continue;
    if (k === 'step') {
      if (typeof v === 'number' && Number.isFinite(v)) step = v;
      continue;
    }
    if (typeof v === 'number' && Number.isFinite(v) && k.length <= 100) values[k] = v;
  }
  return Object.keys(values).length > 0 ? { step, values } : undefined;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

/**
 * The agent runs the replicas placed on this core's nodes: it starts them through their
 * executor, stores and streams their output, records how they end, stops them on cancel,
 * preemption and timeout, probes services' readiness, and after a restart re-attaches to the
 * replicas still running. Every report is fenced by the replica's epoch: one from an older
 * placement changes nothing.
 */
export class Agent {
  private readonly live = new Map<string, Live>();
  private timer: NodeJS.Timeout | undefined;
  private flushTimer: NodeJS.Timeout | undefined;
  private ticking = false;
  private recovered = false;
  /** Replicas claimed for a start that has not returned yet: recover() must leave them alone. */
  private readonly launching = new Set<string>();
  /** Replicas whose end is being recorded (no longer live, not yet finished): recover() must leave them alone too. */
  private readonly settling = new Set<string>();
  private tickAgain = false;
  private stopped = false;
  private tickDone: Promise<void> = Promise.resolve();

  constructor(private readonly options: AgentOptions) {}

  async start(): Promise<void> {
    await this.recover();
    // Nudges that came while recovering (a submission committed as the core started) run now.
    this.recovered = true;
    const loop = () => {
      this.timer = setTimeout(() => {
        this.nudge();
        if (!this.stopped) loop();
      }, FALLBACK_TICK_MS);
      this.timer.unref();
    };
    loop();
    this.flushTimer = setInterval(() => void this.flushAll(), FLUSH_MS);
    this.flushTimer.unref();
    this.nudge();
  }

  /** Stop following replicas without stopping them: the next core re-attaches. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.flushTimer);
    await this.tickDone.catch(() => undefined);
    await this.flushAll();
  }

  nudge(): void {
    // Before recover() has read what runs here, a tick would claim replicas recover() then misreads.
    if (this.stopped || !this.recovered) return;
    if (this.ticking) {
      this.tickAgain = true;
      return;
    }
    this.ticking = true;
    this.tickDone = (async () => {
      try {
        do {
          this.tickAgain = false;
          await this.tick();
        } while (this.tickAgain && !this.stopped);
      } catch (error) {
        this.options.logger.error({ err: (error as Error).message }, 'agent pass failed');
      } finally {
        this.ticking = false;
      }
    })();
  }

  private executor(name: string): Executor | undefined {
    return this.options.executors().find((e) => e.name === name);
  }

  private myNodes(): string[] {
    return [...this.options.nodes()];
  }

  /**
   * After a restart: follow what is still running on this core's nodes. Also after a plugin
   * change: an executor that was disabled and is back re-attaches to its replicas.
   */
  async recover(): Promise<void> {
    const nodes = this.myNodes();
    if (nodes.length === 0) return;
    const rows = (await this.options.db('workload_replicas as r')
      .join('workloads as w', 'w.id', 'r.workload_id')
      .whereIn('r.node_id', nodes)
      .whereIn('r.state', ['starting', 'running', 'ready'])
      .select('r.*', 'w.executor')) as (ReplicaRow & { executor: string })[];
    for (const row of rows) {
      const executor = this.executor(row.executor);
      const key = keyOf(row.workload_id, row.replica, row.epoch);
      if (!executor && this.recovered) continue; // a plugin disabled for a while: it re-attaches when enabled again
      // Taken before any await: a recover() running beside this one (two plugin events close
      // together) leaves it alone instead of attaching it a second time.
      if (!this.reserve(key)) continue;
      try {
        if (!executor) {
          await this.finish(row.workload_id, row.replica, row.epoch, { lost: `the executor "${row.executor}" is not available after a restart` });
          continue;
        }
        if (!row.handle) {
          // Claimed but never known to have started: deliver it again. The executor follows the
          // command if it already runs (the same epoch is never started twice), else starts it.
          const workload = (await this.options.db('workloads').where({ id: row.workload_id }).first()) as WorkloadRow | undefined;
          if (workload) await this.launch(workload, row, { redelivered: true, reserved: true });
          continue;
        }
        const live = this.track(key, row.workload_id, row.replica, row.epoch, executor, row.output_offset, row.ports ?? {}, await this.probeHost(row.node_id));
        live.handle = row.handle;
        try {
          await executor.attach(row.handle, this.reporter(live), { outputOffset: Number(row.output_offset) });
          this.options.logger.info({ workload: row.workload_id, replica: row.replica }, 're-attached to a running replica');
        } catch (error) {
          await this.finish(row.workload_id, row.replica, row.epoch, { lost: `cannot re-attach after a restart: ${(error as Error).message}` });
        }
      } finally {
        this.launching.delete(key);
      }
    }
  }

  /**
   * Follow again the replicas of an executor whose plugin was disabled and enabled: its followers
   * stopped with it. The output stored so far is kept; the executor resumes from there.
   */
  async reattach(executorName: string): Promise<void> {
    const stale = [...this.live.values()].filter((l) => l.executor.name === executorName && !l.exited && l.handle);
    for (const live of stale) {
      await this.flush(live);
      this.live.delete(live.key);
    }
    if (stale.length > 0) await this.recover();
  }

  private async probeHost(nodeId: string | null): Promise<string> {
    if (!nodeId) return '127.0.0.1';
    return probeHostOf((await this.options.db('nodes').where({ id: nodeId }).first('address', 'connector')) as { address: string; connector: string | null } | undefined);
  }

  private track(key: string, workloadId: string, replica: number, epoch: number, executor: Executor, offset: number, ports: Record<string, number>, host: string): Live {
    const live: Live = { key, workloadId, replica, epoch, executor, handle: undefined, text: '', offset: Number(offset), flushing: Promise.resolve(), stopSent: false, ports, host };
    this.live.set(key, live);
    return live;
  }

  private async tick(): Promise<void> {
    const nodes = this.myNodes();
    if (nodes.length === 0) return;
    const { db } = this.options;
    // 1. Start what the scheduler placed here.
    const claimed = (await db('workload_replicas')
      .whereIn('node_id', nodes)
      .where({ state: 'placed' })
      .update({ state: 'starting' })
      .returning('*')) as ReplicaRow[];
    if (claimed.length > 0) {
      // Reserved at once (no await between the claim and this): a recover() that read the same
      // rows as 'starting' meanwhile leaves them alone, and one that got there first keeps them.
      const mine = claimed.filter((c) => this.reserve(keyOf(c.workload_id, c.replica, c.epoch)));
      const workloads = (await db('workloads').whereIn('id', [...new Set(mine.map((c) => c.workload_id))])) as WorkloadRow[];
      const byId = new Map(workloads.map((w) => [w.id, w]));
      await Promise.all(mine.map((replica) => this.launch(byId.get(replica.workload_id)!, replica, { reserved: true })));
    }
    // Nothing runs here: nothing to stop, time out or probe.
    if (this.live.size === 0) return;
    // 2. Stop what must stop (cancel, preemption, a failed gang member, timeout).
    const stopping = (await db('workload_replicas as r')
      .join('workloads as w', 'w.id', 'r.workload_id')
      .whereIn('r.node_id', nodes)
      .whereIn('r.state', ['starting', 'running', 'ready'])
      .whereNotNull('w.stopping')
      .select('r.workload_id', 'r.replica', 'r.epoch', 'r.handle', 'w.executor')) as { workload_id: string; replica: number; epoch: number; handle: Record<string, unknown> | null; executor: string }[];
    for (const s of stopping) {
      const live = this.live.get(keyOf(s.workload_id, s.replica, s.epoch));
      if (!live || live.stopSent || !live.handle) continue;
      live.stopSent = true;
      await live.executor.stop(live.handle, { graceSeconds: this.options.graceSeconds }).catch((error: Error) => {
        this.options.logger.warn({ workload: s.workload_id, err: error.message }, 'cannot stop a replica');
      });
    }
    // 3. Jobs past their time limit.
    const overdue = (await db('workloads')
      .whereIn('state', ['running'])
      .whereNull('stopping')
      .whereRaw("(spec->>'timeoutSeconds') is not null and started_at + ((spec->>'timeoutSeconds') || ' seconds')::interval < now()")
      .whereExists(db('workload_replicas').whereRaw('workload_replicas.workload_id = workloads.id').whereIn('node_id', nodes))
      .select('id', 'spec')) as { id: string; spec: WorkloadSpec }[];
    for (const o of overdue) {
      const changed = await db('workloads').where({ id: o.id }).whereNull('stopping').update({ stopping: `timeout:timed out after ${o.spec.timeoutSeconds} s` });
      if (changed > 0) this.tickAgain = true;
    }
    // 4. Readiness of services.
    await this.probe();
  }

  /** Marks a replica as being launched here, unless something here already launches, follows or settles it. */
  private reserve(key: string): boolean {
    if (this.live.has(key) || this.launching.has(key) || this.settling.has(key)) return false;
    this.launching.add(key);
    return true;
  }

  /**
   * `redelivered`: the replica may already run (a core died between starting it and recording that).
   * `reserved`: the caller has reserved the key; otherwise this does, and returns at once when
   * something here already handles the replica (one launch per replica at a time, never two).
   */
  private async launch(workload: WorkloadRow, replica: ReplicaRow, options: { redelivered?: boolean; reserved?: boolean } = {}): Promise<void> {
    const key = keyOf(workload.id, replica.replica, replica.epoch);
    if (!options.reserved && !this.reserve(key)) return;
    try {
      await this.launchReplica(workload, replica, key, options);
    } finally {
      this.launching.delete(key);
    }
  }

  private async launchReplica(workload: WorkloadRow, replica: ReplicaRow, key: string, options: { redelivered?: boolean }): Promise<void> {
    const executor = this.executor(workload.executor);
    if (!executor) {
      await this.finish(workload.id, replica.replica, replica.epoch, { lost: `no executor "${workload.executor}" is enabled on this core` });
      return;
    }
    // Stopping before it started: nothing to run. A re-delivered replica may run, though: it is
    // started (followed) below and then stopped like any other.
    if (workload.stopping && !options.redelivered) {
      await this.finish(workload.id, replica.replica, replica.epoch, { exitCode: null, signal: null });
      return;
    }
    const spec = workload.spec;
    const ports: Record<string, number> = {};
    for (const port of spec.ports ?? []) ports[port.name] = await freePort();
    const node = (await this.options.db('nodes').where({ id: replica.node_id! }).first('simulated', 'labels', 'user_labels', 'env', 'address', 'connector')) as
      | { simulated: boolean; labels: Record<string, string>; user_labels: Record<string, string>; env: Record<string, string>; address: string; connector: string | null }
      | undefined;
    const master = (await this.options.db('workload_replicas as r')
      .join('nodes as n', 'n.id', 'r.node_id')
      .where({ 'r.workload_id': workload.id, 'r.replica': 0 })
      .first('n.address')) as { address: string } | undefined;
    const env: Record<string, string> = {
      // The node's environment (set by administrators: proxies, cache folders) under the spec's own.
      ...node?.env,
      ...spec.env,
      // A MIG instance is named by its UUID: an index means nothing to CUDA there.
      CUDA_VISIBLE_DEVICES: replica.devices.map((d) => (d.uuid.startsWith('MIG-') ? d.uuid : d.index)).join(','),
      CUDA_DEVICE_ORDER: 'PCI_BUS_ID',
      AIPLAT_WORKLOAD_ID: workload.id,
      AIPLAT_REPLICA: String(replica.replica),
      AIPLAT_EPOCH: String(replica.epoch),
    };
    if (workload.kind === 'job') {
      env.WORLD_SIZE = String(workload.replicas);
      env.RANK = String(replica.replica);
      env.MASTER_ADDR = master?.address ?? '127.0.0.1';
      env.MASTER_PORT = String(workload.master_port ?? 29500);
    }
    for (const [name, port] of Object.entries(ports)) env[`PORT_${name.toUpperCase().replace(/-/g, '_')}`] = String(port);
    if (spec.ports?.[0]) env.PORT = String(ports[spec.ports[0].name]);
    const launch: ReplicaLaunch = {
      workloadId: workload.id,
      replica: replica.replica,
      epoch: replica.epoch,
      nodeId: replica.node_id!,
      spec,
      env,
      ports,
      devices: replica.devices.map((d) => ({ index: d.index, uuid: d.uuid })),
      simulated: node?.simulated ?? false,
      nodeLabels: { ...node?.labels, ...node?.user_labels },
      // Delivered again after a restart: the executor follows what already runs from here on.
      ...(Number(replica.output_offset) > 0 ? { outputOffset: Number(replica.output_offset) } : {}),
    };
    const live = this.track(key, workload.id, replica.replica, replica.epoch, executor, Number(replica.output_offset), ports, probeHostOf(node));
    try {
      const { handle } = await executor.start(launch, this.reporter(live));
      live.handle = handle;
      await this.options.db('workload_replicas')
        .where({ workload_id: workload.id, replica: replica.replica, epoch: replica.epoch })
        .update({ handle: JSON.stringify(handle), ports: JSON.stringify(ports) });
      if (live.exited) await this.settleLive(live);
    } catch (error) {
      this.live.delete(key);
      await this.finish(workload.id, replica.replica, replica.epoch, { lost: `the ${executor.name} executor could not start it: ${(error as Error).message}` });
    }
  }

  private reporter(live: Live): ReplicaReporter {
    return {
      // Recorded before the end is (settleLive waits for it): a quick job still shows it ran.
      started: (info) => {
        live.startedRecorded = this.started(live, info?.image);
      },
      output: (text, endOffset) => {
        live.text += text;
        live.offset = endOffset;
      },
      exited: (info) => {
        live.exited = info;
        if (live.handle) void this.settleLive(live);
      },
      lost: (reason) => {
        live.exited = { lost: reason };
        if (live.handle) void this.settleLive(live);
      },
    };
  }

  private async started(live: Live, image: string | undefined): Promise<void> {
    const { db } = this.options;
    try {
      const changes = new Changes();
      await withRetry(() => db.transaction(async (trx) => {
        // Locks in one order everywhere (the workload, then its replicas), so no two agent transactions deadlock.
        const w = (await trx('workloads').where({ id: live.workloadId }).forUpdate().first('state', 'kind', 'replicas', 'epoch')) as WorkloadRow | undefined;
        const updated = await trx('workload_replicas')
          .where({ workload_id: live.workloadId, replica: live.replica, epoch: live.epoch, state: 'starting' })
          .update({ state: 'running', started_at: trx.fn.now(), ...(image ? { image } : {}) });
        if (updated === 0) {
          // Followed again after a restart: the image is recorded once.
          if (image) await trx('workload_replicas').where({ workload_id: live.workloadId, replica: live.replica, epoch: live.epoch }).whereNull('image').update({ image });
          return;
        }
        if (!w || w.state !== 'scheduled') return;
        const waiting = (await trx('workload_replicas').where({ workload_id: live.workloadId }).whereIn('state', ['pending', 'placed', 'starting']).count('* as n').first()) as { n: number };
        // A job runs once all its replicas do; a service as soon as one does.
        if (w.kind === 'job' && Number(waiting.n) > 0) return;
        await transition(trx, changes, live.workloadId, { from: ['scheduled'], to: 'running', reason: null, patch: { started_at: trx.fn.now() } });
      }));
      await this.options.onChanges(changes);
    } catch (error) {
      this.options.logger.warn({ workload: live.workloadId, err: (error as Error).message }, 'cannot record a started replica');
    }
  }

  private async settleLive(live: Live): Promise<void> {
    if (!this.live.has(live.key)) return;
    // Not live any more, but not finished either until finish() commits: a recover() meanwhile
    // (a plugin enabled again) would read the replica as running and follow it a second time.
    this.settling.add(live.key);
    this.live.delete(live.key);
    try {
      await live.startedRecorded;
      await this.flush(live);
      await this.finish(live.workloadId, live.replica, live.epoch, live.exited!);
    } finally {
      this.settling.delete(live.key);
    }
    if (!live.handle) return;
    // A replica reported lost may still run (its engine stopped answering for a while): its cards
    // are released now, so make sure it stops before its remains are removed.
    if ('lost' in live.exited!) await live.executor.stop(live.handle, { graceSeconds: 0 }).catch(() => undefined);
    await live.executor.cleanup?.(live.handle).catch(() => undefined);
  }

  private async flushAll(): Promise<void> {
    await Promise.all([...this.live.values()].map((live) => this.flush(live)));
  }

  /** Store and stream a replica's complete output so far (logs, metric lines), and where it ends. */
  private flush(live: Live): Promise<void> {
    live.flushing = live.flushing.then(async () => {
      if (live.text.length === 0) return;
      const text = live.text;
      const offset = live.offset;
      live.text = '';
      const metrics: { step: number | null; values: Record<string, number> }[] = [];
      for (const line of text.split('\n')) {
        const metric = parseMetric(line);
        if (metric) metrics.push(metric);
      }
      const { db } = this.options;
      try {
        const ids = await withRetry(() => db.transaction(async (trx) => {
          // The workload row first (a key-share lock through the log row's foreign key), then the
          // replica: the order finish() takes them in.
          const [log] = (await trx('workload_logs').insert({ workload_id: live.workloadId, replica: live.replica, epoch: live.epoch, text }).returning('id')) as { id: number }[];
          if (metrics.length > 0) {
            await trx('workload_metrics').insert(metrics.map((m) => ({ workload_id: live.workloadId, replica: live.replica, step: m.step, values: JSON.stringify(m.values) })));
          }
          const updated = await trx('workload_replicas')
            .where({ workload_id: live.workloadId, replica: live.replica, epoch: live.epoch })
            .update({ output_offset: offset });
          // Output of an epoch that is no longer the replica's: dropped with the transaction.
          if (updated === 0) throw new StaleOutput();
          const w = (await trx('workloads').where({ id: live.workloadId }).first('team_id')) as { team_id: string };
          return { logId: log!.id, team: w.team_id };
        })).catch((error: unknown) => {
          if (error instanceof StaleOutput) return undefined;
          throw error;
        });
        if (!ids) return;
        const audience = { team: ids.team, permission: 'workloads:read' };
        for (let i = 0; i < text.length; i += EVENT_TEXT) {
          await this.options.events.publish(`workloads/${live.workloadId}/logs`, { replica: live.replica, epoch: live.epoch, logId: ids.logId, text: text.slice(i, i + EVENT_TEXT) }, audience);
        }
        for (let i = 0; i < metrics.length; i += 200) {
          await this.options.events.publish(`workloads/${live.workloadId}/metrics`, { replica: live.replica, points: metrics.slice(i, i + 200) }, audience);
        }
      } catch (error) {
        // Put it back: the next flush tries again.
        live.text = text + live.text;
        this.options.logger.warn({ workload: live.workloadId, err: (error as Error).message }, 'cannot store replica output');
      }
    });
    return live.flushing;
  }

  /** A replica ended (or was lost): record it, release its cards, and settle the workload. */
  private async finish(workloadId: string, replica: number, epoch: number, outcome: Live['exited'] & object): Promise<void> {
    const { db } = this.options;
    const changes = new Changes();
    try {
      await withRetry(() => db.transaction(async (trx) => {
        const lost = 'lost' in outcome;
        // The workload first: replicas of one gang ending together wait for each other instead of deadlocking.
        await trx('workloads').where({ id: workloadId }).forUpdate().first('id');
        const updated = await trx('workload_replicas')
          .where({ workload_id: workloadId, replica, epoch })
          .whereIn('state', ['placed', 'starting', 'running', 'ready'])
          .update({
            state: lost ? 'lost' : 'exited',
            exit_code: lost ? null : outcome.exitCode,
            signal: lost ? null : (outcome.signal ?? null),
            finished_at: trx.fn.now(),
          });
        if (updated === 0) return;
        await releaseReservations(trx, workloadId, lost ? `lost: ${outcome.lost}` : `exited ${outcome.exitCode ?? outcome.signal ?? ''}`.trim(), replica);
        if (lost) {
          await trx('workload_logs').insert({ workload_id: workloadId, replica, epoch, text: `aiplat: replica ${replica} lost: ${outcome.lost}\n` });
        }
        await settle(trx, changes, workloadId, { replica, outcome });
      }));
    } catch (error) {
      this.options.logger.error({ workload: workloadId, replica, err: (error as Error).message }, 'cannot record how a replica ended');
      return;
    }
    await this.options.onChanges(changes);
    this.options.nudgeScheduler();
    this.nudge();
  }

  /** Services' readiness checks: every running replica of this core's nodes, on its own period. */
  private async probe(): Promise<void> {
    const now = Date.now();
    const services = [...this.live.values()].filter((l) => Object.keys(l.ports).length > 0 && !l.exited);
    if (services.length === 0) return;
    const specs = (await this.options.db('workloads')
      .whereIn('id', [...new Set(services.map((s) => s.workloadId))])
      .select('id', 'spec', 'state')) as { id: string; spec: WorkloadSpec; state: string }[];
    const byId = new Map(specs.map((s) => [s.id, s]));
    for (const live of services) {
      const w = byId.get(live.workloadId);
      const check = w?.spec.readiness;
      if (!w || !check || !['running', 'ready'].includes(w.state)) continue;
      live.readiness ??= { failures: 0, nextAt: now + (check.initialDelaySeconds ?? 0) * 1000, ready: false };
      if (now < live.readiness.nextAt) continue;
      live.readiness.nextAt = now + (check.periodSeconds ?? 2) * 1000;
      const portName = check.httpGet?.port ?? check.tcpSocket?.port ?? '';
      const port = live.ports[portName];
      if (!port) continue;
      const ok = await (check.httpGet ? httpOk(live.host, port, check.httpGet.path, check.timeoutSeconds ?? 1) : tcpOk(live.host, port, check.timeoutSeconds ?? 1));
      if (ok) {
        live.readiness.failures = 0;
        if (!live.readiness.ready) {
          live.readiness.ready = true;
          await this.readiness(live, true);
        }
      } else if (live.readiness.ready && ++live.readiness.failures >= (check.failureThreshold ?? 3)) {
        live.readiness.ready = false;
        await this.readiness(live, false);
      }
    }
  }

  private async readiness(live: Live, ready: boolean): Promise<void> {
    const changes = new Changes();
    await withRetry(() => this.options.db.transaction(async (trx) => {
      const w = (await trx('workloads').where({ id: live.workloadId }).forUpdate().first('state', 'replicas')) as WorkloadRow;
      const updated = await trx('workload_replicas')
        .where({ workload_id: live.workloadId, replica: live.replica, epoch: live.epoch })
        .whereIn('state', ready ? ['running'] : ['ready'])
        .update({ state: ready ? 'ready' : 'running' });
      if (updated === 0) return;
      if (ready) {
        const notReady = (await trx('workload_replicas').where({ workload_id: live.workloadId }).whereNot({ state: 'ready' }).count('* as n').first()) as { n: number };
        if (Number(notReady.n) === 0 && w.state === 'running') {
          await transition(trx, changes, live.workloadId, { from: ['running'], to: 'ready', reason: 'every replica passes its readiness check' });
        }
      } else if (w.state === 'ready') {
        await transition(trx, changes, live.workloadId, { from: ['ready'], to: 'running', reason: `replica ${live.replica} fails its readiness check` });
      }
    }));
    await this.options.onChanges(changes);
  }
}

/** Replicas on this machine are probed on 127.0.0.1; on a host added through the API, at its address. */
function probeHostOf(node: { address: string; connector: string | null } | undefined): string {
  return node?.connector ? node.address : '127.0.0.1';
}

function httpOk(host: string, port: number, path: string, timeoutSeconds: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host, port, path, timeout: timeoutSeconds * 1000 }, (res) => {
      res.resume();
      resolve((res.statusCode ?? 500) < 400);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

function tcpOk(host: string, port: number, timeoutSeconds: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.setTimeout(timeoutSeconds * 1000, () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Decide what a workload becomes after one of its replicas ended, in the transaction that
 * recorded it. Jobs are gangs: one failed replica stops the rest, and the job is tried again (when
 * retries are left) or fails once all have stopped. A service restarts the replica by its policy.
 */
export async function settle(db: Knex, changes: Changes, workloadId: string, ended: { replica: number; outcome: Live['exited'] & object }): Promise<void> {
  const w = (await db('workloads').where({ id: workloadId }).forUpdate().first()) as WorkloadRow | undefined;
  if (!w || ['succeeded', 'failed', 'cancelled', 'lost'].includes(w.state)) return;
  const replicas = (await db('workload_replicas').where({ workload_id: workloadId }).orderBy('replica')) as ReplicaRow[];
  const liveCount = replicas.filter((r) => ['placed', 'starting', 'running', 'ready'].includes(r.state)).length;
  const outcome = ended.outcome;
  const failedHere = 'lost' in outcome || outcome.exitCode !== 0;
  const stopping = w.stopping;
  const describe = 'lost' in outcome ? `replica ${ended.replica} was lost: ${outcome.lost}` : outcome.exitCode === null ? `replica ${ended.replica} was killed by ${outcome.signal ?? 'a signal'}` : `replica ${ended.replica} exited with code ${outcome.exitCode}`;
  const resetReplicas = () =>
    db('workload_replicas')
      .where({ workload_id: workloadId })
      .update({ state: 'pending', node_id: null, devices: '[]', handle: null, output_offset: 0, exit_code: null, signal: null, started_at: null, finished_at: null });

  if (w.kind === 'service' && !stopping) {
    const policy = w.spec.restartPolicy ?? 'always';
    if (policy === 'always' || (policy === 'on-failure' && failedHere)) {
      await db('workload_replicas')
        .where({ workload_id: workloadId, replica: ended.replica })
        .update({ state: 'pending', node_id: null, devices: '[]', handle: null, output_offset: 0, restarts: db.raw('restarts + 1') });
      await db('workload_events').insert({ workload_id: workloadId, from_state: w.state, to_state: w.state, reason: `${describe}; restarting it`, epoch: w.epoch });
      if (w.state === 'ready') await transition(db, changes, workloadId, { from: ['ready'], to: 'running', reason: `${describe}; restarting it` });
      else changes.add(workloadId, w.state, w.state, `${describe}; restarting it`);
      return;
    }
    if (liveCount > 0) return;
    const anyFailed = replicas.some((r) => r.state === 'lost' || (r.exit_code ?? 1) !== 0);
    await transition(db, changes, workloadId, { from: [w.state], to: anyFailed ? 'failed' : 'succeeded', reason: describe, patch: { exit_code: 'lost' in outcome ? null : outcome.exitCode } });
    return;
  }

  // A job (or a stopping service).
  if (liveCount > 0) {
    // The gang cannot go on without this replica: stop the others.
    if (failedHere && !stopping) await db('workloads').where({ id: workloadId }).update({ stopping: `failed:${describe}`, updated_at: db.fn.now() });
    return;
  }
  const [kind, ...rest] = (stopping ?? '').split(':');
  const note = rest.join(':');
  if (kind === 'cancel') {
    await transition(db, changes, workloadId, { from: [w.state], to: 'cancelled', reason: note || 'cancelled' });
    return;
  }
  if (kind === 'evicted') {
    // Its node was drained: back to the queue, to be placed elsewhere.
    await resetReplicas();
    await transition(db, changes, workloadId, { from: [w.state], to: 'pending', reason: `moved off node ${note} (drained); back in the queue`, patch: { stopping: null, started_at: null } });
    return;
  }
  if (kind === 'preempted') {
    await resetReplicas();
    // Name the preemptor as the preemption event did, and say how often this one has yielded.
    const by = (await db('workloads').where({ id: note }).first('name', 'priority')) as { name: string; priority: string } | undefined;
    const count = w.preemptions + 1;
    await transition(db, changes, workloadId, {
      from: [w.state],
      to: 'pending',
      reason: `preempted by ${by ? `${by.name} (${note}, priority ${by.priority})` : note}, ${count} preemption${count === 1 ? '' : 's'} so far; back in the queue`,
      patch: { preemptions: w.preemptions + 1, stopping: null, started_at: null },
    });
    return;
  }
  const exitCodes = replicas.map((r) => r.exit_code);
  const anyLost = replicas.some((r) => r.state === 'lost');
  const allOk = !anyLost && exitCodes.every((c) => c === 0) && kind !== 'timeout';
  if (allOk) {
    await transition(db, changes, workloadId, { from: [w.state], to: 'succeeded', reason: null, patch: { exit_code: 0 } });
    return;
  }
  const why = kind === 'timeout' ? note : kind === 'failed' ? note : describe;
  const firstBad = replicas.find((r) => r.exit_code !== null && r.exit_code !== 0)?.exit_code ?? null;
  if (w.attempt < w.retries) {
    await resetReplicas();
    await transition(db, changes, workloadId, {
      from: [w.state],
      to: 'pending',
      reason: `retry ${w.attempt + 1} of ${w.retries}: ${why}`,
      patch: { attempt: w.attempt + 1, stopping: null, started_at: null, exit_code: firstBad },
    });
    return;
  }
  await transition(db, changes, workloadId, { from: [w.state], to: anyLost && firstBad === null && kind !== 'timeout' ? 'lost' : 'failed', reason: why, patch: { exit_code: firstBad } });
}
