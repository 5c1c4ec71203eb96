// GPU samples over time, Prometheus gauges and memory held outside aiplat. The GPUs are SIMULATED:
// a fake nvidia-smi replays a real capture (8× Tesla V100S), through the same exec-and-parse path.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { submit } from './helpers.js';
import { waitFor, waitForState } from './wait.js';

describe('GPU metrics', () => {
  let core: TestCore;

  beforeAll(async () => {
    core = await startTestCore({ config: { simulatedGpus: 'v100s-8', simulatedNodes: 1, nodeId: 'test-node', stopGrace: 1, gpuSampleSeconds: 1 } });
  });
  afterAll(() => core?.stop());

  it('keeps a time series per card, from the capture', async () => {
    let body: any;
    await waitFor(async () => {
      body = (await core.client.get('/api/v1/nodes/sim-001/gpus/0/metrics')).body;
      return body.points?.length >= 2;
    }, 20_000, 'two samples');
    expect(body).toMatchObject({ deviceId: 'sim-001/0', model: 'Tesla V100S-PCIE-32GB', memoryMiB: 32510 });
    expect(body.points[0]).toMatchObject({ temperatureC: 66, powerW: 232.8, utilizationPercent: expect.any(Number), memoryUsedMiB: expect.any(Number) });
    expect((await core.client.get('/api/v1/nodes/sim-001/gpus/99/metrics')).status).toBe(404);
    expect((await core.client.get('/api/v1/nodes/sim-001/gpus/0/metrics?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z')).status).toBe(400);
  });

  it('exposes Prometheus gauges for every card, simulated ones labelled', async () => {
    const text = await (await fetch(`${core.url}/metrics`)).text();
    expect(text).toMatch(/aiplat_gpu_temperature_celsius\{node="sim-001",gpu="0",model="Tesla V100S-PCIE-32GB",simulated="true"\} 66/);
    expect(text).toMatch(/aiplat_gpu_memory_total_bytes\{node="sim-001",gpu="7",[^}]*} 34089205760/);
    // The capture's processes do not run here: they take nothing.
    expect(text).toMatch(/aiplat_gpu_foreign_memory_bytes\{node="sim-001",gpu="0",[^}]*\} 0/);
  });

  it('counts memory held outside aiplat as taken: whole cards wait, slices fit below it', async () => {
    // As the sampler records for a real card with someone else's process on it.
    await core.core.database.knex('gpu_devices').where('node_id', 'sim-001').update({ foreign_memory_mib: 20000 });
    const nodes = await core.client.get('/api/v1/nodes');
    const card = nodes.body.items.find((n: { id: string }) => n.id === 'sim-001').gpus[0];
    expect(card).toMatchObject({ foreignMiB: 20000, reservedMiB: 0, free: false });
    const whole = await submit(core.client, { name: 'whole', command: ['true'], resources: { gpus: 1 } });
    const slice = await submit(core.client, { name: 'slice', command: ['true'], resources: { gpuMemoryMiB: 12000 } });
    expect((await waitForState(core.client, slice.id, ['succeeded'])).placements[0].devices[0].memoryMiB).toBe(12000);
    await waitFor(async () => /waiting for 1 free GPU/.test((await core.client.get(`/api/v1/workloads/${whole.id}`)).body.reason ?? ''), 10_000, 'the whole-card job to say why it waits');
    await core.core.database.knex('gpu_devices').where('node_id', 'sim-001').update({ foreign_memory_mib: 0 });
    core.core.scheduler.scheduler.nudge();
    expect((await waitForState(core.client, whole.id, ['succeeded'])).state).toBe('succeeded');
  });
});
