import { randomBytes, randomInt } from 'node:crypto';
import type { Knex } from 'knex';
import {
  AiplatError,
  TERMINAL_WORKLOAD_STATES,
  workloadHooks,
  type EventBus,
  type Executor,
  type HookRegistry,
  type Logger,
  type Principal,
  type Workload,
  type WorkloadSpec,
  type WorkloadState,
} from '@aiplat/plugin-sdk';
import { loadCluster } from './ledger.js';
import { describeShortage, neverFits, occupy, placeGang, placeReplica, release, vacate, type NodeState, type PlacementRequest, type ReplicaGrant, type Strategy } from './placement.js';
import { gpuHours, gpusInUse, listQuotas, periodBounds, round, type TeamQuota } from './quotas.js';
import { normaliseSpec, specProblems } from './spec.js';
import { Changes, readWorkload, releaseReservations, transition, type WorkloadRow } from './store.js';

export const WORKLOADS_TOPIC = 'workloads';
/** Any core replica may take the scheduler's role; this advisory lock makes sure only one does. */
const LEADER_LOCK_KEY = 0x61697074; // "aipt"
const PASS_LIMIT = 20_000;
/**
 * Passes run when something changes (a submission, a release: the `workloads` topic nudges every
 * core); this timer only catches what a lost nudge missed, so an idle core does little work (the
 * embedded database runs in the core's own thread).
 */
const FALLBACK_PASS_MS = 3000;
const CHUNK = 400;

export interface SchedulerOptions {
  db: Knex;
  kind: 'embedded' | 'postgres';
  events: EventBus;
  hooks: HookRegistry;
  logger: Logger;
  executors: () => Executor[];
  strategy: Strategy;
  preemption: boolean;
  timeZone: string;
  /** Called with committed state changes (the agent listens, the stream publishes). */
  onChanges: (changes: Changes) => Promise<void>;
  /** Whether the caller may act for a team: a member with the permission, or a global grant. */
  canInTeam: (principal: Principal, permission: string, team: string) => boolean;
  teamExists: (team: string) => boolean;
}

interface PendingItem {
  row: WorkloadRow;
  /** Replica numbers waiting to be placed (a job: all of them; a service: those not running). */
  replicas: number[];
}

interface Placement {
  row: WorkloadRow;
  grants: { replica: number; grant: ReplicaGrant }[];
  epoch: number;
  masterPort: number | null;
  share: number;
}

/**
 * The scheduler: admission, quotas, priorities, preemption and placement. Every core accepts
 * submissions; one core at a time (the holder of a PostgreSQL advisory lock) places them. A pass
 * reads the queue and the cluster, places in memory, and commits the placements in chunks; the
 * ledger's exclusion constraint refuses anything a stale picture got wrong (that chunk is then
 * retried one workload at a time).
 */
export class Scheduler {
  private leader = false;
  private leaderConnection: unknown;
  private electionTimer: NodeJS.Timeout | undefined;
  private tickTimer: NodeJS.Timeout | undefined;
  private passRunning = false;
  private passAgain = false;
  private stopped = false;
  private passDone: Promise<void> = Promise.resolve();
  /** Placement decisions made since start (bench). */
  decisions = 0;

  constructor(private readonly options: SchedulerOptions) {}

  get isLeader(): boolean {
    return this.leader;
  }

