import type { Knex } from 'knex';
import type { ReplicaPlacement, Workload, WorkloadSpec, WorkloadState, WorkloadStateChange } from '@aiplat/plugin-sdk';

export interface WorkloadRow {
  id: string;
  seq: number;
  name: string;
  kind: 'job' | 'service';
  team_id: string;
  user_id: string | null;
  owner: string;
  executor: string;
  priority: string;
  priority_value: number;
  state: WorkloadState;
  reason: string | null;
  spec: WorkloadSpec;
  replicas: number;
  gpus: number;
  gpu_memory_mib: number | null;
  attempt: number;
  retries: number;
  preemptions: number;
  epoch: number;
  master_port: number | null;
  exit_code: number | null;
  stopping: string | null;
  queued_at: Date | string;
  created_at: Date | string;
  updated_at: Date | string;
  scheduled_at: Date | string | null;
  started_at: Date | string | null;
  finished_at: Date | string | null;
}

export interface ReplicaRow {
  workload_id: string;
  replica: number;
  epoch: number;
  node_id: string | null;
  state: 'pending' | 'placed' | 'starting' | 'running' | 'ready' | 'exited' | 'lost';
  devices: { id: string; index: number; uuid: string; lo: number; hi: number; whole: boolean }[];
  ports: Record<string, number>;
  handle: Record<string, unknown> | null;
  output_offset: number;
  exit_code: number | null;
  signal: string | null;
  restarts: number;
  started_at: Date | string | null;
  finished_at: Date | string | null;
  /** The image the executor reported it runs. */
  image?: string | null;
}

export const LIVE_REPLICA_STATES = ['placed', 'starting', 'running', 'ready'] as const;
export const ACTIVE_STATES: WorkloadState[] = ['scheduled', 'running', 'ready'];

export function iso(value: Date | string | null): string | null {
  if (value === null) return null;
  return (value instanceof Date ? value : new Date(value)).toISOString();
}

export function toWorkload(row: WorkloadRow, replicas: ReplicaRow[]): Workload {
  const placements: ReplicaPlacement[] = replicas
    .filter((r) => r.node_id !== null)
    .map((r) => ({
      replica: r.replica,
      nodeId: r.node_id!,
      devices: r.devices.map((d) => ({ id: d.id, index: d.index, memoryMiB: d.hi - d.lo, whole: d.whole })),
      state: r.state,
      ...(Object.keys(r.ports ?? {}).length > 0 ? { ports: r.ports } : {}),
      ...(r.exit_code !== null ? { exitCode: r.exit_code } : {}),
      ...(r.image ? { image: r.image } : {}),
    }));
  return {
    id: row.id,
    name: row.name,
    kind: row.kind,
    team: row.team_id,
    userId: row.user_id,
    owner: row.owner,
    executor: row.executor,
    state: row.state,
    reason: row.reason,
    priority: row.priority,
    spec: row.spec,
    attempt: row.attempt,
    epoch: row.epoch,
    exitCode: row.exit_code,
    placements,
    createdAt: iso(row.created_at)!,
    updatedAt: iso(row.updated_at)!,
    startedAt: iso(row.started_at),
    finishedAt: iso(row.finished_at),
  };
}

export async function readWorkload(db: Knex, id: string): Promise<Workload | undefined> {
  const row = (await db('workloads').where({ id }).first()) as WorkloadRow | undefined;
  if (!row) return undefined;
  const replicas = (await db('workload_replicas').where({ workload_id: id }).orderBy('replica')) as ReplicaRow[];
  return toWorkload(row, replicas);
}

/**
 * State changes made in a transaction, told to the world once it commits (stream, hook). A change
 * that rolls back is never heard of.
 */
export class Changes {
  readonly list: { id: string; from: WorkloadState | null; to: WorkloadState; reason: string | null }[] = [];
  add(id: string, from: WorkloadState | null, to: WorkloadState, reason: string | null): void {
    this.list.push({ id, from, to, reason });
  }
}

/**
 * Move a workload from one of `from` to `to`, with the reason, in `db`'s transaction; records the
 * event. Returns the updated row, or undefined when the workload was not in one of `from` (someone
 * else moved it first: the caller's view is stale and it does nothing).
 */
export async function transition(
  db: Knex,
  changes: Changes,
  id: string,
  options: { from: WorkloadState[]; to: WorkloadState; reason: string | null; epoch?: number; patch?: Record<string, unknown>; details?: Record<string, unknown> },
): Promise<WorkloadRow | undefined> {
  const current = (await db('workloads').where({ id }).forUpdate().first('state', 'epoch')) as { state: WorkloadState; epoch: number } | undefined;
  if (!current || !options.from.includes(current.state)) return undefined;
  if (options.epoch !== undefined && current.epoch !== options.epoch) return undefined;
  const terminal = ['succeeded', 'failed', 'cancelled', 'lost'].includes(options.to);
  const [row] = (await db('workloads')
    .where({ id })
    .update({
      state: options.to,
      reason: options.reason,
      updated_at: db.fn.now(),
      ...(terminal ? { finished_at: db.fn.now(), stopping: null } : {}),
      ...options.patch,
    })
    .returning('*')) as WorkloadRow[];
  await db('workload_events').insert({
    workload_id: id,
    from_state: current.state,
    to_state: options.to,
    reason: options.reason,
    epoch: row!.epoch,
    details: JSON.stringify(options.details ?? {}),
  });
  changes.add(id, current.state, options.to, options.reason);
  return row;
}

/** Release the live reservations of a workload (all replicas, or one). */
export async function releaseReservations(db: Knex, workloadId: string, reason: string, replica?: number): Promise<number> {
  const query = db('gpu_reservations')
    .where({ workload_id: workloadId })
    .whereRaw('upper_inf(held)')
    .update({ held: db.raw('tstzrange(lower(held), greatest(lower(held), clock_timestamp()))'), released_reason: reason });
  if (replica !== undefined) query.andWhere({ replica });
  return query;
}

export type StateChangeListener = (change: WorkloadStateChange) => Promise<void>;
