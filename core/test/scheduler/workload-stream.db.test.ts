// The scheduler on the event stream: state changes on `workloads`, output live on
// `workloads/<id>/logs`, each seen only by the workload's team (and global holders). Real core,
// real database, real processes, a real WebSocket; the GPUs are SIMULATED (a fake nvidia-smi
// replays a real 8× V100S capture; there is no GPU here).
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestClient, type TestCore } from '@aiplat/testing';
import { openStream, type StreamClient } from '../helpers/stream-client.js';
import { nodeCommand, scratchDir, submit, waitForFileJs } from './helpers.js';
import { waitForState } from './wait.js';

const WAIT_MS = 30_000;

async function subscribed(client: StreamClient, topic: string, since?: number): Promise<void> {
  client.subscribe(topic, since);
  await client.waitFor((m) => m.op === 'subscribed' && m.topic === topic, WAIT_MS);
}

describe('workloads on the event stream', () => {
  const scratch = scratchDir();
  const streams: StreamClient[] = [];
  let core: TestCore;
  let bob: TestClient; // operator in blue only
  let blue: string;

  async function stream(client: TestClient): Promise<StreamClient> {
    const opened = await openStream(core.url, client.token!);
    streams.push(opened);
    return opened;
  }

  beforeAll(async () => {
    core = await startTestCore({ config: { simulatedGpus: 'v100s-8', simulatedNodes: 1, nodeId: 'test-node', stopGrace: 1 } });
    blue = (await core.client.post('/api/v1/teams', { name: 'blue' })).body.id;
    const none = (await core.client.post('/api/v1/roles', { name: 'Member', permissions: [] })).body.id;
    bob = (await core.createUser('bob', [none], { teams: [{ team: 'blue', roles: ['Operator'] }] })).client;
  });
  afterAll(async () => {
    for (const s of streams) s.close();
    await core?.stop();
    scratch.remove();
  });

  it('tells a subscriber of `workloads` every state of a job, in order', async () => {
    const admin = await stream(core.client);
    await subscribed(admin, 'workloads');
    const id = (await submit(core.client, { name: 'states', command: ['/bin/echo', 'hi'], resources: { gpus: 1 } })).id;
    await admin.waitFor((m) => m.op === undefined && m.topic === 'workloads' && m.payload.id === id && m.payload.state === 'succeeded', WAIT_MS);
    const mine = admin.events('workloads').filter((m) => m.payload.id === id);
    expect(mine.map((m) => m.payload.state)).toEqual(['pending', 'scheduled', 'running', 'succeeded']);
    expect(mine.map((m) => m.payload.from)).toEqual([null, 'pending', 'scheduled', 'running']);
    expect(mine[0]!.payload).toMatchObject({ id, name: 'states', team: 'default', reason: 'submitted' });
    // In sequence order.
    const seqs = mine.map((m) => m.seq!);
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
  });

  it('streams a job’s output live, before the job ends', async () => {
    const go = scratch.file('go');
    const script = `console.log('first'); ${waitForFileJs(go, "console.log('second');")}`;
    const admin = await stream(core.client);
    const id = (await submit(core.client, { name: 'talker', command: nodeCommand(script) })).id;
    // From the topic's start: the first line may be out before this subscription is.
    await subscribed(admin, `workloads/${id}/logs`, 0);
    const first = await admin.waitFor((m) => m.op === undefined && m.topic === `workloads/${id}/logs` && m.payload.text.includes('first'), WAIT_MS);
    expect(first.payload).toMatchObject({ replica: 0, epoch: 1, text: 'first\n', logId: expect.any(Number) });
    // It cannot end before we let it: the line came live.
    expect((await core.client.get(`/api/v1/workloads/${id}`)).body.state).toBe('running');
    writeFileSync(go, '');
    await admin.waitFor((m) => m.op === undefined && m.topic === `workloads/${id}/logs` && m.payload.text.includes('second'), WAIT_MS);
    expect(admin.events(`workloads/${id}/logs`).map((m) => m.payload.text).join('')).toBe('first\nsecond\n');
    expect((await waitForState(core.client, id, ['succeeded', 'failed'])).state).toBe('succeeded');
  });

  it("keeps a team's workload events from members of other teams", async () => {
    const bobs = await stream(bob);
    await subscribed(bobs, 'workloads');
    const admin = await stream(core.client);
    await subscribed(admin, 'workloads');

    // A job of the default team, with output; bob also tries to follow its logs.
    const theirs = (await submit(core.client, { name: 'theirs', command: ['/bin/echo', 'secret output'] })).id;
    await subscribed(bobs, `workloads/${theirs}/logs`, 0);
    await admin.waitFor((m) => m.op === undefined && m.topic === 'workloads' && m.payload.id === theirs && m.payload.state === 'succeeded', WAIT_MS);
    expect((await bob.get(`/api/v1/workloads/${theirs}`)).status).toBe(404);

    // Then one of bob's own team: once he has seen it end, he would have seen the earlier one.
    const own = (await submit(bob, { name: 'own', command: ['/bin/echo', 'blue output'] })).id;
    expect((await bob.get(`/api/v1/workloads/${own}`)).body.team).toBe(blue);
    await subscribed(bobs, `workloads/${own}/logs`, 0);
    await bobs.waitFor((m) => m.op === undefined && m.topic === 'workloads' && m.payload.id === own && m.payload.state === 'succeeded', WAIT_MS);
    await bobs.waitFor((m) => m.op === undefined && m.topic === `workloads/${own}/logs`, WAIT_MS);
    await admin.waitFor((m) => m.op === undefined && m.topic === 'workloads' && m.payload.id === own && m.payload.state === 'succeeded', WAIT_MS);

    expect(bobs.events('workloads').every((m) => m.payload.team === blue)).toBe(true);
    expect(bobs.events('workloads').map((m) => m.payload.state)).toEqual(['pending', 'scheduled', 'running', 'succeeded']);
    expect(bobs.events(`workloads/${theirs}/logs`)).toEqual([]);
    expect(bobs.events(`workloads/${own}/logs`).map((m) => m.payload.text).join('')).toBe('blue output\n');
    // The admin (a global holder) saw both.
    expect(new Set(admin.events('workloads').map((m) => m.payload.id))).toEqual(new Set([theirs, own]));
  });
});