  async start(): Promise<void> {
    await this.elect();
    const again = () => {
      this.electionTimer = setTimeout(() => {
        void this.elect().finally(() => {
          if (!this.stopped) again();
        });
      }, 2000);
      this.electionTimer.unref();
    };
    again();
    const tick = () => {
      this.tickTimer = setTimeout(() => {
        this.nudge();
        if (!this.stopped) tick();
      }, FALLBACK_PASS_MS);
      this.tickTimer.unref();
    };
    tick();
    this.nudge();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.electionTimer);
    clearTimeout(this.tickTimer);
    await this.passDone.catch(() => undefined);
    await this.resign();
  }

  /** Become the leader when no other core is; keep checking the lock's connection while leading. */
  private async elect(): Promise<void> {
    if (this.stopped) return;
    const { db, kind, logger } = this.options;
    if (kind === 'embedded') {
      // One process per data folder (the data-folder lock): it is the only scheduler there is.
      this.leader = true;
      return;
    }
    const client = db.client as { acquireConnection(): Promise<unknown>; releaseConnection(c: unknown): Promise<void> };
    try {
      if (this.leader && this.leaderConnection) {
        await (this.leaderConnection as { query(sql: string): Promise<unknown> }).query('select 1');
        return;
      }
      const connection = await client.acquireConnection();
      const result = (await (connection as { query(sql: string, values: unknown[]): Promise<{ rows: { locked: boolean }[] }> }).query(
        'select pg_try_advisory_lock($1) as locked',
        [LEADER_LOCK_KEY],
      )) as { rows: { locked: boolean }[] };
      if (result.rows[0]?.locked) {
        this.leaderConnection = connection;
        this.leader = true;
        logger.info('this core schedules now (it holds the scheduler lock)');
        this.nudge();
      } else {
        await client.releaseConnection(connection);
      }
    } catch (error) {
      if (this.leader) logger.warn({ err: (error as Error).message }, 'lost the scheduler lock');
      this.leader = false;
      this.leaderConnection = undefined;
    }
  }

  private async resign(): Promise<void> {
    if (!this.leaderConnection) return;
    const connection = this.leaderConnection as { query(sql: string, values: unknown[]): Promise<unknown> };
    this.leaderConnection = undefined;
    this.leader = false;
    try {
      await connection.query('select pg_advisory_unlock($1)', [LEADER_LOCK_KEY]);
    } catch {
      // the connection is gone, and the lock with it
    }
    await (this.options.db.client as { releaseConnection(c: unknown): Promise<void> }).releaseConnection(connection).catch(() => undefined);
  }

  /** Run a scheduling pass soon (a workload arrived or capacity freed up). */
  nudge(): void {
    if (!this.leader || this.stopped) return;
    if (this.passRunning) {
      this.passAgain = true;
      return;
    }
    this.passRunning = true;
    this.passDone = (async () => {
      try {
        do {
          this.passAgain = false;
          await this.pass();
        } while (this.passAgain && !this.stopped);
      } catch (error) {
        this.options.logger.error({ err: (error as Error).message }, 'scheduling pass failed');
      } finally {
        this.passRunning = false;
      }
    })();
  }

  /** Resolves when no pass is running (tests, bench). */
  async idle(): Promise<void> {
    while (this.passRunning) await this.passDone;
  }

  // ---------------------------------------------------------------------------------------------
  // Submission

  /** Check, amend (beforeSubmit), and store a workload as pending, in `db`'s transaction. */
  async submit(db: Knex, given: WorkloadSpec, options: { user: Principal; owner: string }, changes: Changes): Promise<WorkloadRow> {
    const spec = await this.options.hooks.call(workloadHooks.beforeSubmit, given, { user: options.user, owner: options.owner });
    const problems = specProblems(spec);
    const team = spec.team ?? options.user.defaultTeam ?? undefined;
    if (!team) problems.push('the workload names no team and you have no default team: name one in "team"');
    else if (!this.options.teamExists(team)) problems.push(`there is no team "${team}"`);
    else if (!this.options.canInTeam(options.user, 'workloads:create', team)) {
      throw new AiplatError('forbidden', `You may not submit workloads for team "${team}"`, { permission: 'workloads:create', team });
    }
    const executorName = spec.executor ?? 'local';
    const executors = this.options.executors();
    const executor = executors.find((e) => e.name === executorName);
    if (!executor) problems.push(`there is no executor "${executorName}" (known: ${executors.map((e) => e.name).join(', ')})`);
    else if (executor.validate) problems.push(...(await executor.validate(spec)));
    const priority = (await db('priority_classes').where({ name: spec.priority ?? 'normal' }).first('value')) as { value: number } | undefined;
    if (!priority) {
      const names = ((await db('priority_classes').orderBy('value').pluck('name')) as string[]).join(', ');
      problems.push(`there is no priority class "${spec.priority}" (known: ${names})`);
    }
    const request: PlacementRequest = {
      gpus: spec.resources?.gpus ?? 0,
      gpuMemoryMiB: spec.resources?.gpuMemoryMiB ?? null,
      executor: executorName,
      nodeSelector: spec.nodeSelector,
      image: spec.image,
    };
    if (problems.length === 0) {
      const cluster = await loadCluster(db, { includeCordoned: true });
      const never = neverFits(cluster.nodes, request);
      if (never) problems.push(`it can never be placed: ${never}`);
      const quota = (await listQuotas(db, [team!]))[0];
      const perReplica = request.gpuMemoryMiB ? 0 : request.gpus;
      const replicas = spec.replicas ?? 1;
      if (quota?.gpus !== null && quota?.gpus !== undefined && perReplica * replicas > quota.gpus) {
        problems.push(`it asks for ${perReplica * replicas} GPUs at once, but team "${team}" may hold at most ${quota.gpus}`);
      }
    }
    if (problems.length > 0) {
      throw new AiplatError('unschedulable', `The workload cannot be accepted: ${problems.join('; ')}.`, { problems });
    }
    const stored = normaliseSpec(spec, team!);
    const id = `w${Date.now().toString(36)}${randomBytes(5).toString('hex')}`;
    const [row] = (await db('workloads')
      .insert({
        id,
        name: stored.name,
        kind: stored.kind,
        team_id: team,
        user_id: options.user.id,
        owner: options.owner,
        executor: executorName,
        priority: stored.priority,
        priority_value: priority!.value,
        state: 'pending',
        reason: 'waiting for the scheduler',
        spec: JSON.stringify(stored),
        replicas: stored.replicas,
        gpus: request.gpus,
        gpu_memory_mib: request.gpuMemoryMiB,
        retries: stored.retries,
      })
      .returning('*')) as WorkloadRow[];
    await db('workload_replicas').insert(
      Array.from({ length: stored.replicas! }, (_, replica) => ({ workload_id: id, replica, epoch: 0, state: 'pending' })),
    );
    await db('workload_events').insert({ workload_id: id, from_state: null, to_state: 'pending', reason: 'submitted', epoch: 0, details: JSON.stringify({ by: options.user.username }) });
    changes.add(id, null, 'pending', 'submitted');
    return row!;
  }

  /**
   * Ask a workload to stop for good. A pending one is cancelled at once; a running one is marked
   * `stopping` and its agents stop the replicas (SIGTERM, grace, SIGKILL); it becomes cancelled
   * once every replica has exited.
   */
  async cancel(db: Knex, id: string, reason: string, changes: Changes): Promise<void> {
    const row = (await db('workloads').where({ id }).forUpdate().first()) as WorkloadRow | undefined;
    if (!row) throw new AiplatError('not_found', `No workload ${id}`);
    if ((TERMINAL_WORKLOAD_STATES as string[]).includes(row.state)) {
      throw new AiplatError('conflict', `Workload ${id} already ended (${row.state}); there is nothing to cancel`);
    }
    if (row.state === 'pending') {
      const live = (await db('workload_replicas').where({ workload_id: id }).whereIn('state', ['placed', 'starting', 'running', 'ready']).count('* as n').first()) as { n: number };
      if (Number(live.n) === 0) {
        await transition(db, changes, id, { from: ['pending'], to: 'cancelled', reason });
        await db('workload_replicas').where({ workload_id: id, state: 'pending' }).update({ state: 'exited' });
        return;
      }
    }
    await db('workloads').where({ id }).update({ stopping: `cancel:${reason}`, updated_at: db.fn.now() });
    await db('workload_events').insert({ workload_id: id, from_state: row.state, to_state: row.state, reason: `stopping: ${reason}`, epoch: row.epoch });
    await db('workload_replicas').where({ workload_id: id, state: 'pending' }).update({ state: 'exited' });
    changes.add(id, row.state, row.state, `stopping: ${reason}`);
  }

  /** Run a finished job or service again (the same spec, a new attempt). */
  async retry(db: Knex, id: string, changes: Changes): Promise<void> {
    const row = (await db('workloads').where({ id }).forUpdate().first()) as WorkloadRow | undefined;
    if (!row) throw new AiplatError('not_found', `No workload ${id}`);
    if (!(['failed', 'cancelled', 'lost', 'succeeded'] as WorkloadState[]).includes(row.state)) {
      throw new AiplatError('conflict', `Workload ${id} is ${row.state}: only a finished workload can be retried`);
    }
    await db('workload_replicas')
      .where({ workload_id: id })
      .update({ state: 'pending', node_id: null, devices: '[]', handle: null, output_offset: 0, exit_code: null, signal: null, started_at: null, finished_at: null });
    await transition(db, changes, id, {
      from: [row.state],
      to: 'pending',
      reason: 'retried by hand',
      patch: { attempt: row.attempt + 1, exit_code: null, finished_at: null, started_at: null, queued_at: db.fn.now(), stopping: null },
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Scheduling pass

  private async pass(): Promise<void> {
    const { db } = this.options;
    const pending = await this.loadPending();
    if (pending.length === 0) return;
    const [cluster, quotas, classes] = await Promise.all([loadCluster(db), listQuotas(db), this.priorityClasses()]);
    const quotaByTeam = new Map(quotas.map((q) => [q.team, q]));
    const inUse = quotas.length > 0 ? await gpusInUse(db) : new Map<string, number>();
    const hoursLeft = await this.hoursLeft(quotas);
    const placements: Placement[] = [];
    const reasons = new Map<string, string>();
    const preemptionFor: PendingItem[] = [];

    for (const item of pending) {
      const { row } = item;
      const request: PlacementRequest = {
        gpus: row.gpus,
        gpuMemoryMiB: row.gpu_memory_mib,
        executor: row.executor,
        nodeSelector: row.spec.nodeSelector,
        image: row.spec.image,
      };
      const quota = quotaByTeam.get(row.team_id);
      const exhausted = quota && hoursLeft.get(row.team_id);
      if (exhausted) {
        reasons.set(row.id, exhausted);
        continue;
      }
      const gang = row.kind === 'job';
      let grants: { replica: number; grant: ReplicaGrant }[] = [];
      if (gang) {
        const placed = placeGang(cluster.nodes, cluster.byId, request, item.replicas.length, this.options.strategy);
        if (placed) grants = placed.map((grant, i) => ({ replica: item.replicas[i]!, grant }));
      } else {
        // A service's replicas are placed one by one: those that fit start now, the rest wait.
        for (const replica of item.replicas) {
          const grant = placeReplica(cluster.nodes, request, this.options.strategy);
          if (!grant) break;
          grants.push({ replica, grant });
        }
      }
      this.decisions++;
      if (grants.length === 0) {
        // Whole cards beyond the team's quota: freeing cards would not let it run, so preempt nothing.
        const wanted = row.gpu_memory_mib ? 0 : row.gpus * item.replicas.length;
        if (quota?.gpus !== null && quota?.gpus !== undefined && (inUse.get(row.team_id) ?? 0) + wanted > quota.gpus + 1e-9) {
          reasons.set(row.id, `waiting for team quota: ${round(inUse.get(row.team_id) ?? 0)} of ${quota.gpus} GPUs in use, this needs ${round(wanted)} more`);
          continue;
        }
        reasons.set(row.id, `${describeShortage(cluster.nodes, request)}${gang && row.replicas > 1 ? `, for each of ${row.replicas} replicas placed together` : ''}`);
        if (this.options.preemption) preemptionFor.push(item);
        continue;
      }
      const share = grants.reduce((sum, g) => sum + g.grant.devices.reduce((s, d) => s + (d.whole ? 1 : (d.hi - d.lo) / (cluster.devices.get(d.deviceId)?.memoryMiB ?? d.hi - d.lo)), 0), 0);
      if (quota?.gpus !== null && quota?.gpus !== undefined && (inUse.get(row.team_id) ?? 0) + share > quota.gpus + 1e-9) {
        for (const g of grants) release(cluster.byId, g.grant);
        reasons.set(row.id, `waiting for team quota: ${round(inUse.get(row.team_id) ?? 0)} of ${quota.gpus} GPUs in use, this needs ${round(share)} more`);
        continue;
      }
      inUse.set(row.team_id, (inUse.get(row.team_id) ?? 0) + share);
      const master = grants[0]!.grant;
      placements.push({
        row,
        grants,
        epoch: row.epoch + 1,
        masterPort: gang && row.replicas > 1 ? this.masterPort(master.nodeId) : null,
        share,
      });
    }

    await this.commitPlacements(placements);
    if (preemptionFor.length > 0) {
      // A workload whose victims are still stopping keeps saying so, not that cards are short.
      const stopping = (await db('workloads').whereLike('stopping', 'preempted:%').pluck('stopping')) as string[];
      for (const s of stopping) reasons.delete(s.slice('preempted:'.length));
    }
    await this.writeReasons(reasons);
    if (preemptionFor.length > 0) await this.preempt(preemptionFor, cluster.nodes, cluster.byId, classes);
  }

  private masterPort(_nodeId: string): number {
    // PyTorch's default rendezvous port is 29500; gangs on one node must not share one.
    return randomInt(29500, 32000);
  }

  private async loadPending(): Promise<PendingItem[]> {
    const { db } = this.options;
    const rows = (await db('workloads')
      .where({ state: 'pending' })
      .whereNull('stopping')
      .orderBy([{ column: 'priority_value', order: 'desc' }, 'queued_at', 'seq'])
      .limit(PASS_LIMIT)) as WorkloadRow[];
    const items: PendingItem[] = rows.map((row) => ({ row, replicas: Array.from({ length: row.replicas }, (_, i) => i) }));
    // Services whose replicas wait to be (re)started while the service runs.
    const waiting = (await db('workload_replicas as r')
      .join('workloads as w', 'w.id', 'r.workload_id')
      .where('r.state', 'pending')
      .where('w.kind', 'service')
      .whereIn('w.state', ['scheduled', 'running', 'ready'])
      .whereNull('w.stopping')
      .select('w.*', db.raw('array_agg(r.replica order by r.replica) as pending_replicas'))
      .groupBy('w.id')) as (WorkloadRow & { pending_replicas: number[] })[];
    for (const row of waiting) items.push({ row, replicas: row.pending_replicas });
    // Pending services: only their replicas still pending.
    const services = items.filter((i) => i.row.kind === 'service' && i.row.state === 'pending');
    if (services.length > 0) {
      const states = (await db('workload_replicas')
        .whereIn(
          'workload_id',
          services.map((s) => s.row.id),
        )
        .where({ state: 'pending' })
        .select('workload_id', 'replica')) as { workload_id: string; replica: number }[];
      const byId = new Map<string, number[]>();
      for (const s of states) byId.set(s.workload_id, [...(byId.get(s.workload_id) ?? []), s.replica]);
      for (const s of services) s.replicas = (byId.get(s.row.id) ?? []).sort((a, b) => a - b);
    }
    return items.filter((i) => i.replicas.length > 0);
  }

  private async priorityClasses(): Promise<Map<string, { value: number; preemptible: boolean }>> {
    const rows = (await this.options.db('priority_classes').select('name', 'value', 'preemptible')) as { name: string; value: number; preemptible: boolean }[];
    return new Map(rows.map((r) => [r.name, { value: r.value, preemptible: r.preemptible }]));
  }

  /** Per team whose GPU-hours for this period are used up: why its work waits. */
  private async hoursLeft(quotas: TeamQuota[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (const quota of quotas) {
      if (quota.gpuHours === null) continue;
      const { start, end } = await periodBounds(this.options.db, quota.period, this.options.timeZone);
      const used = (await gpuHours(this.options.db, { from: start, to: end, groupBy: 'team', teams: [quota.team] })).get(quota.team) ?? 0;
      if (used >= quota.gpuHours) {
        out.set(quota.team, `waiting for team quota: ${round(used)} of ${quota.gpuHours} GPU-hours this ${quota.period} are used (the next ${quota.period} starts ${end.toISOString()})`);
      }
    }
    return out;
  }

  /** Commit placements in chunks, set-based; a chunk the database refuses is retried one by one. */
  private async commitPlacements(placements: Placement[]): Promise<void> {
    for (let i = 0; i < placements.length; i += CHUNK) {
      const chunk = placements.slice(i, i + CHUNK);
      try {
        await this.commitChunk(chunk);
      } catch (error) {
        if (chunk.length === 1) {
          this.options.logger.warn({ workload: chunk[0]!.row.id, err: (error as Error).message }, 'placement refused; it waits for the next pass');
          continue;
        }
        for (const one of chunk) {
          try {
            await this.commitChunk([one]);
          } catch (inner) {
            this.options.logger.info({ workload: one.row.id, err: (inner as Error).message }, 'placement refused; it waits for the next pass');
          }
        }
      }
    }
  }

  private async commitChunk(chunk: Placement[]): Promise<void> {
    const changes = new Changes();
    await this.options.db.transaction(async (trx) => {
      const reservations = chunk.flatMap((p) =>
        p.grants.flatMap(({ replica, grant }) =>
          grant.devices.map((d) => ({
            device_id: d.deviceId,
            node_id: grant.nodeId,
            workload_id: p.row.id,
            replica,
            epoch: p.epoch,
            team_id: p.row.team_id,
            user_id: p.row.user_id,
            whole: d.whole,
            memory: trx.raw('int4range(?, ?)', [d.lo, d.hi]),
          })),
        ),
      );
      for (let i = 0; i < reservations.length; i += 1000) await trx('gpu_reservations').insert(reservations.slice(i, i + 1000));
      // Workloads leaving the queue: only if still as the pass saw them (not cancelled meanwhile).
      const fromPending = chunk.filter((p) => p.row.state === 'pending');
      if (fromPending.length > 0) {
        const values = fromPending.map(() => '(?, ?::int, ?::int)').join(', ');
        const bindings = fromPending.flatMap((p) => [p.row.id, p.row.epoch, p.masterPort]);
        const { rows } = (await trx.raw(
          `update workloads w set state = 'scheduled', reason = null, epoch = w.epoch + 1, master_port = v.port, scheduled_at = now(), updated_at = now()
             from (values ${values}) as v(id, epoch, port)
            where w.id = v.id and w.epoch = v.epoch and w.state = 'pending' and w.stopping is null
            returning w.id`,
          bindings,
        )) as { rows: { id: string }[] };
        if (rows.length !== fromPending.length) throw new Error('workloads changed while they were being placed');
        await trx('workload_events').insert(
          fromPending.map((p) => ({
            workload_id: p.row.id,
            from_state: 'pending',
            to_state: 'scheduled',
            reason: `placed on ${[...new Set(p.grants.map((g) => g.grant.nodeId))].join(', ')}`,
            epoch: p.epoch,
            details: JSON.stringify({ placements: p.grants.map((g) => ({ replica: g.replica, node: g.grant.nodeId, devices: g.grant.devices.map((d) => d.index) })) }),
          })),
        );
        for (const p of fromPending) changes.add(p.row.id, 'pending', 'scheduled', null);
      }
      const others = chunk.filter((p) => p.row.state !== 'pending');
      if (others.length > 0) {
        await trx('workloads')
          .whereIn(
            'id',
            others.map((p) => p.row.id),
          )
          .update({ epoch: trx.raw('epoch + 1'), updated_at: trx.fn.now() });
      }
      const replicaValues = chunk.flatMap((p) => p.grants.map((g) => ({ p, g })));
      const values = replicaValues.map(() => '(?, ?::int, ?::int, ?, ?::jsonb)').join(', ');
      const bindings = replicaValues.flatMap(({ p, g }) => [
        p.row.id,
        g.replica,
        p.epoch,
        g.grant.nodeId,
        JSON.stringify(g.grant.devices.map((d) => ({ id: d.deviceId, index: d.index, uuid: d.uuid, lo: d.lo, hi: d.hi, whole: d.whole }))),
      ]);
      const { rows: replicaRows } = (await trx.raw(
        `update workload_replicas r set state = 'placed', epoch = v.epoch, node_id = v.node, devices = v.devices, handle = null, output_offset = 0,
                exit_code = null, signal = null, started_at = null, finished_at = null
           from (values ${values}) as v(workload_id, replica, epoch, node, devices)
          where r.workload_id = v.workload_id and r.replica = v.replica and r.state = 'pending'
          returning r.workload_id`,
        bindings,
      )) as { rows: unknown[] };
      if (replicaRows.length !== replicaValues.length) throw new Error('replicas changed while they were being placed');
      if (others.length > 0) {
        // A running service whose last waiting replica was just placed no longer waits for anything.
        await trx('workloads')
          .whereIn(
            'id',
            others.map((p) => p.row.id),
          )
          .whereNotExists(trx('workload_replicas').whereRaw('workload_replicas.workload_id = workloads.id').where('workload_replicas.state', 'pending'))
          .whereLike('reason', 'waiting for %')
          .update({ reason: null });
      }
    });
    await this.options.onChanges(changes);
  }

  private async writeReasons(reasons: Map<string, string>): Promise<void> {
    if (reasons.size === 0) return;
    const entries = [...reasons];
    for (let i = 0; i < entries.length; i += 1000) {
      const part = entries.slice(i, i + 1000);
      await this.options.db.raw(
        `update workloads w set reason = v.reason from (values ${part.map(() => '(?, ?)').join(', ')}) as v(id, reason)
          where w.id = v.id and w.reason is distinct from v.reason and w.state in ('pending', 'scheduled', 'running', 'ready')`,
        part.flat(),
      );
    }
  }

  /**
   * Make room for higher-priority work that does not fit: stop the fewest lower-priority,
   * preemptible workloads (lowest class first, newest first) whose cards would let it fit. The
   * victims' replicas get SIGTERM (their agents stop them) and they return to the queue; the
   * waiting workload is placed once their cards are released.
   */
  private async preempt(waiting: PendingItem[], nodes: NodeState[], byId: Map<string, NodeState>, classes: Map<string, { value: number; preemptible: boolean }>): Promise<void> {
    const { db } = this.options;
    const running = (await db('workloads')
      .whereIn('state', ['scheduled', 'running', 'ready'])
      .select('id', 'priority', 'priority_value', 'stopping', 'started_at', 'scheduled_at', 'seq')) as (Pick<WorkloadRow, 'id' | 'priority' | 'priority_value' | 'stopping' | 'seq'> & { scheduled_at: Date | string | null })[];
    // Workloads already waiting for victims to stop are not given more.
    const alreadyFor = new Set(running.filter((r) => r.stopping?.startsWith('preempted:')).map((r) => r.stopping!.split(':')[1]!));
    const candidates = running
      .filter((r) => r.stopping === null && classes.get(r.priority)?.preemptible !== false)
      .sort((a, b) => a.priority_value - b.priority_value || b.seq - a.seq);
    if (candidates.length === 0) return;
    const held = (await db('gpu_reservations')
      .whereRaw('upper_inf(held)')
      .whereIn(
        'workload_id',
        candidates.map((c) => c.id),
      )
      .select('workload_id', 'device_id', db.raw('lower(memory) as lo'), db.raw('upper(memory) as hi'))) as { workload_id: string; device_id: string; lo: number; hi: number }[];
    const heldBy = new Map<string, { device_id: string; lo: number; hi: number }[]>();
    for (const h of held) heldBy.set(h.workload_id, [...(heldBy.get(h.workload_id) ?? []), h]);
    const devices = new Map(nodes.flatMap((n) => n.devices.map((d) => [d.id, d] as const)));
    const taken = new Set<string>();
    for (const item of waiting) {
      if (item.row.kind !== 'job' || alreadyFor.has(item.row.id)) continue;
      const request: PlacementRequest = { gpus: item.row.gpus, gpuMemoryMiB: item.row.gpu_memory_mib, executor: item.row.executor, nodeSelector: item.row.spec.nodeSelector, image: item.row.spec.image };
      const victims: string[] = [];
      let fits = false;
      for (const candidate of candidates) {
        if (candidate.priority_value >= item.row.priority_value || taken.has(candidate.id) || !heldBy.has(candidate.id)) continue;
        victims.push(candidate.id);
        for (const h of heldBy.get(candidate.id)!) {
          const device = devices.get(h.device_id);
          if (device) vacate(device, h.lo, h.hi);
        }
        const grants = placeGang(nodes, byId, request, item.replicas.length, this.options.strategy);
        if (grants) {
          for (const g of grants) release(byId, g);
          fits = true;
          break;
        }
      }
      // The victims still hold their cards until they stop: put them back in the picture.
      for (const id of victims) {
        for (const h of heldBy.get(id) ?? []) {
          const device = devices.get(h.device_id);
          if (device) occupy(device, h.lo, h.hi);
        }
      }
      if (!fits) continue;
      for (const id of victims) taken.add(id);
      const changes = new Changes();
      await db.transaction(async (trx) => {
        for (const id of victims) {
          const updated = await trx('workloads').where({ id }).whereNull('stopping').whereIn('state', ['scheduled', 'running', 'ready']).update({ stopping: `preempted:${item.row.id}`, updated_at: trx.fn.now() });
          if (updated > 0) {
            const row = (await trx('workloads').where({ id }).first('state', 'epoch')) as { state: WorkloadState; epoch: number };
            const reason = `preempted by ${item.row.name} (${item.row.id}, priority ${item.row.priority})`;
            await trx('workload_events').insert({ workload_id: id, from_state: row.state, to_state: row.state, reason, epoch: row.epoch });
            changes.add(id, row.state, row.state, reason);
          }
        }
        await trx('workloads').where({ id: item.row.id }).update({ reason: `waiting for ${victims.length} lower-priority workload${victims.length === 1 ? '' : 's'} to stop (preempted)` });
      });
      this.options.logger.info({ workload: item.row.id, victims }, 'preempting lower-priority work');
      await this.options.onChanges(changes);
    }
  }

  /** A workload as the API shows it. */
  read(db: Knex, id: string): Promise<Workload | undefined> {
    return readWorkload(db, id);
  }

  /** Release a workload's cards (all replicas or one), e.g. when its replicas exit. */
  releaseFor(db: Knex, id: string, reason: string, replica?: number): Promise<number> {
    return releaseReservations(db, id, reason, replica);
  }
}
