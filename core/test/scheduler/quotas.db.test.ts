// Team quotas end to end: who may set them, GPU-count admission (wait with the reason, refuse what
// can never fit), GPU-hours per period in the configured time zone, and the usage report. Real
// core, real database, real processes; the GPUs are SIMULATED (a fake nvidia-smi replays a real
// 8× V100S capture; there is no GPU here).
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestClient, type TestCore } from '@aiplat/testing';
import { nodeCommand, scratchDir, submit, waitForFileJs } from './helpers.js';
import { waitFor, waitForState } from './wait.js';

const SHANGHAI_OFFSET_MS = 8 * 3600_000; // Asia/Shanghai: UTC+8, no daylight saving time

/** The current quota period in Asia/Shanghai, computed here independently of the database. */
function shanghaiPeriod(period: 'day' | 'month', now = new Date()): { start: string; end: string } {
  const local = new Date(now.getTime() + SHANGHAI_OFFSET_MS);
  const [y, m, d] = [local.getUTCFullYear(), local.getUTCMonth(), local.getUTCDate()];
  const start = period === 'day' ? Date.UTC(y, m, d) : Date.UTC(y, m, 1);
  const end = period === 'day' ? Date.UTC(y, m, d + 1) : Date.UTC(y, m + 1, 1);
  return { start: new Date(start - SHANGHAI_OFFSET_MS).toISOString(), end: new Date(end - SHANGHAI_OFFSET_MS).toISOString() };
}

