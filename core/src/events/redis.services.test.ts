import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import type { EventGap } from '@aiplat/plugin-sdk';
import type { BusEvent } from './event.js';
import { EventHub } from './hub.js';
import { RedisTransport } from './redis-transport.js';
import { DEFAULT_RETENTION, type Retention } from './transport.js';
import { reachable } from '../../../scripts/reachable.mjs';

// Runs against TEST_REDIS_URL (or a Redis on 127.0.0.1:6379) in the server pass of `npm test`
// (*.services.test.ts); a Redis that does not answer fails it with a message saying so.
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const reachableRedis = await reachable(REDIS_URL, 6379, 500);

const logger = pino({ level: 'silent' });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
async function until(check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await sleep(10);
  }
}

describe('the event hub through Redis', () => {
  it('has a Redis to talk to', () => {
    expect(reachableRedis, `no Redis answers at ${REDIS_URL}: start one or set TEST_REDIS_URL`).toBe(true);
  });
  const namespace = `test-${randomBytes(4).toString('hex')}`;
  const connections: Redis[] = [];
  const hubs: EventHub[] = [];

  async function redisHub(retention: Partial<Retention> = {}): Promise<{ hub: EventHub; transport: RedisTransport }> {
    const redis = new Redis(REDIS_URL, { lazyConnect: true });
    await redis.connect();
    connections.push(redis);
    const transport = new RedisTransport(redis, namespace, logger, { ...DEFAULT_RETENTION, idleSeconds: 600, ...retention });
    await transport.start();
    const hub = new EventHub(transport, logger);
    hubs.push(hub);
    return { hub, transport };
  }

  function collect(hub: EventHub, topic: string, since?: number) {
    const out = { start: undefined as number | undefined, events: [] as BusEvent[], gaps: [] as EventGap[] };
    hub.subscribe(topic, { onStart: (s) => (out.start = s), onEvent: (e) => out.events.push(e), onGap: (g) => out.gaps.push(g) }, { since });
    return out;
  }

  afterAll(async () => {
    for (const hub of hubs) await hub.close();
    const admin = connections[0];
    if (admin) {
      const keys = await admin.keys(`aiplat:${namespace}:*`);
      if (keys.length > 0) await admin.del(...keys);
    }
    for (const redis of connections) redis.disconnect();
  });

  it('delivers across hubs in one order, with sequence numbers increasing by one under concurrent publishers', async () => {
    const a = await redisHub();
    const b = await redisHub();
    const onA = collect(a.hub, 'race');
    const onB = collect(b.hub, 'race');
    await until(() => onA.start !== undefined && onB.start !== undefined);
    const busA = a.hub.coreBus();
    const busB = b.hub.coreBus();
    const seqs = await Promise.all(Array.from({ length: 400 }, (_, i) => (i % 2 ? busA : busB).publish('race', { i, from: i % 2 ? 'a' : 'b' })));
    expect([...seqs].sort((x, y) => x - y)).toEqual(Array.from({ length: 400 }, (_, i) => i + 1));
    await until(() => onA.events.length === 400 && onB.events.length === 400);
    expect(onA.events.map((e) => e.seq)).toEqual(Array.from({ length: 400 }, (_, i) => i + 1));
    expect(onB.events.map((e) => e.payloadJson)).toEqual(onA.events.map((e) => e.payloadJson));
  });

  it('replays from Redis on a process that never saw the events, and reports a trimmed cursor as a gap', async () => {
    const a = await redisHub({ perTopic: 50 });
    const bus = a.hub.coreBus();
    for (let i = 1; i <= 80; i++) await bus.publish('kept', { i }, i % 2 ? { permission: 'x:y' } : undefined);
    const fresh = await redisHub({ perTopic: 50 });
    const recent = collect(fresh.hub, 'kept', 60);
    await until(() => recent.events.length === 20);
    expect(recent.start).toBe(80);
    expect(recent.gaps).toEqual([]);
    expect(recent.events.map((e) => e.seq)).toEqual(Array.from({ length: 20 }, (_, i) => 61 + i));
    expect(recent.events[0]!.audience).toEqual({ permission: 'x:y' });
    const old = collect(fresh.hub, 'kept', 10);
    await until(() => old.events.length === 50);
    expect(old.gaps).toEqual([{ kind: 'gap', topic: 'kept', from: 11, to: 30 }]);
    expect(old.events[0]!.seq).toBe(31);
  });

  it('catches up from Redis after the subscriber connection drops, so nothing published meanwhile is missed', async () => {
    const publisher = await redisHub();
    const listener = await redisHub();
    const got = collect(listener.hub, 'drops');
    await until(() => got.start !== undefined);
    const bus = publisher.hub.coreBus();
    for (let i = 0; i < 10; i++) await bus.publish('drops', { i });
    await until(() => got.events.length === 10);
    // Drop the subscriber connection; ioredis reconnects and subscribes again.
    (listener.transport as unknown as { subscriber: Redis }).subscriber.disconnect(true);
    for (let i = 10; i < 30; i++) await bus.publish('drops', { i });
    await until(() => got.events.length === 30, 10_000);
    expect(got.events.map((e) => e.seq)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    expect(got.gaps).toEqual([]);
  });

  it('keeps installations sharing one Redis apart', async () => {
    const mine = await redisHub();
    const redis = new Redis(REDIS_URL);
    connections.push(redis);
    const otherTransport = new RedisTransport(redis, `${namespace}-other`, logger);
    await otherTransport.start();
    const other = new EventHub(otherTransport, logger);
    hubs.push(other);
    const seen = collect(other, 'private');
    await until(() => seen.start !== undefined);
    expect(await mine.hub.coreBus().publish('private', {})).toBe(1);
    await sleep(100);
    expect(seen.events).toEqual([]);
    expect(await other.coreBus().publish('private', {})).toBe(1);
    const keys = await redis.keys(`aiplat:${namespace}-other:*`);
    await redis.del(...keys);
  });
});
