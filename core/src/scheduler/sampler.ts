import { readFileSync } from 'node:fs';
import type { Knex } from 'knex';
import { Gauge, type Registry } from 'prom-client';
import { deviceHooks, type DeviceProvider, type DevicesSampledEvent, type Executor, type HookRegistry, type Logger, type NodeSample } from '@aiplat/plugin-sdk';

export interface SamplerOptions {
  db: Knex;
  logger: Logger;
  hooks: HookRegistry & { isUsed(ref: { id: string }): boolean };
  providers: () => DeviceProvider[];
  /** This core's nodes: only their cards are sampled here. */
  nodes: () => ReadonlySet<string>;
  registry: Registry | undefined;
  intervalSeconds: number;
  retentionHours: number;
  /**
   * The executors whose replicas may run on this core's nodes. Those with `processIds` (container
   * executors) tell the host pids of their live replicas: those are aiplat's, not memory held outside
   * it. Without it only the local executor's process groups count as aiplat's.
   */
  executors?: () => Executor[];
}

/** Replica states whose processes may hold GPU memory. */
const LIVE_STATES = ['starting', 'running', 'ready'];

/** A live replica, as `processIdsOfReplicas` asks its executor about it. */
export interface LiveReplica {
  nodeId: string;
  executor: string;
  handle: Record<string, unknown>;
}

export interface ReplicaProcessIdsOptions {
  /** How long one executor's `processIds` may take before its replica is skipped this round (5 s by default). */
  timeoutMs?: number;
  logger?: Logger;
}

/**
 * The host pids of the live replicas of executors that have `processIds` (containers: a container's
 * processes appear in nvidia-smi with host pids outside aiplat's process groups), per node. Reads
 * `workload_replicas` in state starting/running/ready with a handle, on `nodeIds`, whose workload's
 * executor is one of `executors` with `processIds`.
 */
export async function replicaProcessIds(db: Knex, nodeIds: readonly string[], executors: readonly Executor[], options: ReplicaProcessIdsOptions = {}): Promise<Map<string, Set<number>>> {
  const able = executors.filter((e) => typeof e.processIds === 'function');
  if (able.length === 0 || nodeIds.length === 0) return new Map();
  const rows = (await db('workload_replicas as r')
    .join('workloads as w', 'w.id', 'r.workload_id')
    .whereIn('r.node_id', [...nodeIds])
    .whereIn('r.state', LIVE_STATES)
    .whereNotNull('r.handle')
    .whereIn(
      'w.executor',
      able.map((e) => e.name),
    )
    .select('r.node_id', 'r.handle', 'w.executor')) as { node_id: string; handle: Record<string, unknown> | null; executor: string }[];
  const replicas = rows.filter((r) => r.handle !== null && typeof r.handle === 'object').map((r) => ({ nodeId: r.node_id, executor: r.executor, handle: r.handle! }));
  return processIdsOfReplicas(replicas, able, options);
}

/**
 * Asks each replica's executor for its host pids, all at once; a replica whose executor fails or
 * takes longer than `timeoutMs` is left out this round (its processes then count as held outside
 * aiplat: the safe side, the card looks fuller). Only whole numbers > 0 are kept.
 */
export async function processIdsOfReplicas(replicas: readonly LiveReplica[], executors: readonly Executor[], options: ReplicaProcessIdsOptions = {}): Promise<Map<string, Set<number>>> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const byName = new Map(executors.map((e) => [e.name, e]));
  const pids = new Map<string, Set<number>>();
  await Promise.all(
    replicas.map(async (replica) => {
      const executor = byName.get(replica.executor);
      if (!executor?.processIds) return;
      let timer: NodeJS.Timeout | undefined;
      try {
        const answer = await Promise.race([
          executor.processIds(replica.handle),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
            timer.unref();
          }),
        ]);
        const set = pids.get(replica.nodeId) ?? new Set<number>();
        for (const pid of Array.isArray(answer) ? answer : []) if (Number.isSafeInteger(pid) && pid > 0) set.add(pid);
        pids.set(replica.nodeId, set);
      } catch (error) {
        options.logger?.debug({ executor: replica.executor, node: replica.nodeId, err: (error as Error).message }, "cannot tell a replica's host processes: its GPU memory counts as held outside aiplat this round");
      } finally {
        clearTimeout(timer);
      }
    }),
  );
  return pids;
}

