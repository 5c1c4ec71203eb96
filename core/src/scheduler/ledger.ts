import type { Knex } from 'knex';
import type { DiscoveredNode } from '@aiplat/plugin-sdk';
import type { DeviceState, NodeState } from './placement.js';

/**
 * The ledger's side of nodes and cards: what device providers discovered is written here (the
 * node's agent is this core instance), and the scheduler reads back a picture of the cluster with
 * every live reservation.
 */
export async function syncNodes(db: Knex, agent: string, provider: string, nodes: DiscoveredNode[]): Promise<void> {
  await db.transaction(async (trx) => {
    for (const node of nodes) {
      await trx('nodes')
        .insert({
          id: node.id,
          name: node.name,
          address: node.address,
          provider,
          agent,
          labels: JSON.stringify(node.labels ?? {}),
          executors: JSON.stringify(node.executors),
          simulated: node.simulated ?? false,
          cpu: node.cpu ?? null,
          memory_mib: node.memoryMiB ?? null,
          state: 'ready',
          seen_at: trx.fn.now(),
        })
        .onConflict('id')
        .merge({
          name: trx.raw('excluded.name'),
          address: trx.raw('excluded.address'),
          provider: trx.raw('excluded.provider'),
          agent: trx.raw('excluded.agent'),
          labels: trx.raw('excluded.labels'),
          executors: trx.raw('excluded.executors'),
          simulated: trx.raw('excluded.simulated'),
          cpu: trx.raw('excluded.cpu'),
          memory_mib: trx.raw('excluded.memory_mib'),
          // A node an administrator cordoned stays cordoned; an offline one is back.
          state: trx.raw("case when nodes.state = 'cordoned' then 'cordoned' else 'ready' end"),
          seen_at: trx.raw('excluded.seen_at'),
        });
      const rows = node.devices.map((d) => ({
        id: `${node.id}/${d.index}`,
        node_id: node.id,
        index: d.index,
        uuid: d.uuid,
        model: d.model,
        memory_mib: d.memoryMiB,
        details: JSON.stringify(d.details ?? {}),
        present: true,
        updated_at: trx.fn.now(),
      }));
      if (rows.length > 0) {
        for (let i = 0; i < rows.length; i += 500) {
          await trx('gpu_devices').insert(rows.slice(i, i + 500)).onConflict('id').merge(['uuid', 'model', 'memory_mib', 'details', 'present', 'updated_at']);
        }
      }
      await trx('gpu_devices')
        .where({ node_id: node.id })
        .whereNotIn(
          'id',
          rows.map((r) => r.id),
        )
        .update({ present: false, updated_at: trx.fn.now() });
    }
  });
}

/** Agents refresh their nodes' `seen_at` this often; a node silent for NODE_STALE_SECONDS gets no new work. */
export const NODE_HEARTBEAT_SECONDS = 15;
export const NODE_STALE_SECONDS = 120;

/** This agent is alive: its nodes were seen now. */
export async function heartbeat(db: Knex, agent: string): Promise<void> {
  await db('nodes').where({ agent, state: 'ready' }).update({ seen_at: db.fn.now() });
}

/** Nodes this agent registered earlier that no provider reports now go offline (their cards stay in the history). */
export async function markMissingNodes(db: Knex, agent: string, seen: string[]): Promise<void> {
  // Nodes added through the API are not discovered: their connector tells (connections.ts).
  await db('nodes').where({ agent }).whereNull('connector').whereNotIn('id', seen).whereNot({ state: 'removed' }).update({ state: 'offline' });
}

async function sequentially(queries: (() => Promise<unknown>)[]): Promise<unknown[]> {
  const out: unknown[] = [];
  for (const query of queries) out.push(await query());
  return out;
}

/** The cluster as placement sees it: ready nodes, present cards, and every live reservation. */
export async function loadCluster(
  db: Knex,
  options: { includeCordoned?: boolean } = {},
): Promise<{ nodes: NodeState[]; byId: Map<string, NodeState>; devices: Map<string, DeviceState> }> {
  // On a transaction (a submission) the queries must run one after another: one connection.
  const all = (db as { isTransaction?: boolean }).isTransaction ? sequentially : (qs: (() => Promise<unknown>)[]) => Promise.all(qs.map((q) => q()));
  const [nodeRows, deviceRows, reservations, cpuReplicas] = (await all([
    // A node whose agent (the core that registered it) has not been heard of for a while gets no new work.
    // With `includeCordoned` (may this ever run?): cordoned and silent nodes too, which may come back.
    () =>
      (options.includeCordoned
        ? db('nodes').whereIn('state', ['ready', 'cordoned'])
        : db('nodes').where({ state: 'ready' }).whereRaw(`seen_at > now() - interval '${NODE_STALE_SECONDS} seconds'`)
      )
        .orderBy('id')
        .select('id', 'address', 'executors', 'labels', 'user_labels', 'allowed_images'),
    () => db('gpu_devices').where({ present: true }).orderBy(['node_id', 'index']).select('id', 'node_id', 'index', 'uuid', 'model', 'memory_mib', 'foreign_memory_mib'),
    () => db('gpu_reservations').whereRaw('upper_inf(held)').select('device_id', db.raw('lower(memory) as lo'), db.raw('upper(memory) as hi')),
    () => db('workload_replicas')
      .whereIn('state', ['placed', 'starting', 'running', 'ready'])
      .whereRaw("devices = '[]'::jsonb")
      .groupBy('node_id')
      .select('node_id', db.raw('count(*)::int as n')),
  ])) as [unknown[], unknown[], unknown[], unknown[]];
  const byId = new Map<string, NodeState>();
  const nodes: NodeState[] = [];
  for (const n of nodeRows as { id: string; address: string; executors: string[]; labels: Record<string, string>; user_labels: Record<string, string>; allowed_images: string[] }[]) {
    // Administrators' labels win over discovered ones.
    const node: NodeState = { id: n.id, address: n.address, executors: n.executors, labels: { ...n.labels, ...n.user_labels }, allowedImages: n.allowed_images, devices: [], cpuReplicas: 0 };
    nodes.push(node);
    byId.set(n.id, node);
  }
  const devices = new Map<string, DeviceState>();
  for (const d of deviceRows as { id: string; node_id: string; index: number; uuid: string; model: string; memory_mib: number; foreign_memory_mib: number }[]) {
    const node = byId.get(d.node_id);
    if (!node) continue;
    const foreign = Math.min(d.memory_mib, Math.max(0, d.foreign_memory_mib));
    const device: DeviceState = { id: d.id, nodeId: d.node_id, index: d.index, uuid: d.uuid, model: d.model, memoryMiB: d.memory_mib, used: [], foreignMiB: foreign };
    // Memory held by processes outside aiplat is taken: the top of the card, so slices still fit below.
    if (foreign > 0) device.used.push([d.memory_mib - foreign, d.memory_mib]);
    node.devices.push(device);
    devices.set(d.id, device);
  }
  for (const r of reservations as { device_id: string; lo: number; hi: number }[]) devices.get(r.device_id)?.used.push([r.lo, r.hi]);
  for (const device of devices.values()) device.used.sort((a, b) => a[0] - b[0]);
  for (const c of cpuReplicas as { node_id: string; n: number }[]) {
    const node = byId.get(c.node_id);
    if (node) node.cpuReplicas = c.n;
  }
  return { nodes, byId, devices };
}
