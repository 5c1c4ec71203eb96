// Preemption end to end: higher-priority work stops preemptible lower-priority work to get its
// cards; the victims get SIGTERM (time to save a checkpoint), release every card, go back to the
// queue, and run again once there is room. Real core, real database, real processes; the GPUs are
// SIMULATED (a fake nvidia-smi replays a real 8× V100S capture; there is no GPU here).
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { events, liveReservations, logChunks, logText, nodeCommand, scratchDir, submit, waitForFileJs } from './helpers.js';
import { waitFor, waitForState } from './wait.js';

const cluster = { simulatedGpus: 'v100s-8', simulatedNodes: 2, nodeId: 'test-node', stopGrace: 1 };

/** A training replica: says it is up, and saves a checkpoint when told to stop. */
const TRAINER = nodeCommand(
  "const { RANK, AIPLAT_EPOCH } = process.env; process.on('SIGTERM', () => { console.log('rank ' + RANK + ' saving checkpoint'); process.exit(0); }); console.log('rank ' + RANK + ' up in epoch ' + AIPLAT_EPOCH); setInterval(() => {}, 1000);",
);

async function reasonOf(core: TestCore, id: string): Promise<string> {
  return (await core.client.get(`/api/v1/workloads/${id}`)).body.reason ?? '';
}