/** The process group of a pid (field 5 of /proc/<pid>/stat), or undefined when it cannot be read. */
export function processGroup(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces: read after the last ")".
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[2]);
  } catch {
    return undefined;
  }
}

/** No process group is known (a process on another machine). */
const noGroup = (): undefined => undefined;

/**
 * Memory of a card used by processes aiplat did not start (a notebook, another scheduler's job):
 * the ledger treats it as taken, so work is not placed on a card that is already full (GPUStack's
 * #2852). A process is aiplat's when its pid is in `aiplatGroups` (a live local replica's process
 * group, or a container replica's host pid from `replicaProcessIds`) or it runs in one of those
 * process groups.
 */
export function foreignMemoryMiB(processes: NodeSample['devices'][number]['processes'], aiplatGroups: ReadonlySet<number>, groupOf: (pid: number) => number | undefined = processGroup): number {
  let sum = 0;
  for (const p of processes) {
    if (aiplatGroups.has(p.pid)) continue;
    const group = groupOf(p.pid);
    if (group !== undefined && aiplatGroups.has(group)) continue;
    sum += p.usedMemoryMiB ?? 0;
  }
  return Math.round(sum);
}

/**
 * Samples every card of this core's nodes on a timer: stores a time series (kept for
 * `retentionHours`), sets Prometheus gauges, records memory held by processes outside aiplat,
 * and calls the `devices.sampled` hook.
 */
