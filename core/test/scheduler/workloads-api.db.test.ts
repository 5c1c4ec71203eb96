// The workloads API end to end: list filters and paging, team scoping, who may submit, cancel and
// retry, retry as a new attempt, and the time limit. Real core, real database, real processes; the
// GPUs are SIMULATED (a fake nvidia-smi replays a real 8× V100S capture; there is no GPU here).
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestClient, type TestCore } from '@aiplat/testing';
import { events, logText, nodeCommand, scratchDir, submit, transitions } from './helpers.js';
import { waitFor, waitForState } from './wait.js';

const WAITS = nodeCommand("process.on('SIGTERM', () => { console.log('got SIGTERM'); process.exit(0); }); console.log('up'); setInterval(() => {}, 1000);");

async function ids(client: TestClient, query: string): Promise<string[]> {
  const res = await client.get(`/api/v1/workloads?${query}`);
  expect(res.status, `${query}: ${res.text}`).toBe(200);
  return res.body.items.map((w: { id: string }) => w.id);
}

describe('the workloads API', () => {
  const scratch = scratchDir();
  let core: TestCore;
  let ann: TestClient; // operator, member of default
  let mia: TestClient; // operator with workloads:manage, member of default
  let vic: TestClient; // viewer
  let rose: TestClient; // operator in red only

  beforeAll(async () => {
    core = await startTestCore({ config: { simulatedGpus: 'v100s-8', simulatedNodes: 1, nodeId: 'test-node', stopGrace: 1 } });
    await core.client.post('/api/v1/teams', { name: 'red' });
    const none = (await core.client.post('/api/v1/roles', { name: 'Member', permissions: [] })).body.id;
    const manager = (await core.client.post('/api/v1/roles', { name: 'Workload manager', permissions: ['workloads:manage'] })).body.id;
    const users = await Promise.all([
      core.createUser('ann', ['operator'], { teams: ['default'] }),
      core.createUser('mia', ['operator', manager], { teams: ['default'] }),
      core.createUser('vic', ['viewer'], { teams: ['default'] }),
      core.createUser('rose', [none], { teams: [{ team: 'red', roles: ['Operator'] }] }),
    ]);
    [ann, mia, vic, rose] = users.map((u) => u.client) as [TestClient, TestClient, TestClient, TestClient];
  });
  afterAll(async () => {
    await core?.stop();
    scratch.remove();
  });

  it('filters the list by state, submitter, label and kind, and pages it with a cursor', async () => {
    const one = (await submit(core.client, { name: 'f-1', command: ['true'], labels: { run: '1' } })).id;
    const two = (await submit(core.client, { name: 'f-2', command: ['true'], labels: { run: '2', 'a.b/c': 'x=y' } })).id;
    const bad = (await submit(core.client, { name: 'f-bad', command: ['false'] })).id;
    const annS = (await submit(ann, { name: 'a-1', command: ['true'], labels: { run: '1' } })).id;
    for (const id of [one, two, bad, annS]) await waitForState(core.client, id, ['succeeded', 'failed']);

    expect(await ids(core.client, 'state=failed')).toEqual([bad]);
    expect(await ids(core.client, 'state=succeeded,failed')).toEqual([annS, bad, two, one]);
    expect(await ids(core.client, 'state=pending')).toEqual([]);
    expect(await ids(ann, 'mine=true')).toEqual([annS]);
    expect(await ids(core.client, 'mine=true')).toEqual([bad, two, one]);
    expect(await ids(core.client, 'label=run=1')).toEqual([annS, one]);
    // The value may hold "=": only the first one splits.
    expect(await ids(core.client, `label=${encodeURIComponent('a.b/c=x=y')}`)).toEqual([two]);
    expect(await ids(core.client, 'kind=service')).toEqual([]);
    expect(await ids(core.client, 'kind=job&owner=core&team=default')).toEqual([annS, bad, two, one]);

    const first = await core.client.get('/api/v1/workloads?limit=3');
    expect(first.body.items.map((w: { id: string }) => w.id)).toEqual([annS, bad, two]);
    expect(first.body.nextCursor).toMatch(/^\d+$/);
    const second = await core.client.get(`/api/v1/workloads?limit=3&cursor=${first.body.nextCursor}`);
    expect(second.body.items.map((w: { id: string }) => w.id)).toEqual([one]);
    expect(second.body.nextCursor).toBeNull();

    for (const query of ['state=sleeping', 'label=novalue', 'limit=0', 'cursor=abc', 'kind=cron']) {
      expect((await core.client.get(`/api/v1/workloads?${query}`)).status, query).toBe(400);
    }
  });

  it("answers 404 for another team's workload, and lists only the caller's teams", async () => {
    const id = (await submit(core.client, { name: 'secret', command: ['/bin/echo', 'secret'] })).id;
    await waitForState(core.client, id, ['succeeded']);
    for (const path of ['', '/logs', '/events', '/metrics']) {
      const res = await rose.get(`/api/v1/workloads/${id}${path}`);
      expect(res.status, path).toBe(404);
      expect(res.body.error.message).toBe(`No workload ${id}`);
    }
    expect((await rose.post(`/api/v1/workloads/${id}/cancel`)).status).toBe(404);
    expect((await rose.post(`/api/v1/workloads/${id}/retry`)).status).toBe(404);
    expect(await ids(rose, '')).toEqual([]);
    expect((await core.client.get('/api/v1/workloads/no-such-id')).status).toBe(404);
  });

  it('lets a viewer read but not submit', async () => {
    const res = await vic.post('/api/v1/workloads', { name: 'nope', command: ['true'] });
    expect(res.status).toBe(403);
    expect((await vic.get('/api/v1/workloads?limit=1')).status).toBe(200);
    // A team member may submit only for their own team.
    const foreign = await rose.post('/api/v1/workloads', { name: 'nope', command: ['true'], team: 'default' });
    expect(foreign.status).toBe(403);
    expect(foreign.body.error.message).toBe('You may not submit workloads for team "default"');
  });

  it("refuses an operator cancelling or retrying someone else's job without workloads:manage", async () => {
    const admins = (await submit(core.client, { name: 'admins', command: WAITS, resources: { gpus: 1 } })).id;
    const anns = (await submit(ann, { name: 'anns', command: WAITS })).id;
    await waitForState(core.client, admins, ['running']);
    await waitForState(core.client, anns, ['running']);

    const refused = await ann.post(`/api/v1/workloads/${admins}/cancel`);
    expect(refused.status).toBe(403);
    expect(refused.body.error.message).toBe('Only the submitter (with "workloads:cancel") or a holder of "workloads:manage" in team "default" may do this');
    expect((await ann.post(`/api/v1/workloads/${admins}/retry`)).status).toBe(403);
    expect((await core.client.get(`/api/v1/workloads/${admins}`)).body.state).toBe('running');

    expect((await ann.post(`/api/v1/workloads/${anns}/cancel`)).status).toBe(200);
    expect((await mia.post(`/api/v1/workloads/${admins}/cancel`)).status).toBe(200);
    for (const id of [admins, anns]) expect((await waitForState(core.client, id, ['cancelled', 'failed', 'succeeded'])).state).toBe('cancelled');
    const stop = (await events(core.client, admins)).find((e) => e.from === e.to);
    expect(stop?.reason).toBe('stopping: cancelled by mia');
  });

  it('retries a failed job as a new attempt that runs', async () => {
    const marker = scratch.file('fixed');
    const script = `const fs = require('fs'); if (fs.existsSync(${JSON.stringify(marker)})) console.log('works now'); else { console.log('broken'); process.exit(5); }`;
    const id = (await submit(core.client, { name: 'flaky', command: nodeCommand(script) })).id;
    const failed = await waitForState(core.client, id, ['failed', 'succeeded']);
    expect(failed).toMatchObject({ state: 'failed', exitCode: 5, attempt: 0, reason: 'replica 0 exited with code 5' });

    writeFileSync(marker, '');
    const retried = await core.client.post(`/api/v1/workloads/${id}/retry`);
    expect(retried.status).toBe(200);
    expect(retried.body).toMatchObject({ attempt: 1, exitCode: null, finishedAt: null });
    const done = await waitForState(core.client, id, ['succeeded', 'failed']);
    expect(done).toMatchObject({ state: 'succeeded', exitCode: 0, attempt: 1 });
    expect(await logText(core.client, id)).toBe('broken\nworks now\n');
    expect(await transitions(core.client, id)).toEqual(['pending', 'scheduled', 'running', 'failed', 'pending', 'scheduled', 'running', 'succeeded']);
    expect((await events(core.client, id)).find((e) => e.reason === 'retried by hand')?.from).toBe('failed');
    // Only a finished workload can be retried.
    const running = (await submit(core.client, { name: 'busy', command: WAITS })).id;
    await waitForState(core.client, running, ['running']);
    expect((await core.client.post(`/api/v1/workloads/${running}/retry`)).status).toBe(409);
    await core.client.post(`/api/v1/workloads/${running}/cancel`);
    await waitForState(core.client, running, ['cancelled']);
  });

  it('stops a job past timeoutSeconds and fails it, saying so', async () => {
    const id = (await submit(core.client, { name: 'slow', command: WAITS, timeoutSeconds: 1, resources: { gpus: 1 } })).id;
    const done = await waitForState(core.client, id, ['failed', 'succeeded', 'cancelled']);
    expect(done.state).toBe('failed');
    expect(done.reason).toBe('timed out after 1 s');
    await waitFor(async () => (await logText(core.client, id)) === 'up\ngot SIGTERM\n', 10_000, 'the SIGTERM line');
    const started = Date.parse(done.startedAt);
    expect(Date.parse(done.finishedAt) - started).toBeGreaterThanOrEqual(1000);
    expect((await core.client.get(`/api/v1/gpus/reservations?workload=${id}`)).body.items).toEqual([]);
  });

  it('reads the last log chunks with tail, and names the holder of each reservation', async () => {
    const script = "for (let i = 1; i <= 3; i++) console.log('chunk ' + i); setTimeout(() => console.log('late'), 400); setTimeout(() => {}, 30000);";
    const job = await submit(ann, { name: 'tailed', command: nodeCommand(script), resources: { gpus: 1 } });
    await waitFor(async () => (await logText(ann, job.id)).includes('late'), 30_000, 'the late line');
    const tail = await ann.get(`/api/v1/workloads/${job.id}/logs?tail=1`);
    expect(tail.status).toBe(200);
    expect(tail.body.items).toHaveLength(1);
    expect(tail.body.items[0].text).toBe('late\n');
    expect(tail.body.nextCursor).toBe(String(tail.body.items[0].logId));
    expect((await ann.get(`/api/v1/workloads/${job.id}/logs?tail=1&after=1`)).status).toBe(400);
    const held = await ann.get(`/api/v1/gpus/reservations?workload=${job.id}`);
    expect(held.body.items).toEqual([expect.objectContaining({ workloadId: job.id, workloadName: 'tailed', whole: true })]);
    await ann.post(`/api/v1/workloads/${job.id}/cancel`);
    await waitForState(ann, job.id, ['cancelled']);
  });
});
