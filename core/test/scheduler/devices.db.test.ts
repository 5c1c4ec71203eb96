// `devices.sampled` heard by a plugin (core/test/fixtures/devices-sampled), and the memory of a
// container executor's replicas (Executor.processIds) not counted as held outside aiplat. Real core,
// real database, real sampler; the GPUs are SIMULATED (a fake nvidia-smi replays a real 8× V100S
// capture) and the container executor and its node are TEST DOUBLES from the fixture: no GPU and
// no container engine run here.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestCore } from '@aiplat/testing';
import type { DeviceProvider, Logger } from '@aiplat/plugin-sdk';
import { GpuSampler, replicaProcessIds, type SamplerOptions } from '../../src/scheduler/sampler.js';
import os from 'node:os';
import { nodeCommand, submit } from './helpers.js';
import { waitFor, waitForState } from './wait.js';

const PLUGIN = '/api/plugins/devices-sampled';
/** The double's replica 0 "runs" as these host pids (above pid_max: never real). */
const DOUBLE_PIDS = [5_000_001, 5_000_002];

interface Rounds {
  rounds: number;
  thrown: number;
  last: { at: string; samples: Record<string, any>[] } | null;
}

describe('devices.sampled from a plugin, and container replicas’ memory', () => {
  let core: TestCore;
  const rounds = async (): Promise<Rounds> => (await core.client.get(`${PLUGIN}/rounds`)).body;

  beforeAll(async () => {
    core = await startTestCore({
      plugins: ['core/test/fixtures/devices-sampled'],
      config: { simulatedGpus: 'v100s-8', simulatedNodes: 2, nodeId: 'test-node', stopGrace: 1, gpuSampleSeconds: 1 },
    });
  });
  afterAll(() => core?.stop());

  it('hears every simulated card in every round, with its device, node, model and simulated=true', async () => {
    await waitFor(async () => (await rounds()).rounds >= 2, 20_000, 'two sampling rounds');
    const { last } = await rounds();
    expect(Date.parse(last!.at)).toBeGreaterThan(Date.now() - 60_000);
    const simulated = last!.samples.filter((s) => String(s.nodeId).startsWith('sim-'));
    const cards = (await core.core.database.knex('gpu_devices').whereIn('node_id', ['sim-001', 'sim-002']).where('present', true).orderBy(['node_id', 'index']).select('id', 'node_id', 'index')) as {
      id: string;
      node_id: string;
      index: number;
    }[];
    expect(cards).toHaveLength(16);
    // Every card exactly once, in the ledger's terms.
    expect(simulated.map((s) => [s.deviceId, s.nodeId, s.index]).sort()).toEqual(cards.map((c) => [c.id, c.node_id, c.index]).sort());
    for (const sample of simulated) {
      expect(sample).toMatchObject({ model: 'Tesla V100S-PCIE-32GB', simulated: true, memoryTotalMiB: 32510 });
    }
    // The capture's readings and processes (datakit/gtx-8card.xml, card 0).
    expect(simulated.find((s) => s.deviceId === 'sim-002/0')).toMatchObject({
      temperatureC: 66,
      powerW: 232.8,
      utilizationPercent: 97,
      memoryUsedMiB: 31689,
      processes: [{ pid: 37305, name: 'python', usedMemoryMiB: 31683 }],
    });
    // The double's node has no sample(): it is not in the rounds.
    expect(last!.samples.some((s) => s.nodeId === 'double-001')).toBe(false);
  });

  it('keeps sampling when a tap throws: rounds go on, samples are stored, the failure is logged', async () => {
    const before = await rounds();
    const stored = async () => Number(((await core.core.database.knex('gpu_samples').count({ n: '*' }).first()) as { n: string | number }).n);
    const storedBefore = await stored();
    expect((await core.client.post(`${PLUGIN}/throwing`, { on: true })).body).toEqual({ throwing: true });
    try {
      await waitFor(async () => {
        const now = await rounds();
        return now.thrown >= 3 && now.rounds >= before.rounds + 3;
      }, 20_000, 'three rounds with a throwing tap');
      // Three more rounds of 16 cards at least were stored while it threw.
      expect(await stored()).toBeGreaterThanOrEqual(storedBefore + 3 * 16);
      const failures = core.logs.filter((l) => l.msg === 'a devices.sampled tap failed');
      expect(failures.length).toBeGreaterThanOrEqual(3);
      expect(failures[0]).toMatchObject({ err: 'devices-sampled fixture: this tap throws on purpose' });
      expect(core.logs.some((l) => l.msg === 'GPU sampling failed')).toBe(false);
    } finally {
      await core.client.post(`${PLUGIN}/throwing`, { on: false });
    }
    const stopped = (await rounds()).thrown;
    const at = (await rounds()).rounds;
    await waitFor(async () => (await rounds()).rounds >= at + 2, 20_000, 'two more rounds');
    expect((await rounds()).thrown).toBe(stopped);
  });

  it("does not count a container replica's processes (its executor's processIds) as memory held outside aiplat", async () => {
    const knex = core.core.database.knex;
    const job = await submit(core.client, { name: 'in-a-container', command: ['serve'], executor: 'container-double', resources: { gpus: 1 } });
    const running = await waitForState(core.client, job.id, ['running']);
    expect(running.placements[0]).toMatchObject({ nodeId: 'double-001' });

    const executors = () => core.core.scheduler.executors();
    const pids = await replicaProcessIds(knex, ['double-001', 'sim-001', 'test-node'], executors());
    expect(pids).toEqual(new Map([['double-001', new Set(DOUBLE_PIDS)]]));

    // A sampling round of the double's card as a real nvidia-smi would report it: the container's two
    // processes (host pids) and someone else's notebook.
    const card: DeviceProvider = {
      name: 'double-card',
      discover: async () => [],
      sample: async () => [
        {
          nodeId: 'double-001',
          devices: [
            {
              index: 0,
              utilizationPercent: 90,
              memoryUsedMiB: 24700,
              memoryTotalMiB: 81559,
              temperatureC: 60,
              powerW: 300,
              processes: [
                { pid: DOUBLE_PIDS[0]!, name: 'python', usedMemoryMiB: 20000 },
                { pid: DOUBLE_PIDS[1]!, name: 'python', usedMemoryMiB: 4000 },
                { pid: 5_999_999, name: 'jupyter', usedMemoryMiB: 700 },
              ],
            },
          ],
        },
      ],
    };
    const foreign = async () => ((await knex('gpu_devices').where({ node_id: 'double-001', index: 0 }).first('foreign_memory_mib')) as { foreign_memory_mib: number }).foreign_memory_mib;
    const sampler = (withExecutors: boolean) =>
      new GpuSampler({
        db: knex,
        logger: core.core.logger as unknown as Logger,
        hooks: { isUsed: () => false } as unknown as SamplerOptions['hooks'],
        providers: () => [card],
        nodes: () => new Set(['double-001']),
        registry: undefined,
        intervalSeconds: 3600,
        retentionHours: 168,
        ...(withExecutors ? { executors } : {}),
      });

    // Without the executors, the container's memory is counted twice: reserved, and held outside aiplat.
    await sampler(false).round();
    expect(await foreign()).toBe(24700);
    // With them, only the notebook's.
    await sampler(true).round();
    expect(await foreign()).toBe(700);
    const nodes = await core.client.get('/api/v1/nodes');
    expect(nodes.body.items.find((n: { id: string }) => n.id === 'double-001').gpus[0]).toMatchObject({ foreignMiB: 700 });

    // Once the replica is gone, its pids are nobody's.
    expect((await core.client.post(`/api/v1/workloads/${job.id}/cancel`)).status).toBe(200);
    await waitForState(core.client, job.id, ['cancelled']);
    expect(await replicaProcessIds(knex, ['double-001'], executors())).toEqual(new Map());
  });

  it('does not read this machine’s process groups for a card on a host added through the API', async () => {
    const knex = core.core.database.knex;
    // A local replica on this machine: its pid leads a process group the sampler counts as aiplat's here.
    const local = await submit(core.client, { name: 'local-sleeper', command: nodeCommand('setTimeout(() => {}, 60000)'), nodeSelector: { 'aiplat.io/hostname': os.hostname() } });
    await waitForState(core.client, local.id, ['running']);
    const pid = ((await knex('workload_replicas').where({ workload_id: local.id }).first('handle')) as { handle: { pid: number } }).handle.pid;
    expect(pid).toBeGreaterThan(0);
    // The double's node stands for another machine (a host added through the API), whose card reports
    // a process that happens to have the same pid: it is someone else's there.
    await knex('nodes').where({ id: 'double-001' }).update({ connector: 'test-double' });
    const card: DeviceProvider = {
      name: 'remote-card',
      discover: async () => [],
      sample: async () => [
        { nodeId: 'double-001', devices: [{ index: 0, utilizationPercent: 5, memoryUsedMiB: 512, memoryTotalMiB: 81559, temperatureC: 40, powerW: 60, processes: [{ pid, name: 'other', usedMemoryMiB: 512 }] }] },
      ],
    };
    try {
      await new GpuSampler({
        db: knex,
        logger: core.core.logger as unknown as Logger,
        hooks: { isUsed: () => false } as unknown as SamplerOptions['hooks'],
        providers: () => [card],
        nodes: () => new Set(['double-001', 'test-node']),
        registry: undefined,
        intervalSeconds: 3600,
        retentionHours: 168,
      }).round();
      expect(((await knex('gpu_devices').where({ node_id: 'double-001', index: 0 }).first('foreign_memory_mib')) as { foreign_memory_mib: number }).foreign_memory_mib).toBe(512);
    } finally {
      await knex('nodes').where({ id: 'double-001' }).update({ connector: null });
      await core.client.post(`/api/v1/workloads/${local.id}/cancel`);
    }
  });
});
