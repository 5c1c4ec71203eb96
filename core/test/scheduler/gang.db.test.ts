// Gang scheduling end to end: a multi-replica job is placed all together or not at all, its
// replicas see one rendezvous (WORLD_SIZE, RANK, MASTER_ADDR, MASTER_PORT), and one failed
// replica stops the rest. Real core, real database, real processes; the GPUs are SIMULATED (a fake
// nvidia-smi replays a real 8× V100S capture on every simulated node; there is no GPU here).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestCore } from '@aiplat/testing';
import { CoreLifecycle, events, logChunks, nodeCommand, scratchDir, submit, transitions } from './helpers.js';
import { waitFor, waitForState } from './wait.js';

const config = { simulatedGpus: 'v100s-8', nodeId: 'test-node', stopGrace: 1 };

/** Prints what the scheduler told this replica about its gang. */
const SHOW_RENDEZVOUS = nodeCommand(
  "const e = process.env; console.log(JSON.stringify({ rank: e.RANK, world: e.WORLD_SIZE, addr: e.MASTER_ADDR, port: e.MASTER_PORT, replica: e.AIPLAT_REPLICA, visible: e.CUDA_VISIBLE_DEVICES }))",
);

async function rendezvous(core: TestCore, id: string): Promise<{ replica: number; rank: string; world: string; addr: string; port: string; visible: string }[]> {
  const chunks = await logChunks(core.client, id);
  return chunks
    .flatMap((c) => c.text.split('\n').filter((line) => line.startsWith('{')).map((line) => ({ replica: c.replica, ...JSON.parse(line) })))
    .sort((a, b) => a.replica - b.replica);
}

