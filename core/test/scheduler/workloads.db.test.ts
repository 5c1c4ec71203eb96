// The scheduler end to end on a real core: submit over the API, place on simulated GPUs (a fake
// nvidia-smi replaying a real capture: SIMULATED, no GPU here), run with the local executor, store
// logs and metrics, record every transition.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { waitFor, waitForState } from './wait.js';

const node = process.execPath;

describe('workloads on simulated GPUs', () => {
  let core: TestCore;

  beforeAll(async () => {
    core = await startTestCore({ config: { simulatedGpus: 'v100s-8', simulatedNodes: 2, nodeId: 'test-node', stopGrace: 1 } });
  });
  afterAll(() => core?.stop());

  it('lists the simulated nodes with their GPUs, labelled simulated', async () => {
    const res = await core.client.get('/api/v1/nodes');
    expect(res.status).toBe(200);
    const sim = res.body.items.filter((n: { simulated: boolean }) => n.simulated);
    expect(sim.map((n: { id: string }) => n.id)).toEqual(['sim-001', 'sim-002']);
    expect(sim[0].gpus).toHaveLength(8);
    expect(sim[0].gpus[0].model).toBe('Tesla V100S-PCIE-32GB');
    expect(sim[0].gpus[0].memoryMiB).toBe(32510);
    const local = res.body.items.find((n: { id: string }) => n.id === 'test-node');
    expect(local.simulated).toBe(false);
  });

  it('puts the bootstrap administrator in the default team (where their workloads go by default)', async () => {
    const me = await core.client.get('/api/v1/me');
    expect(me.body.defaultTeam).toBe('default');
    expect(me.body.teams.map((t: { id: string }) => t.id)).toEqual(['default']);
  });

  it('runs a job to completion with its logs, metrics, env and events', async () => {
    const script = `
      console.log('visible=' + process.env.CUDA_VISIBLE_DEVICES + ' rank=' + process.env.RANK + ' world=' + process.env.WORLD_SIZE);
      for (let step = 1; step <= 3; step++) console.log(JSON.stringify({ type: 'metric', step, loss: 3 - step / 2 }));
      console.error('to stderr');
    `;
    const res = await core.client.post('/api/v1/workloads', { name: 'train', command: [node, '-e', script], resources: { gpus: 2 } });
    expect(res.status).toBe(201);
    expect(res.body.state).toBe('pending');
    expect(res.body.team).toBe('default');
    const done = await waitForState(core.client, res.body.id, ['succeeded', 'failed']);
    expect(done.state).toBe('succeeded');
    expect(done.exitCode).toBe(0);
    expect(done.placements[0].devices).toHaveLength(2);
    const logs = await core.client.get(`/api/v1/workloads/${res.body.id}/logs`);
    const text = logs.body.items.map((i: { text: string }) => i.text).join('');
    expect(text).toContain('visible=0,1 rank=0 world=1');
    expect(text).toContain('to stderr');
    const metrics = await core.client.get(`/api/v1/workloads/${res.body.id}/metrics`);
    expect(metrics.body.series).toEqual([{ name: 'loss', points: [expect.objectContaining({ step: 1, value: 2.5 }), expect.objectContaining({ step: 2, value: 2 }), expect.objectContaining({ step: 3, value: 1.5 })] }]);
    const events = await core.client.get(`/api/v1/workloads/${res.body.id}/events`);
    expect(events.body.items.map((e: { to: string }) => e.to)).toEqual(['pending', 'scheduled', 'running', 'succeeded']);
    const reservations = await core.client.get(`/api/v1/gpus/reservations?history=true&workload=${res.body.id}`);
    expect(reservations.body.items).toHaveLength(2);
    expect(reservations.body.items.every((r: { until: string | null }) => r.until !== null)).toBe(true);
  });

  it('passes shell syntax as plain arguments', async () => {
    const res = await core.client.post('/api/v1/workloads', { name: 'argv', command: ['/bin/echo', '$(whoami)', ';', '`id`', '&&', 'rm -rf /'] });
    const done = await waitForState(core.client, res.body.id, ['succeeded', 'failed']);
    expect(done.state).toBe('succeeded');
    const logs = await core.client.get(`/api/v1/workloads/${res.body.id}/logs`);
    expect(logs.body.items.map((i: { text: string }) => i.text).join('')).toBe('$(whoami) ; `id` && rm -rf /\n');
  });

  it('refuses what can never run, with the reason', async () => {
    const cases: [Record<string, unknown>, number, RegExp][] = [
      [{ name: 'big', command: ['true'], resources: { gpus: 9 } }, 422, /no node has more than 8/],
      [{ name: 'neg', command: ['true'], resources: { gpuMemoryMiB: -5 } }, 400, /gpuMemoryMiB/],
      [{ name: 'exe', command: ['true'], executor: 'nope' }, 422, /no executor "nope"/],
      [{ name: 'team', command: ['true'], team: 'ghosts' }, 422, /no team "ghosts"/],
      [{ name: 'prio', command: ['true'], priority: 'urgent' }, 422, /no priority class "urgent"/],
      [{ name: 'slice', command: ['true'], resources: { gpuMemoryMiB: 40000 } }, 422, /largest GPU has 32510 MiB/],
      [{ name: 'argv', command: 'rm -rf /' }, 400, /command/],
    ];
    for (const [body, status, message] of cases) {
      const res = await core.client.post('/api/v1/workloads', body);
      expect(res.status, JSON.stringify(body)).toBe(status);
      expect(res.body.error.message).toMatch(message);
    }
    const list = await core.client.get('/api/v1/workloads?limit=500');
    expect(list.body.items.map((w: { name: string }) => w.name)).not.toContain('big');
  });

  it('cancels a running job: SIGTERM first, then the state is cancelled and the cards are free', async () => {
    const script = `process.on('SIGTERM', () => { console.log('saving checkpoint'); process.exit(0); }); console.log('up'); setInterval(() => {}, 1000);`;
    const res = await core.client.post('/api/v1/workloads', { name: 'long', command: [node, '-e', script], resources: { gpus: 8 } });
    await waitForState(core.client, res.body.id, ['running']);
    await waitFor(async () => (await core.client.get(`/api/v1/workloads/${res.body.id}/logs`)).body.items.length > 0);
    const cancel = await core.client.post(`/api/v1/workloads/${res.body.id}/cancel`);
    expect(cancel.status).toBe(200);
    const done = await waitForState(core.client, res.body.id, ['cancelled', 'failed', 'succeeded']);
    expect(done.state).toBe('cancelled');
    const logs = await core.client.get(`/api/v1/workloads/${res.body.id}/logs`);
    expect(logs.body.items.map((i: { text: string }) => i.text).join('')).toContain('saving checkpoint');
    const live = await core.client.get(`/api/v1/gpus/reservations?workload=${res.body.id}`);
    expect(live.body.items).toHaveLength(0);
    const again = await core.client.post(`/api/v1/workloads/${res.body.id}/cancel`);
    expect(again.status).toBe(409);
  });

  it('lets an administrator manage priority classes, and refuses removing one in use', async () => {
    const put = await core.client.put('/api/v1/priority-classes/research', { value: 50, preemptible: true, description: 'experiments' });
    expect(put.status).toBe(200);
    const list = await core.client.get('/api/v1/priority-classes');
    expect(list.body.items.map((c: { name: string }) => c.name)).toEqual(['high', 'normal', 'research', 'low']);
    const bad = await core.client.put('/api/v1/priority-classes/research', { value: 'ten' });
    expect(bad.status).toBe(400);
    const operator = await core.createUser('pat', ['operator']);
    expect((await operator.client.put('/api/v1/priority-classes/mine', { value: 1 })).status).toBe(403);
    const job = await operator.client.post('/api/v1/workloads', { name: 'wait', command: ['sleep', '30'], priority: 'research', resources: { gpus: 8 }, nodeSelector: { nothing: 'matches' } });
    expect(job.status).toBe(422);
    const held = await operator.client.post('/api/v1/workloads', { name: 'held', command: ['sleep', '30'], priority: 'research' });
    expect(held.status).toBe(201);
    const del = await core.client.delete('/api/v1/priority-classes/research');
    expect(del.status).toBe(409);
    expect(del.body.error.message).toBe('1 unfinished workload(s) use the class "research"');
    await operator.client.post(`/api/v1/workloads/${held.body.id}/cancel`);
    await waitForState(core.client, held.body.id, ['cancelled']);
    expect((await core.client.delete('/api/v1/priority-classes/research')).status).toBe(204);
    expect((await core.client.delete('/api/v1/priority-classes/normal')).status).toBe(409);
  });

  it('records that a quick job ran, even when it ends before its start is written', async () => {
    const ids = await Promise.all(
      Array.from({ length: 12 }, async (_, i) => (await core.client.post('/api/v1/workloads', { name: `blink-${i}`, command: ['true'], resources: { gpuMemoryMiB: 1000 } })).body.id as string),
    );
    for (const id of ids) {
      const done = await waitForState(core.client, id, ['succeeded', 'failed']);
      expect(done.state).toBe('succeeded');
      expect(done.startedAt).not.toBeNull();
      const events = await core.client.get(`/api/v1/workloads/${id}/events`);
      expect(events.body.items.map((e: { to: string }) => e.to)).toEqual(['pending', 'scheduled', 'running', 'succeeded']);
    }
  });

  it('never starts a replica twice when the agent re-reads its replicas while starts are under way (as after a plugin change)', async () => {
    let recovering = true;
    const loop = (async () => {
      while (recovering) {
        await core.core.scheduler.agent.recover();
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    try {
      const ids = await Promise.all(
        Array.from({ length: 10 }, async (_, i) => (await core.client.post('/api/v1/workloads', { name: `race-${i}`, command: ['true'], resources: { gpuMemoryMiB: 500 } })).body.id as string),
      );
      for (const id of ids) {
        const done = await waitForState(core.client, id, ['succeeded', 'failed', 'lost']);
        expect(done.state, done.reason).toBe('succeeded');
      }
    } finally {
      recovering = false;
      await loop;
    }
  });
});
