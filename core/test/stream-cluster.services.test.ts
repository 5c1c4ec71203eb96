import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from '@aiplat/testing';
import { spawnCore, type SpawnedCore } from './helpers/spawn-core.js';
import { reachable } from '../../scripts/reachable.mjs';
import { percentile, StreamClient, streamTicket, streamUrl, type StreamMessage } from './helpers/stream-client.js';

/**
 * Two real core processes on one PostgreSQL database and one Redis: 100 WebSocket subscribers
 * spread over both, 10,000 events published half through each, with mixed audiences. Every
 * subscriber must get every event it may see, in order, and none it may not; a client killed
 * mid-way and reconnected with `since` must miss nothing; a stalled client must be cut off with
 * the reason while the others keep their latency.
 *
 * Needs PostgreSQL (TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres) and Redis
 * (TEST_REDIS_URL, else redis://127.0.0.1:6379): it runs in the server pass of `npm test`
 * (*.services.test.ts, never in the embedded pass) and fails, saying so, when either does not answer.
 */
const DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const PASSWORD = 'cluster-admin-password';
const VIEWER_PASSWORD = 'cluster-viewer-password';

const EVENTS = 10_000;
const SUBSCRIBERS = 100;
/** Events per second each process publishes (the two together: twice this). */
const RATE = Number(process.env.STREAM_TEST_RATE ?? 400);
/** Payload padding: enough that a stalled client overflows the kernel's socket buffers well before the end. */
const PAD = Number(process.env.STREAM_TEST_PAD ?? 1000);
/** p99 publish → receive latency the other subscribers must stay under while a client is stalled. */
const P99_BOUND_MS = Number(process.env.STREAM_TEST_P99_MS ?? 1000);

const databaseUp = await reachable(DATABASE_URL, 5432);
const redisUp = await reachable(REDIS_URL, 6379);

/** Who may see event i (the fixture's mixedAudience): a viewer sees classes 0, 1 and 3 of six. */
const viewerSees = (i: number) => i % 6 === 0 || i % 6 === 1 || i % 6 === 3;

interface Subscriber {
  name: string;
  user: 'admin' | 'vera';
  core: number;
  client: StreamClient;
  seqs: number[];
  items: number[];
  latencies: number[];
  /** Latencies of events received while the stalled client was stalled. */
  stallLatencies: number[];
}

