import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, killLocalReplicas } from '@aiplat/testing';
import { reachable } from '../../../scripts/reachable.mjs';
import { spawnCore, type SpawnedCore } from '../helpers/spawn-core.js';
import { StreamClient, streamTicket, streamUrl } from '../helpers/stream-client.js';
import { nodeCommand, waitForFileJs } from './helpers.js';
import { waitFor } from './wait.js';

/**
 * The scheduler across two real core processes on one PostgreSQL database and one Redis: core A
 * runs work on a SIMULATED 8-GPU node (a fake nvidia-smi replays a real V100S capture; there is no
 * GPU here), core B has no GPUs. A job submitted through B runs on A's node, and a client of B's
 * stream follows its state and its output live. Only one of the two places work (the holder of
 * the scheduler's advisory lock).
 *
 * Needs PostgreSQL (TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres) and Redis
 * (TEST_REDIS_URL, else redis://127.0.0.1:6379): it runs in the server pass only.
 */
const DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const PASSWORD = 'cluster-admin-password';
const WAIT_MS = 30_000;

const databaseUp = await reachable(DATABASE_URL, 5432);
const redisUp = await reachable(REDIS_URL, 6379);

const SCHEDULES = 'this core schedules now';

describe('workloads across two core processes', () => {
  it('has PostgreSQL and Redis to run on', () => {
    expect(databaseUp, `no PostgreSQL answers at ${DATABASE_URL}`).toBe(true);
    expect(redisUp, `no Redis answers at ${REDIS_URL}`).toBe(true);
  });

  const cores: SpawnedCore[] = [];
  const dirs: string[] = [];
  const urls: string[] = [];
  const streams: StreamClient[] = [];
  let dropDatabase: (() => Promise<void>) | undefined;
  let token = '';
  let scratch = '';

  const api = async (core: number, method: string, route: string, body?: unknown) => {
    const res = await fetch(`${urls[core]}/api/v1${route}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as any };
  };

  beforeAll(async () => {
    process.env.TEST_DATABASE_URL ??= DATABASE_URL;
    const database = await createTestDatabase();
    dropDatabase = database.drop;
    scratch = mkdtempSync(path.join(os.tmpdir(), 'aiplat-sched-cluster-'));
    // One after the other: the first one migrates the shared database.
    for (const [nodeId, gpus] of [
      ['node-a', 'v100s-8'],
      ['node-b', undefined],
    ] as const) {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'aiplat-sched-cluster-'));
      dirs.push(dir);
      const core = spawnCore({
        AIPLAT_DATA_DIR: dir,
        DATABASE_URL: database.url,
        REDIS_URL,
        AIPLAT_ADMIN_PASSWORD: PASSWORD,
        AIPLAT_NODE_ID: nodeId,
        AIPLAT_SIMULATED_GPUS: gpus,
        AIPLAT_SIMULATED_NODES: undefined,
        AIPLAT_STOP_GRACE: '1',
        AIPLAT_PLUGIN_DIRS: '',
        PUBLIC_URL: '',
        AIPLAT_METRICS_TOKEN: '',
        AIPLAT_CONFIG_FILE: '',
      });
      cores.push(core);
      urls.push(await core.url);
    }
    const login = await fetch(`${urls[1]}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password: PASSWORD }),
    });
    expect(login.status).toBe(200);
    token = ((await login.json()) as { accessToken: string }).accessToken;
  });

  afterAll(async () => {
    for (const s of streams) s.close();
    for (const core of cores) {
      if (core.child.exitCode === null && core.child.signalCode === null) {
        core.child.kill('SIGTERM');
        const timer = setTimeout(() => core.child.kill('SIGKILL'), 10_000);
        await core.exited;
        clearTimeout(timer);
      }
    }
    for (const dir of dirs) {
      killLocalReplicas(path.join(dir, 'runs'));
      rmSync(dir, { recursive: true, force: true });
    }
    if (scratch) rmSync(scratch, { recursive: true, force: true });
    await dropDatabase?.();
  });

  it('runs a job submitted through B on A’s simulated node, and B’s stream follows it live', async () => {
    // Both cores registered their nodes in the shared ledger.
    const nodes = (await api(1, 'GET', '/nodes')).body.items.map((n: { id: string }) => n.id);
    expect(nodes).toEqual(expect.arrayContaining(['node-a', 'node-b', 'sim-001']));

    const go = path.join(scratch, 'go');
    const submitted = await api(1, 'POST', '/workloads', {
      name: 'across',
      command: nodeCommand(`console.log('first'); ${waitForFileJs(go, "console.log('second');")}`),
      resources: { gpus: 1 },
    });
    expect(submitted.status).toBe(201);
    const id = submitted.body.id as string;

    const client = await StreamClient.connect(streamUrl(urls[1]!, await streamTicket(urls[1]!, token)));
    streams.push(client);
    const logs = `workloads/${id}/logs`;
    client.subscribe('workloads', 0);
    client.subscribe(logs, 0);
    await client.waitFor((m) => m.op === 'subscribed' && m.topic === logs, WAIT_MS);

    const first = await client.waitFor((m) => m.op === undefined && m.topic === logs && m.payload.text.includes('first'), WAIT_MS);
    expect(first.payload.text).toBe('first\n');
    // It waits for us: the line came live, from the other process, through Redis.
    const running = await api(1, 'GET', `/workloads/${id}`);
    expect(running.body.state).toBe('running');
    expect(running.body.placements).toEqual([expect.objectContaining({ nodeId: 'sim-001', state: 'running' })]);
    writeFileSync(go, '');

    await client.waitFor((m) => m.op === undefined && m.topic === 'workloads' && m.payload.id === id && m.payload.state === 'succeeded', WAIT_MS);
    expect(client.events(logs).map((m) => m.payload.text).join('')).toBe('first\nsecond\n');
    expect(
      client
        .events('workloads')
        .filter((m) => m.payload.id === id)
        .map((m) => m.payload.state),
    ).toEqual(['pending', 'scheduled', 'running', 'succeeded']);

    // Both processes tell the same story: placed once, run once.
    const [onA, onB] = await Promise.all([api(0, 'GET', `/workloads/${id}/events`), api(1, 'GET', `/workloads/${id}/events`)]);
    expect(onA.body).toEqual(onB.body);
    expect(onB.body.items.map((e: { to: string }) => e.to)).toEqual(['pending', 'scheduled', 'running', 'succeeded']);
    const [stateA, stateB] = await Promise.all([api(0, 'GET', `/workloads/${id}`), api(1, 'GET', `/workloads/${id}`)]);
    expect(stateA.body).toEqual(stateB.body);
    expect(stateB.body.state).toBe('succeeded');
    expect((await api(0, 'GET', `/workloads/${id}/logs`)).body.items.map((i: { text: string }) => i.text).join('')).toBe('first\nsecond\n');
  });

  it('has exactly one scheduler: one process holds the lock, the other only accepts submissions', async () => {
    await waitFor(() => cores.some((c) => c.stdout().includes(SCHEDULES)), WAIT_MS, 'a scheduler');
    expect(cores.filter((c) => c.stdout().includes(SCHEDULES))).toHaveLength(1);
    // Many submissions through both processes at once: each is placed exactly once.
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const res = await api(i % 2, 'POST', '/workloads', { name: `burst-${i}`, command: ['/bin/echo', String(i)], resources: { gpus: 1 } });
      expect(res.status).toBe(201);
      ids.push(res.body.id);
    }
    for (const id of ids) {
      await waitFor(async () => (await api(0, 'GET', `/workloads/${id}`)).body.state === 'succeeded', WAIT_MS, `${id} to succeed`);
      expect((await api(1, 'GET', `/workloads/${id}/events`)).body.items.filter((e: { to: string }) => e.to === 'scheduled')).toHaveLength(1);
    }
    expect(cores.filter((c) => c.stdout().includes(SCHEDULES))).toHaveLength(1);
  });
});
