import http from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { Principal } from '@aiplat/plugin-sdk';
import { EventHub } from '../src/events/hub.js';
import { StreamServer, type StreamLimits } from '../src/events/stream.js';
import { MemoryTransport, DEFAULT_RETENTION, type Retention } from '../src/events/transport.js';
import { rawWebSocket, StreamClient, streamUrl, UpgradeRefused } from './helpers/stream-client.js';

const logger = pino({ level: 'silent' });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const grants: Record<string, string[]> = { viewer: ['things:read'] };
const can = (p: Principal, permission: string) => p.roles.some((r) => grants[r]?.includes(permission) ?? false);

const principals: Record<string, Principal> = {
  admin: { id: 'u-admin', username: 'admin', roles: ['admin'], via: 'session' },
  vera: { id: 'u-vera', username: 'vera', roles: ['viewer'], teams: ['blue'], via: 'session' },
};

/** A StreamServer on a bare HTTP server, with a memory hub and tickets named after the users ("vera-1"), each usable once. */
async function harness(options: { limits?: Partial<StreamLimits>; retention?: Partial<Retention>; basePath?: string } = {}) {
  const hub = new EventHub(new MemoryTransport({ ...DEFAULT_RETENTION, ...options.retention }), logger);
  const used = new Set<string>();
  const stream = new StreamServer({
    hub,
    can,
    logger,
    basePath: options.basePath,
    limits: options.limits,
    consumeTicket: async (ticket) => {
      if (!ticket || used.has(ticket)) return undefined;
      used.add(ticket);
      return principals[ticket.split('-')[0]!];
    },
  });
  const server = http.createServer((_req, res) => res.end('plain http'));
  stream.attach(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  let n = 0;
  const connect = (user: string, prefix = '') => StreamClient.connect(streamUrl(`${base}${prefix}`, `${user}-${++n}`));
  const bus = hub.coreBus();
  return {
    hub,
    bus,
    stream,
    base,
    connect,
    async stop() {
      await stream.close();
      await hub.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

type Harness = Awaited<ReturnType<typeof harness>>;

describe('the stream endpoint', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.stop();
    h = undefined;
  });

  it('refuses before upgrading: 401 without or with a bad or used ticket, 404 elsewhere', async () => {
    h = await harness();
    const refused = async (url: string) => {
      const error = await StreamClient.connect(url).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(UpgradeRefused);
      return error as UpgradeRefused;
    };
    const none = await refused(streamUrl(h.base));
    expect(none.status).toBe(401);
    expect(JSON.parse(none.body).error).toMatchObject({ code: 'unauthenticated', message: expect.stringContaining('ticket') });
    expect((await refused(streamUrl(h.base, 'nobody-1'))).status).toBe(401);
    const ok = await StreamClient.connect(streamUrl(h.base, 'vera-once'));
    const reused = await refused(streamUrl(h.base, 'vera-once'));
    expect(reused.status).toBe(401);
    expect(JSON.parse(reused.body).error.message).toContain('already used or expired');
    expect((await refused(`${h.base.replace('http', 'ws')}/api/v1/elsewhere?ticket=vera-2`)).status).toBe(404);
    ok.close();
  });

  it('answers under PUBLIC_URL\'s base path too', async () => {
    h = await harness({ basePath: '/aiplat' });
    const client = await h.connect('vera', '/aiplat');
    client.subscribe('things');
    expect(await client.waitFor((m) => m.op === 'subscribed')).toMatchObject({ topic: 'things', seq: 0 });
    client.close();
  });

  it('answers client mistakes with an error message and keeps the connection', async () => {
    h = await harness();
    const client = await h.connect('vera');
    client.send('{not json');
    client.send('[1,2]');
    client.send({ op: 'dance' });
    client.send({ op: 'subscribe', topic: 'Bad Topic!' });
    client.send({ op: 'subscribe', topic: 'things', since: -1 });
    client.send({ op: 'subscribe' });
    client.ws.send(Buffer.from([1, 2, 3]));
    client.send({ op: 'ping' });
    await client.waitFor((m) => m.op === 'pong');
    expect(client.control('error').map((m) => m.code)).toEqual([
      'invalid_json',
      'bad_message',
      'unknown_op',
      'bad_topic',
      'bad_message',
      'bad_topic',
      'bad_message',
    ]);
    expect(client.control('error')[2]!.message).toBe('Unknown op "dance": use subscribe, unsubscribe or ping');
    // still usable
    client.subscribe('things');
    await client.waitFor((m) => m.op === 'subscribed');
    await h.bus.publish('things', { ok: true });
    expect(await client.waitFor((m) => m.topic === 'things' && m.op === undefined)).toMatchObject({ seq: 1, payload: { ok: true }, at: expect.any(String) });
    client.send({ op: 'unsubscribe', topic: 'things' });
    await client.waitFor((m) => m.op === 'unsubscribed');
    await h.bus.publish('things', { after: true });
    await sleep(50);
    expect(client.events('things')).toHaveLength(1);
    client.close();
  });

  it('caps the subscriptions of one connection', async () => {
    h = await harness({ limits: { maxSubscriptions: 2 } });
    const client = await h.connect('vera');
    for (const topic of ['a', 'b', 'c']) client.subscribe(topic);
    const error = await client.waitFor((m) => m.op === 'error');
    expect(error).toMatchObject({ code: 'too_many_subscriptions', topic: 'c' });
    client.subscribe('a', 0); // re-subscribing an existing topic is fine
    await client.waitFor((m) => m.op === 'subscribed' && m.topic === 'a' && client.control('subscribed').length === 3);
    client.close();
  });

  it('sends each client only the events its permissions, teams and id allow, in order', async () => {
    h = await harness();
    const admin = await h.connect('admin');
    const vera = await h.connect('vera');
    for (const c of [admin, vera]) c.subscribe('mixed');
    await admin.waitFor((m) => m.op === 'subscribed');
    await vera.waitFor((m) => m.op === 'subscribed');
    const audiences = [undefined, { permission: 'things:read' }, { permission: 'things:write' }, { user: 'u-vera' }, { user: 'u-other' }, { team: 'blue' }, { team: 'red' }, { team: 'blue', user: 'u-vera', permission: 'things:read' }];
    for (let i = 0; i < 80; i++) await h.bus.publish('mixed', { i }, audiences[i % audiences.length]);
    await admin.waitFor((m) => m.op === undefined && m.seq === 80);
    await vera.waitFor((m) => m.op === undefined && m.seq === 80);
    expect(admin.events().map((m) => m.seq)).toEqual(Array.from({ length: 80 }, (_, i) => i + 1));
    const visible = new Set([0, 1, 3, 5, 7]);
    expect(vera.events().map((m) => m.payload.i)).toEqual(Array.from({ length: 80 }, (_, i) => i).filter((i) => visible.has(i % 8)));
    admin.close();
    vera.close();
  });

  it('replays from since, says explicitly when the cursor is older than the window, and never loses the live tail', async () => {
    h = await harness({ retention: { perTopic: 3000 } });
    for (let i = 1; i <= 3500; i++) await h.bus.publish('logs', { i, line: 'x'.repeat(200) });
    const client = await h.connect('vera');
    client.subscribe('logs', 100);
    const ack = await client.waitFor((m) => m.op === 'subscribed');
    expect(ack.seq).toBe(3500);
    const gap = await client.waitFor((m) => m.op === 'gap');
    expect(gap).toMatchObject({ topic: 'logs', from: 101, to: 500 });
    // live events published during the replay come after it, in order
    for (let i = 3501; i <= 3600; i++) void h.bus.publish('logs', { i });
    await client.waitFor((m) => m.op === undefined && m.seq === 3600);
    expect(client.events('logs').map((m) => m.seq)).toEqual(Array.from({ length: 3100 }, (_, i) => 501 + i));
    // the order on the wire: ack, gap, then events
    expect(client.messages.findIndex((m) => m.op === 'subscribed')).toBeLessThan(client.messages.findIndex((m) => m.op === 'gap'));
    expect(client.messages.findIndex((m) => m.op === 'gap')).toBeLessThan(client.messages.findIndex((m) => m.seq === 501));
    // a cursor ahead of the topic
    client.subscribe('logs', 99_999);
    expect(await client.waitFor((m) => m.op === 'reset')).toMatchObject({ topic: 'logs', seq: 3600 });
    client.close();
  });

  it('cuts a stalled client off with 4008 and the reason, and keeps the others going', async () => {
    h = await harness();
    const stalled = await h.connect('admin');
    const healthy = await h.connect('admin');
    for (const c of [stalled, healthy]) c.subscribe('flood');
    await stalled.waitFor((m) => m.op === 'subscribed');
    await healthy.waitFor((m) => m.op === 'subscribed');
    stalled.pause();
    const pad = 'x'.repeat(1000);
    let published = 0;
    // Publish until the server gives up on the stalled client (kernel buffers absorb the first MiBs).
    while (h.stream.slowConsumers === 0 && published < 200_000) {
      for (let i = 0; i < 200; i++) await h.bus.publish('flood', { i: ++published, pad });
      await sleep(1);
    }
    expect(h.stream.slowConsumers).toBe(1);
    expect(h.stream.connectionCount).toBe(1);
    for (let i = 0; i < 10; i++) await h.bus.publish('flood', { i: ++published, pad });
    await healthy.waitFor((m) => m.op === undefined && m.seq === published, 20_000);
    stalled.resume();
    const closed = await stalled.closed;
    expect(closed.code).toBe(4008);
    expect(closed.reason).toMatch(/^slow consumer: \d+ events behind; reconnect with since=\d+$/);
    const since = Number(/since=(\d+)/.exec(closed.reason)![1]);
    // It received exactly the events up to that cursor, in order, and resumes from there without a gap.
    expect(stalled.events().map((m) => m.seq)).toEqual(Array.from({ length: since }, (_, i) => i + 1));
    const again = await h.connect('admin');
    again.subscribe('flood', since);
    await again.waitFor((m) => m.op === undefined && m.seq === published, 20_000);
    expect(again.events().map((m) => m.seq)).toEqual(Array.from({ length: published - since }, (_, i) => since + 1 + i));
    expect(again.control('gap')).toEqual([]);
    healthy.close();
    again.close();
  });

  it('drops a connection that does not answer pings, and keeps one that does', async () => {
    h = await harness({ limits: { heartbeatMs: 100 } });
    const alive = await h.connect('vera');
    const dead = await rawWebSocket(streamUrl(h.base, 'vera-dead'), { read: true });
    const gone = new Promise((resolve) => dead.once('close', resolve));
    expect(h.stream.connectionCount).toBe(2);
    await gone;
    expect(h.stream.connectionCount).toBe(1);
    await sleep(300);
    expect(alive.ws.readyState).toBe(alive.ws.OPEN);
    alive.close();
  });

  it('closes every connection with 1001 on shutdown and refuses new ones', async () => {
    h = await harness();
    const a = await h.connect('vera');
    const b = await h.connect('admin');
    const closing = h.stream.close();
    expect((await a.closed).code).toBe(1001);
    expect((await b.closed).code).toBe(1001);
    await closing;
    const refused = await h.connect('vera').catch((e: UpgradeRefused) => e);
    expect((refused as UpgradeRefused).status).toBe(503);
  });
});