describe('the event stream across two core processes through Redis', () => {
  it('has PostgreSQL and Redis to run on', () => {
    expect(databaseUp, `no PostgreSQL answers at ${DATABASE_URL}`).toBe(true);
    expect(redisUp, `no Redis answers at ${REDIS_URL}`).toBe(true);
  });
  const cores: SpawnedCore[] = [];
  const dirs: string[] = [];
  const urls: string[] = [];
  let dropDatabase: (() => Promise<void>) | undefined;
  let adminToken = '';
  let viewerToken = '';
  let viewerId = '';

  beforeAll(async () => {
    process.env.TEST_DATABASE_URL ??= DATABASE_URL;
    const database = await createTestDatabase();
    dropDatabase = database.drop;
    // One after the other: the first one migrates the shared database.
    for (let n = 0; n < 2; n++) {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'aiplat-cluster-'));
      dirs.push(dir);
      const core = spawnCore({
        AIPLAT_DATA_DIR: dir,
        DATABASE_URL: database.url,
        REDIS_URL,
        AIPLAT_ADMIN_PASSWORD: PASSWORD,
        AIPLAT_PLUGIN_DIRS: 'core/test/fixtures/stream-plugin',
        // nothing from the environment that would change the routes or guard /metrics
        PUBLIC_URL: '',
        AIPLAT_METRICS_TOKEN: '',
        AIPLAT_CONFIG_FILE: '',
      });
      cores.push(core);
      urls.push(await core.url);
    }
    const login = async (url: string, username: string, password: string) => {
      const res = await fetch(`${url}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password }) });
      expect(res.status).toBe(200);
      return ((await res.json()) as { accessToken: string }).accessToken;
    };
    // Access tokens are signed with a key kept in the shared database: one sign-in serves both processes.
    adminToken = await login(urls[0]!, 'admin', PASSWORD);
    // The viewer is created on one process; the other learns of it through the identity event over Redis.
    const created = await fetch(`${urls[0]}/api/v1/users`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
      body: JSON.stringify({ username: 'vera', password: VIEWER_PASSWORD, roles: ['viewer'] }),
    });
    expect(created.status).toBe(201);
    viewerId = ((await created.json()) as { id: string }).id;
    viewerToken = await login(urls[1]!, 'vera', VIEWER_PASSWORD);
    for (let i = 0; ; i++) {
      const me = await fetch(`${urls[1]}/api/v1/me`, { headers: { authorization: `Bearer ${viewerToken}` } });
      if (me.status === 200) break;
      if (i > 100) throw new Error(`the second process never learned of the new user: ${me.status}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  afterAll(async () => {
    for (const core of cores) {
      if (core.child.exitCode === null && core.child.signalCode === null) {
        core.child.kill('SIGTERM');
        const timer = setTimeout(() => core.child.kill('SIGKILL'), 10_000);
        await core.exited;
        clearTimeout(timer);
      }
    }
    await dropDatabase?.();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it('delivers 10,000 events to 100 subscribers on two processes: all they may see, in order, nothing else', async () => {
    const started = performance.now();
    const topic = `streamer.load/${randomUUID().slice(0, 8)}`;
    let stallStart = Infinity;
    let stallEnd = Infinity;

    const attach = (sub: Subscriber) => {
      sub.client.onMessage = (m: StreamMessage) => {
        if (m.op !== undefined) return;
        sub.seqs.push(m.seq!);
        sub.items.push(m.payload.i);
        const latency = m.receivedAt - m.payload.t;
        sub.latencies.push(latency);
        if (m.receivedAt >= stallStart && m.receivedAt <= stallEnd) sub.stallLatencies.push(latency);
      };
    };
    const connect = async (user: 'admin' | 'vera', core: number, since?: number) => {
      // Half the tickets come from the other process: they are kept in the shared database.
      const ticket = await streamTicket(urls[(core + (since === undefined ? 0 : 1)) % 2]!, user === 'admin' ? adminToken : viewerToken);
      const client = await StreamClient.connect(streamUrl(urls[core]!, ticket), { keepEvents: false });
      client.subscribe(topic, since);
      return client;
    };

    const subscribers: Subscriber[] = [];
    for (let k = 0; k < SUBSCRIBERS; k++) {
      const user = k % 5 < 3 ? 'admin' : 'vera';
      const core = k % 2;
      const sub: Subscriber = { name: `s${k}`, user, core, client: await connect(user, core), seqs: [], items: [], latencies: [], stallLatencies: [] };
      attach(sub);
      subscribers.push(sub);
    }
    await Promise.all(subscribers.map((s) => s.client.waitFor((m) => m.op === 'subscribed')));
    expect(subscribers.every((s) => s.client.control('subscribed')[0]!.seq === 0)).toBe(true);

    // s0 (admin, process A) stops reading; s3 (vera, process B) will be killed mid-way.
    const stalled = subscribers[0]!;
    const killed = subscribers[3]!;
    expect(killed.user).toBe('vera');
    stalled.client.pause();
    stallStart = performance.timeOrigin + performance.now();

    const publish = (core: number, start: number) =>
      fetch(`${urls[core]}/api/plugins/streamer/publish`, {
        method: 'POST',
        headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ topic: topic.slice('streamer.'.length), count: EVENTS / 2, start, rate: RATE, pad: PAD, viewerId }),
      }).then(async (res) => {
        expect(res.status).toBe(200);
        return (await res.json()) as { published: number };
      });
    const publishing = Promise.all([publish(0, 0), publish(1, EVENTS / 2)]);
    // Process A reports when it cuts the stalled client off (its metrics), which ends the stall window.
    const slowDisconnects = async () => {
      const text = await (await fetch(`${urls[0]}/metrics`)).text();
      return Number(/^aiplat_stream_slow_consumer_disconnects_total (\d+)/m.exec(text)?.[1] ?? 0);
    };
    let watching = true;
    const watcher = (async () => {
      while (watching && (await slowDisconnects()) === 0) await new Promise((r) => setTimeout(r, 100));
      stallEnd = Math.min(stallEnd, performance.timeOrigin + performance.now());
    })();

    // Kill s3 once it has seen a third of its events, then reconnect it with since = its last seq.
    await killed.client.until(() => killed.seqs.length >= EVENTS / 6, 60_000, 'a third of the events');
    killed.client.kill();
    const lastBeforeKill = killed.seqs[killed.seqs.length - 1]!;
    await new Promise((r) => setTimeout(r, 300));
    killed.client = await connect('vera', killed.core, lastBeforeKill);
    attach(killed);
    const resumedAck = await killed.client.waitFor((m) => m.op === 'subscribed');
    expect(resumedAck.seq).toBeGreaterThanOrEqual(lastBeforeKill);

    const published = await publishing;
    expect(published.map((p) => p.published)).toEqual([EVENTS / 2, EVENTS / 2]);
    // Should the kernel's socket buffers have taken everything so far, publish on until the cut.
    let total = EVENTS;
    for (let extra = 0; extra < 10 && (await slowDisconnects()) === 0; extra++) {
      await publish(extra % 2, total);
      total += EVENTS / 2;
    }
    expect(await slowDisconnects()).toBe(1);
    watching = false;
    await watcher;

    const reference = subscribers.find((s) => s.user === 'admin' && s !== stalled)!;
    await reference.client.until(() => reference.seqs.length === total, 60_000, 'every event');
    const itemOf = new Map<number, number>();
    reference.seqs.forEach((seq, n) => itemOf.set(seq, reference.items[n]!));
    const allSeqs = Array.from({ length: total }, (_, n) => n + 1);
    const viewerSeqs = allSeqs.filter((seq) => viewerSees(itemOf.get(seq)!));
    expect(reference.seqs).toEqual(allSeqs);
    expect(new Set(reference.items).size).toBe(total);

    const others = subscribers.filter((s) => s !== stalled);
    await Promise.all(
      others.map((s) => s.client.until(() => s.seqs.length >= (s.user === 'admin' ? total : viewerSeqs.length), 60_000).catch(() => undefined)),
    );
    for (const s of others) {
      const expected = s.user === 'admin' ? allSeqs : viewerSeqs;
      if (s.seqs.length !== expected.length || s.seqs.some((seq, n) => seq !== expected[n])) {
        throw new Error(`${s.name} (${s.user}, process ${s.core}) got ${s.seqs.length} events, expected ${expected.length}; first difference at ${s.seqs.findIndex((seq, n) => seq !== expected[n])}`);
      }
      expect(s.items.every((i, n) => itemOf.get(s.seqs[n]!) === i)).toBe(true);
    }
    expect(killed.client.control('gap')).toEqual([]);

    // The stalled client: cut off with the reason, holding exactly the events before its cursor.
    stalled.client.resume();
    const closed = await stalled.client.closed;
    expect(closed.code).toBe(4008);
    expect(closed.reason).toMatch(/^slow consumer: \d+ events behind; reconnect with since=\d+$/);
    const since = Number(/since=(\d+)$/.exec(closed.reason)![1]);
    expect(since).toBeLessThan(total);
    expect(stalled.seqs).toEqual(allSeqs.slice(0, since));

    const latencies = others.flatMap((s) => s.latencies);
    const duringStall = others.flatMap((s) => s.stallLatencies);
    const report = {
      seconds: Math.round((performance.now() - started) / 100) / 10,
      deliveries: latencies.length,
      p50: Math.round(percentile(latencies, 50) * 10) / 10,
      p99: Math.round(percentile(latencies, 99) * 10) / 10,
      p99WhileStalled: Math.round(percentile(duringStall, 99) * 10) / 10,
      max: Math.round(percentile(latencies, 100)),
      events: total,
      stalledCutAfter: since,
    };
    console.log(`stream cluster: ${JSON.stringify(report)}`);
    expect(duringStall.length).toBeGreaterThan(0);
    expect(report.p99WhileStalled).toBeLessThan(P99_BOUND_MS);
    for (const s of others) s.client.close();
  }, 240_000);
});