describe('gang scheduling on simulated GPUs', () => {
  const lifecycle = new CoreLifecycle();
  const scratch = scratchDir();
  let core: TestCore;
  let gang4: string;

  beforeAll(async () => {
    core = await lifecycle.start({ config: { ...config, simulatedNodes: 3 } });
  });
  afterAll(async () => {
    await lifecycle.dispose();
    scratch.remove();
  });

  it('never starts a 4-node gang on 3 nodes: it waits with the reason and holds no card, while a 3-node gang runs', async () => {
    gang4 = (await submit(core.client, { name: 'gang4', command: SHOW_RENDEZVOUS, replicas: 4, resources: { gpus: 8 } })).id;
    await waitFor(async () => /for each of 4 replicas placed together/.test((await core.client.get(`/api/v1/workloads/${gang4}`)).body.reason ?? ''), 30_000, 'the gang to wait with its reason');
    const waiting = (await core.client.get(`/api/v1/workloads/${gang4}`)).body;
    expect(waiting.state).toBe('pending');
    expect(waiting.reason).toBe('waiting for 8 free GPUs on one node (24 free in all, at most 8 on one node), for each of 4 replicas placed together');
    expect(waiting.placements).toEqual([]);

    const gang3 = (await submit(core.client, { name: 'gang3', command: SHOW_RENDEZVOUS, replicas: 3, resources: { gpus: 8 } })).id;
    const done = await waitForState(core.client, gang3, ['succeeded', 'failed', 'lost']);
    expect(done.state).toBe('succeeded');
    expect(new Set(done.placements.map((p: { nodeId: string }) => p.nodeId))).toEqual(new Set(['sim-001', 'sim-002', 'sim-003']));
    const seen = await rendezvous(core, gang3);
    expect(seen.map((s) => [s.rank, s.world])).toEqual([
      ['0', '3'],
      ['1', '3'],
      ['2', '3'],
    ]);

    // Through all of it the 4-replica gang held nothing, not even for a moment.
    const history = await core.client.get(`/api/v1/gpus/reservations?history=true&workload=${gang4}`);
    expect(history.body.items).toEqual([]);
    const still = (await core.client.get(`/api/v1/workloads/${gang4}`)).body;
    expect(still.state).toBe('pending');
    expect(await transitions(core.client, gang4)).toEqual(['pending']);
  });

  it('runs it with all 4 placed once a 4th node exists: one rendezvous, distinct ranks', async () => {
    core = await lifecycle.reopen(core, { config: { ...config, simulatedNodes: 4 } });
    const done = await waitForState(core.client, gang4, ['succeeded', 'failed', 'lost']);
    expect(done.state).toBe('succeeded');
    expect(done.placements).toHaveLength(4);
    expect(new Set(done.placements.map((p: { nodeId: string }) => p.nodeId)).size).toBe(4);
    for (const p of done.placements) expect(p.devices).toHaveLength(8);

    const seen = await rendezvous(core, gang4);
    expect(seen).toHaveLength(4);
    expect(seen.map((s) => s.rank)).toEqual(['0', '1', '2', '3']);
    expect(seen.every((s) => s.world === '4' && s.rank === String(s.replica))).toBe(true);
    expect(new Set(seen.map((s) => s.addr)).size).toBe(1);
    expect(new Set(seen.map((s) => s.port)).size).toBe(1);
    expect(Number(seen[0]!.port)).toBeGreaterThanOrEqual(29500);
    expect(seen.every((s) => s.visible === '0,1,2,3,4,5,6,7')).toBe(true);

    expect(await transitions(core.client, gang4)).toEqual(['pending', 'scheduled', 'running', 'succeeded']);
    const history = await core.client.get(`/api/v1/gpus/reservations?history=true&workload=${gang4}&limit=1000`);
    expect(history.body.items).toHaveLength(32);
    expect(history.body.items.every((r: { until: string | null }) => r.until !== null)).toBe(true);
  });

  it('stops the other replicas (SIGTERM) when one fails, retries once, then fails', async () => {
    // Rank 0 says it is up (a file per placement epoch) and waits; rank 1 fails once rank 0 is up
    // and it has itself run a moment (so its own start is on record before it ends).
    const up = (epoch: string) => scratch.file(`up-${epoch}`);
    const script = `
      const fs = require('fs');
      const { RANK, AIPLAT_EPOCH } = process.env;
      const up = ${JSON.stringify(up('EPOCH'))}.replace('EPOCH', AIPLAT_EPOCH);
      if (RANK === '0') {
        process.on('SIGTERM', () => { console.log('rank 0 got SIGTERM'); process.exit(0); });
        console.log('rank 0 up');
        fs.writeFileSync(up, '');
        setInterval(() => {}, 1000);
      } else {
        const t0 = Date.now();
        (function poll() { if (fs.existsSync(up) && Date.now() - t0 > 300) { console.log('rank 1 failing'); process.exit(3); } else setTimeout(poll, 20); })();
      }`;
    const id = (await submit(core.client, { name: 'fragile', command: nodeCommand(script), replicas: 2, retries: 1, resources: { gpus: 8 } })).id;
    const done = await waitForState(core.client, id, ['failed', 'succeeded', 'lost', 'cancelled'], 45_000);
    expect(done.state).toBe('failed');
    expect(done.reason).toBe('replica 1 exited with code 3');
    expect(done.exitCode).toBe(3);
    expect(done.attempt).toBe(1);

    const all = await events(core.client, id);
    const moves = all.filter((e) => e.from !== e.to);
    expect(moves.map((e) => e.to)).toEqual(['pending', 'scheduled', 'running', 'pending', 'scheduled', 'running', 'failed']);
    expect(moves[3]!.reason).toBe('retry 1 of 1: replica 1 exited with code 3');
    // Each attempt was a new placement (a new fencing epoch).
    expect(moves[4]!.epoch).toBeGreaterThan(moves[1]!.epoch);

    // Both attempts: rank 0 was told to stop (SIGTERM) after rank 1 failed.
    const chunks = await logChunks(core.client, id);
    const rank0 = new Map<number, string>();
    for (const c of chunks.filter((c) => c.replica === 0)) rank0.set(c.epoch, (rank0.get(c.epoch) ?? '') + c.text);
    expect([...rank0.values()]).toEqual(['rank 0 up\nrank 0 got SIGTERM\n', 'rank 0 up\nrank 0 got SIGTERM\n']);
    expect(chunks.filter((c) => c.replica === 1).map((c) => c.text).join('')).toBe('rank 1 failing\nrank 1 failing\n');
    const live = await core.client.get(`/api/v1/gpus/reservations?workload=${id}`);
    expect(live.body.items).toEqual([]);
  });
});
