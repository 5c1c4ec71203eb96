// A MIG instance is schedulable as its own device, and the job is told its UUID (CUDA takes MIG
// instances by UUID only). The GPUs are SIMULATED: a fake nvidia-smi replays a real A100 capture in
// MIG mode (4 instances) with a `nvidia-smi -L` written from NVIDIA's documented format.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { logText, nodeCommand, submit } from './helpers.js';
import { waitForState } from './wait.js';

describe('MIG instances', () => {
  let core: TestCore;

  beforeAll(async () => {
    core = await startTestCore({ config: { simulatedGpus: 'a100-mig', simulatedNodes: 1, nodeId: 'test-node', stopGrace: 1 } });
  });
  afterAll(() => core?.stop());

  it('gives a job one MIG instance, named by its MIG UUID in CUDA_VISIBLE_DEVICES', async () => {
    const nodes = (await core.client.get('/api/v1/nodes')).body.items as { id: string; gpus: { index: number; uuid: string; memoryMiB: number }[] }[];
    const sim = nodes.find((n) => n.id === 'sim-001')!;
    expect(sim.gpus).toHaveLength(4);
    for (const gpu of sim.gpus) expect(gpu.uuid).toMatch(/^MIG-/);

    const w = await submit(core.client, { name: 'on-mig', command: nodeCommand('console.log(process.env.CUDA_VISIBLE_DEVICES)'), resources: { gpus: 1 } });
    const done = await waitForState(core.client, w.id, ['succeeded', 'failed']);
    expect(done.state).toBe('succeeded');
    const index = done.placements[0].devices[0].index as number;
    const uuid = sim.gpus.find((g) => g.index === index)!.uuid;
    expect(await logText(core.client, w.id)).toBe(`${uuid}\n`);
  });
});