describe('team quotas on simulated GPUs', () => {
  const scratch = scratchDir();
  let core: TestCore;
  let red: string;
  let olga: { id: string; client: TestClient }; // operator in red (and only there)
  let oscar: TestClient; // a global operator
  /**
   * A job that holds 2 cards until its file is written and at least 1 s has passed, then exits 0
   * (usage is reported in GPU-hours rounded to 0.001: 2 cards for 1 s are 0.00056, shown as 0.001).
   */
  const holder = (name: string) => ({
    name,
    command: nodeCommand(
      `const t0 = Date.now(); console.log('holding'); ${waitForFileJs(scratch.file(name), "setTimeout(() => console.log('released'), Math.max(0, 1000 - (Date.now() - t0)));")}`,
    ),
    resources: { gpus: 2 },
  });
  const releaseHolder = (name: string) => writeFileSync(scratch.file(name), '');

  beforeAll(async () => {
    core = await startTestCore({ config: { simulatedGpus: 'v100s-8', simulatedNodes: 2, nodeId: 'test-node', stopGrace: 1, quotaTimeZone: 'Asia/Shanghai' } });
    red = (await core.client.post('/api/v1/teams', { name: 'red' })).body.id;
    const none = (await core.client.post('/api/v1/roles', { name: 'Member', permissions: [] })).body.id;
    olga = await core.createUser('olga', [none], { teams: [{ team: 'red', roles: ['Operator'] }] });
    oscar = (await core.createUser('oscar', ['operator'])).client;
  });
  afterAll(async () => {
    await core?.stop();
    scratch.remove();
  });

  it('lets only holders of quotas:manage set a quota, and checks the team and the body', async () => {
    const quota = { gpus: 2, gpuHours: null };
    const forbidden = await oscar.put(`/api/v1/teams/${red}/quota`, quota);
    expect(forbidden.status).toBe(403);
    expect((await olga.client.put(`/api/v1/teams/${red}/quota`, quota)).status).toBe(403);
    const unknown = await core.client.put('/api/v1/teams/no-such-team/quota', quota);
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.message).toBe('No team no-such-team');
    for (const body of [{ gpus: -1, gpuHours: null }, { gpus: 2 }, { gpus: 2, gpuHours: null, period: 'year' }, { gpus: '2', gpuHours: null }, { gpus: 2, gpuHours: null, extra: 1 }]) {
      const bad = await core.client.put(`/api/v1/teams/${red}/quota`, body);
      expect(bad.status, JSON.stringify(body)).toBe(400);
    }
    const set = await core.client.put(`/api/v1/teams/${red}/quota`, quota);
    expect(set.status).toBe(200);
    expect(set.body).toEqual({ team: red, gpus: 2, gpuHours: null, period: 'month' });
  });

  it('runs one 2-GPU job of a team limited to 2 GPUs while the second waits, saying why', async () => {
    const first = (await submit(olga.client, holder('first'))).id;
    await waitForState(olga.client, first, ['running']);
    const second = await submit(olga.client, holder('first'));
    expect(second.team).toBe(red); // olga's default team
    await waitFor(
      async () => (await olga.client.get(`/api/v1/workloads/${second.id}`)).body.reason === 'waiting for team quota: 2 of 2 GPUs in use, this needs 2 more',
      30_000,
      'the quota reason',
    );
    const view = await olga.client.get('/api/v1/quotas');
    expect(view.status).toBe(200);
    expect(view.body.teams).toEqual([
      { team: red, gpusInUse: 2, quota: expect.objectContaining({ gpus: 2, gpuHours: null, period: 'month' }) },
    ]);
    expect(view.body.waiting).toEqual([{ id: second.id, name: 'first', team: red, reason: 'waiting for team quota: 2 of 2 GPUs in use, this needs 2 more' }]);
    expect(view.body.freeGpus).toEqual([{ model: 'Tesla V100S-PCIE-32GB', free: 14, total: 16, freeMemoryMiB: 14 * 32510 }]);

    // More than the quota in total can never run: refused at once.
    for (const [resources, replicas, asks] of [[{ gpus: 3 }, 1, 3], [{ gpus: 2 }, 2, 4]] as const) {
      const refused = await olga.client.post('/api/v1/workloads', { name: 'greedy', command: ['true'], resources, replicas });
      expect(refused.status).toBe(422);
      expect(refused.body.error.message).toContain(`it asks for ${asks} GPUs at once, but team "${red}" may hold at most 2`);
    }

    releaseHolder('first');
    expect((await waitForState(olga.client, first, ['succeeded', 'failed'])).state).toBe('succeeded');
    expect((await waitForState(olga.client, second.id, ['succeeded', 'failed'])).state).toBe('succeeded');
  });

  it('reports GPU-hours per team and per user from the reservations', async () => {
    // Both 2-GPU jobs held their cards for a while: usage is what the ledger's history says.
    const history = (await core.client.get('/api/v1/gpus/reservations?history=true&limit=1000')).body.items.filter((r: { team: string }) => r.team === red);
    expect(history).toHaveLength(4);
    const heldHours = history.reduce((sum: number, r: { since: string; until: string }) => sum + (Date.parse(r.until) - Date.parse(r.since)) / 3600_000, 0);
    const byTeam = await olga.client.get('/api/v1/usage?groupBy=team');
    expect(byTeam.status).toBe(200);
    const redHours = byTeam.body.items.find((i: { team: string }) => i.team === red)?.gpuHours;
    expect(redHours).toBeGreaterThan(0);
    expect(Math.abs(redHours - heldHours)).toBeLessThanOrEqual(0.001); // rounded to 0.001
    // A team member sees only their teams.
    expect(byTeam.body.items.map((i: { team: string }) => i.team)).toEqual([red]);
    const byUser = await core.client.get('/api/v1/usage?groupBy=user');
    expect(byUser.body.items.find((i: { user: string }) => i.user === olga.id)?.gpuHours).toBe(redHours);
    expect((await core.client.get('/api/v1/usage?from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z')).status).toBe(400);
  });

  it('measures GPU-hours per day in the configured time zone, and makes new work wait once they are used up', async () => {
    const set = await core.client.put(`/api/v1/teams/${red}/quota`, { gpus: null, gpuHours: 0.000001, period: 'day' });
    expect(set.status).toBe(200);
    const before = shanghaiPeriod('day');
    const quota = (await olga.client.get('/api/v1/quotas')).body.teams[0].quota;
    const after = shanghaiPeriod('day');
    // The day starts at midnight in Shanghai: 16:00 UTC the day before.
    expect([before.start, after.start]).toContain(quota.periodStart);
    expect(quota.periodStart).toMatch(/T16:00:00\.000Z$/);
    expect(Date.parse(quota.periodEnd) - Date.parse(quota.periodStart)).toBe(24 * 3600_000);
    expect(quota.gpuHoursUsed).toBeGreaterThan(0);

    const late = (await submit(olga.client, { name: 'late', command: ['true'], resources: { gpus: 1 } })).id;
    await waitFor(async () => /GPU-hours/.test((await olga.client.get(`/api/v1/workloads/${late}`)).body.reason ?? ''), 30_000, 'the GPU-hours reason');
    const waiting = (await olga.client.get(`/api/v1/workloads/${late}`)).body;
    expect(waiting.state).toBe('pending');
    expect(waiting.reason).toMatch(new RegExp(`^waiting for team quota: [0-9.]+ of 0\\.000001 GPU-hours this day are used \\(the next day starts ${quota.periodEnd.replace(/\./g, '\\.')}\\)$`));

    // A month in Shanghai starts on the 1st at 00:00 there.
    await core.client.put(`/api/v1/teams/${red}/quota`, { gpus: null, gpuHours: 0.000001, period: 'month' });
    const month = (await olga.client.get('/api/v1/quotas')).body.teams[0].quota;
    expect([shanghaiPeriod('month', new Date(Date.now() - 5000)).start, shanghaiPeriod('month').start]).toContain(month.periodStart);

    // Lifting the limit lets it run.
    expect((await core.client.put(`/api/v1/teams/${red}/quota`, { gpus: null, gpuHours: null })).status).toBe(200);
    expect((await waitForState(olga.client, late, ['succeeded', 'failed'])).state).toBe('succeeded');
  });
});