export class GpuSampler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private lastPrune = 0;
  private readonly gauges: Record<'util' | 'used' | 'total' | 'temp' | 'power' | 'foreign', Gauge<string>> | undefined;

  constructor(private readonly options: SamplerOptions) {
    if (options.registry) {
      const labelNames = ['node', 'gpu', 'model', 'simulated'];
      const gauge = (name: string, help: string) => new Gauge({ name, help, labelNames, registers: [options.registry!] });
      this.gauges = {
        util: gauge('aiplat_gpu_utilization_ratio', 'GPU utilisation, 0–1'),
        used: gauge('aiplat_gpu_memory_used_bytes', 'GPU memory in use'),
        total: gauge('aiplat_gpu_memory_total_bytes', 'GPU memory'),
        temp: gauge('aiplat_gpu_temperature_celsius', 'GPU temperature'),
        power: gauge('aiplat_gpu_power_watts', 'GPU power draw'),
        foreign: gauge('aiplat_gpu_foreign_memory_bytes', 'GPU memory used by processes aiplat did not start'),
      };
    }
  }

  start(): void {
    const tick = () => {
      this.timer = setTimeout(() => {
        this.running = this.round().catch((error: Error) => this.options.logger.warn({ err: error.message }, 'GPU sampling failed'));
        void this.running.finally(tick);
      }, this.options.intervalSeconds * 1000);
      this.timer.unref();
    };
    this.running = this.round().catch((error: Error) => this.options.logger.warn({ err: error.message }, 'GPU sampling failed'));
    tick();
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  async round(): Promise<void> {
    const { db } = this.options;
    const own = this.options.nodes();
    const samples: NodeSample[] = [];
    for (const provider of this.options.providers()) {
      if (!provider.sample) continue;
      try {
        for (const node of await provider.sample()) if (own.has(node.nodeId)) samples.push(node);
      } catch (error) {
        this.options.logger.warn({ provider: provider.name, err: (error as Error).message }, 'a device provider could not sample its cards');
      }
    }
    if (samples.length === 0) return;
    const devices = (await db('gpu_devices as d')
      .join('nodes as n', 'n.id', 'd.node_id')
      .whereIn(
        'd.node_id',
        samples.map((s) => s.nodeId),
      )
      .where('d.present', true)
      .select('d.id', 'd.node_id', 'd.index', 'd.model', 'd.foreign_memory_mib', 'n.simulated', 'n.connector')) as {
      id: string;
      node_id: string;
      index: number;
      model: string;
      foreign_memory_mib: number;
      simulated: boolean;
      connector: string | null;
    }[];
    // Hosts added through the API are other machines: this machine's process groups say nothing there.
    const remote = new Set(devices.filter((d) => d.connector !== null).map((d) => d.node_id));
    const byKey = new Map(devices.map((d) => [`${d.node_id}/${d.index}`, d]));
    const groups = await this.aiplatGroups([...own]);
    // Containers' processes (host pids) are aiplat's too; simulated cards take nothing, so only real ones need asking.
    const containerPids =
      this.options.executors && devices.some((d) => !d.simulated)
        ? await replicaProcessIds(db, [...new Set(samples.map((s) => s.nodeId))], this.options.executors(), { logger: this.options.logger })
        : new Map<string, Set<number>>();
    const aiplatOn = (nodeId: string): ReadonlySet<number> => {
      const pids = containerPids.get(nodeId);
      if (remote.has(nodeId)) return pids ?? new Set<number>();
      return pids && pids.size > 0 ? new Set([...groups, ...pids]) : groups;
    };
    const at = new Date();
    const event: DevicesSampledEvent = { at: at.toISOString(), samples: [] };
    const rows: Record<string, unknown>[] = [];
    const foreignChanges: { id: string; mib: number }[] = [];
    for (const node of samples) {
      const aiplat = aiplatOn(node.nodeId);
      for (const sample of node.devices) {
        const device = byKey.get(`${node.nodeId}/${sample.index}`);
        if (!device) continue;
        rows.push({
          device_id: device.id,
          at,
          utilization_percent: sample.utilizationPercent,
          memory_used_mib: sample.memoryUsedMiB,
          memory_total_mib: sample.memoryTotalMiB,
          temperature_c: sample.temperatureC,
          power_w: sample.powerW,
          processes: JSON.stringify(sample.processes),
        });
        // Simulated cards' processes are part of a capture: they do not run here, so they take nothing.
        // Their recorded value is left as it is (0 unless a test sets it, to simulate memory held outside aiplat).
        const foreign = device.simulated ? device.foreign_memory_mib : foreignMemoryMiB(sample.processes, aiplat, remote.has(node.nodeId) ? noGroup : processGroup);
        if (foreign !== device.foreign_memory_mib) foreignChanges.push({ id: device.id, mib: foreign });
        event.samples.push({ ...sample, deviceId: device.id, nodeId: node.nodeId, model: device.model, simulated: device.simulated });
        if (this.gauges) {
          const labels = { node: node.nodeId, gpu: String(sample.index), model: device.model, simulated: String(device.simulated) };
          const MiB = 1024 * 1024;
          if (sample.utilizationPercent !== null) this.gauges.util.set(labels, sample.utilizationPercent / 100);
          if (sample.memoryUsedMiB !== null) this.gauges.used.set(labels, sample.memoryUsedMiB * MiB);
          this.gauges.total.set(labels, sample.memoryTotalMiB * MiB);
          if (sample.temperatureC !== null) this.gauges.temp.set(labels, sample.temperatureC);
          if (sample.powerW !== null) this.gauges.power.set(labels, sample.powerW);
          this.gauges.foreign.set(labels, foreign * MiB);
        }
      }
    }
    await db.transaction(async (trx) => {
      for (let i = 0; i < rows.length; i += 500) await trx('gpu_samples').insert(rows.slice(i, i + 500));
      for (const change of foreignChanges) await trx('gpu_devices').where({ id: change.id }).update({ foreign_memory_mib: change.mib });
    });
    if (Date.now() - this.lastPrune > 60_000) {
      this.lastPrune = Date.now();
      await db('gpu_samples').whereRaw(`at < now() - interval '${Number(this.options.retentionHours)} hours'`).delete();
    }
    if (this.options.hooks.isUsed(deviceHooks.sampled)) {
      await this.options.hooks.call(deviceHooks.sampled, event).catch((error: Error) => this.options.logger.warn({ err: error.message }, 'a devices.sampled tap failed'));
    }
  }

  /** Process groups of the live local replicas on this core's nodes (their pids lead their groups). */
  private async aiplatGroups(nodes: string[]): Promise<Set<number>> {
    const rows = (await this.options.db('workload_replicas')
      .whereIn('node_id', nodes)
      .whereIn('state', ['starting', 'running', 'ready'])
      .whereNotNull('handle')
      .select('handle')) as { handle: { pid?: unknown } }[];
    return new Set(rows.map((r) => r.handle.pid).filter((pid): pid is number => typeof pid === 'number' && pid > 0));
  }
}