describe('preemption on simulated GPUs', () => {
  const scratch = scratchDir();
  let on: TestCore;
  let off: TestCore;

  beforeAll(async () => {
    [on, off] = await Promise.all([
      // A long grace period: victims that take their time to save a checkpoint are heard out.
      startTestCore({ config: { ...cluster, schedulerPreemption: true, stopGrace: 30 } }),
      startTestCore({ config: { ...cluster, schedulerPreemption: false } }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([on?.stop(), off?.stop()]);
    scratch.remove();
  });

  it('stops a low-priority gang for a high-priority job, then places the gang again', async () => {
    const low = (await submit(on.client, { name: 'low-gang', command: TRAINER, priority: 'low', replicas: 2, resources: { gpus: 8 } })).id;
    await waitForState(on.client, low, ['running']);
    await waitFor(async () => (await logText(on.client, low)).split('\n').filter((l) => l.includes(' up in epoch')).length === 2, 30_000, 'both replicas up');
    const firstEpoch = (await on.client.get(`/api/v1/workloads/${low}`)).body.epoch;

    const release = scratch.file('release-high');
    const high = (
      await submit(on.client, {
        name: 'urgent',
        command: nodeCommand(`console.log('high running'); ${waitForFileJs(release, "console.log('high done');")}`),
        priority: 'high',
        resources: { gpus: 8 },
      })
    ).id;
    await waitForState(on.client, high, ['running'], 45_000);

    // The gang was stopped as a whole, politely, and holds no card. (The high job may start as soon
    // as the first replica's cards are free: wait for the whole gang to be back in the queue.)
    const preempted = await waitForState(on.client, low, ['pending'], 45_000);
    expect(preempted.state).toBe('pending');
    expect(preempted.placements).toEqual([]);
    expect(await liveReservations(on.client, low)).toEqual([]);
    const text = await logText(on.client, low);
    expect(text).toContain('rank 0 saving checkpoint');
    expect(text).toContain('rank 1 saving checkpoint');
    const history = await on.client.get(`/api/v1/gpus/reservations?history=true&workload=${low}&limit=1000`);
    expect(history.body.items).toHaveLength(16);
    expect(history.body.items.every((r: { until: string | null; releasedReason: string }) => r.until !== null && r.releasedReason === 'exited 0')).toBe(true);

    const lowEvents = await events(on.client, low);
    expect(lowEvents.find((e) => e.from === e.to && e.reason?.startsWith('preempted by'))?.reason).toBe(`preempted by urgent (${high}, priority high)`);
    const back = lowEvents.filter((e) => e.from !== e.to && e.to === 'pending').at(-1)!;
    expect(back.from).toBe('running');
    expect(back.reason).toBe(`preempted by urgent (${high}, priority high), 1 preemption so far; back in the queue`);
    // While the high job runs, the gang waits for cards (and says so).
    await waitFor(async () => /^waiting for 8 free GPUs on one node/.test(await reasonOf(on, low)), 30_000, 'the gang to wait for cards');

    // The high job ends: the gang is placed again (a new epoch) and runs.
    writeFileSync(release, '');
    expect((await waitForState(on.client, high, ['succeeded', 'failed'])).state).toBe('succeeded');
    const again = await waitForState(on.client, low, ['running'], 45_000);
    expect(again.epoch).toBeGreaterThan(firstEpoch);
    expect(again.placements).toHaveLength(2);
    await waitFor(async () => (await logChunks(on.client, low)).filter((c) => c.epoch === again.epoch && c.text.includes('up in epoch')).length === 2, 30_000, 'both replicas up again');
    expect((await liveReservations(on.client, low)).length).toBe(16);
    expect(
      (await events(on.client, low))
        .filter((e) => e.from !== e.to)
        .map((e) => e.to),
    ).toEqual(['pending', 'scheduled', 'running', 'pending', 'scheduled', 'running']);

    expect((await on.client.post(`/api/v1/workloads/${low}/cancel`)).status).toBe(200);
    expect((await waitForState(on.client, low, ['cancelled', 'failed', 'succeeded'])).state).toBe('cancelled');
  });

  it('says the preemptor waits for its victims while they save their checkpoints', async () => {
    const saved = scratch.file('saved');
    const slowSaver = nodeCommand(
      `process.on('SIGTERM', () => { console.log('checkpointing'); ${waitForFileJs(saved, 'process.exit(0);')} }); console.log('up'); setInterval(() => {}, 1000);`,
    );
    const low = (await submit(on.client, { name: 'slow-saver', command: slowSaver, priority: 'low', replicas: 2, resources: { gpus: 8 } })).id;
    await waitForState(on.client, low, ['running']);
    await waitFor(async () => (await logText(on.client, low)) === 'up\nup\n', 30_000, 'both replicas up');
    const high = (await submit(on.client, { name: 'impatient', command: nodeCommand("console.log('ran')"), priority: 'high', resources: { gpus: 8 } })).id;
    await waitFor(async () => (await logText(on.client, low)).split('checkpointing').length === 3, 30_000, 'both replicas to checkpoint');

    // Passes come and go while the victims save: the reason stays the true one.
    for (let i = 0; i < 3; i++) {
      on.core.scheduler.scheduler.nudge();
      await on.core.scheduler.scheduler.idle();
    }
    const waiting = (await on.client.get(`/api/v1/workloads/${high}`)).body;
    expect(waiting.state).toBe('pending');
    expect(waiting.reason).toBe('waiting for 1 lower-priority workload to stop (preempted)');

    writeFileSync(saved, '');
    expect((await waitForState(on.client, high, ['succeeded', 'failed'])).state).toBe('succeeded');
    await waitForState(on.client, low, ['running'], 45_000);
    await on.client.post(`/api/v1/workloads/${low}/cancel`);
    expect((await waitForState(on.client, low, ['cancelled', 'failed', 'succeeded'])).state).toBe('cancelled');
  });

  it('does not preempt for a job its team quota would hold back anyway', async () => {
    const capped = (await on.client.post('/api/v1/teams', { name: 'capped' })).body.id;
    expect((await on.client.put(`/api/v1/teams/${capped}/quota`, { gpus: 8, gpuHours: null })).status).toBe(200);
    // The cluster is full: 4 cards of the capped team, 12 of low-priority work of the default team.
    const own = (await submit(on.client, { name: 'capped-4', team: capped, command: TRAINER, resources: { gpus: 4 } })).id;
    const low8 = (await submit(on.client, { name: 'low-8', command: TRAINER, priority: 'low', resources: { gpus: 8 } })).id;
    const low4 = (await submit(on.client, { name: 'low-4', command: TRAINER, priority: 'low', resources: { gpus: 4 } })).id;
    for (const id of [own, low8, low4]) await waitForState(on.client, id, ['running']);

    // 4 in use + 8 asked > 8 allowed: stopping low-priority work would not let it run.
    const high = (await submit(on.client, { name: 'capped-8', team: capped, command: TRAINER, priority: 'high', resources: { gpus: 8 } })).id;
    await waitFor(async () => (await reasonOf(on, high)).startsWith('waiting for'), 30_000, 'the high job to wait with its reason');
    for (let i = 0; i < 3; i++) {
      on.core.scheduler.scheduler.nudge();
      await on.core.scheduler.scheduler.idle();
    }
    expect(await reasonOf(on, high)).toBe('waiting for team quota: 4 of 8 GPUs in use, this needs 8 more');
    for (const id of [low8, low4]) {
      expect((await on.client.get(`/api/v1/workloads/${id}`)).body.state).toBe('running');
      expect((await events(on.client, id)).some((e) => e.reason?.includes('preempt'))).toBe(false);
    }
    for (const id of [own, low8, low4, high]) await on.client.post(`/api/v1/workloads/${id}/cancel`);
    for (const id of [own, low8, low4, high]) await waitForState(on.client, id, ['cancelled']);
  });

  it('with preemption off, the high-priority job waits with the reason and the low gang keeps running', async () => {
    const low = (await submit(off.client, { name: 'low-gang', command: TRAINER, priority: 'low', replicas: 2, resources: { gpus: 8 } })).id;
    await waitForState(off.client, low, ['running']);
    const high = (await submit(off.client, { name: 'urgent', command: nodeCommand("console.log('high')"), priority: 'high', resources: { gpus: 8 } })).id;
    await waitFor(async () => (await reasonOf(off, high)).startsWith('waiting for'), 30_000, 'the high job to wait with its reason');
    // The pass that wrote the reason is the one that would have preempted: let it finish.
    await off.core.scheduler.scheduler.idle();
    const waiting = (await off.client.get(`/api/v1/workloads/${high}`)).body;
    expect(waiting.state).toBe('pending');
    expect(waiting.reason).toBe('waiting for 8 free GPUs on one node (0 free in all, at most 0 on one node)');
    expect((await off.client.get(`/api/v1/workloads/${low}`)).body.state).toBe('running');
    expect((await events(off.client, low)).some((e) => e.reason?.includes('preempt'))).toBe(false);
    expect((await liveReservations(off.client, low)).length).toBe(16);

    expect((await off.client.post(`/api/v1/workloads/${low}/cancel`)).status).toBe(200);
    expect((await waitForState(off.client, low, ['cancelled'])).state).toBe('cancelled');
    expect((await waitForState(off.client, high, ['succeeded', 'failed'])).state).toBe('succeeded');
  });
});
