import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, TestClient, type TestCore } from '@aiplat/testing';
import { hashToken } from '../src/auth/tokens.js';
import { StreamClient, streamUrl, UpgradeRefused, openStream } from './helpers/stream-client.js';


async function refusal(url: string): Promise<UpgradeRefused> {
  const result = await StreamClient.connect(url).then(
    (client) => {
      client.close();
      return undefined;
    },
    (error: unknown) => error,
  );
  expect(result).toBeInstanceOf(UpgradeRefused);
  return result as UpgradeRefused;
}

describe('the event stream on a running core', () => {
  let core: TestCore;
  let viewer: TestClient;
  let viewerId: string;

  beforeAll(async () => {
    core = await startTestCore({
      plugins: ['core/test/fixtures/stream-plugin', 'examples/hello'],
      // Served under a path prefix: the stream must answer there too.
      config: { publicUrl: 'https://aiplat.example.com/aiplat' },
    });
    const vera = await core.createUser('vera', ['viewer']);
    viewerId = vera.id;
    viewer = vera.client;
  });
  afterAll(async () => {
    await core?.stop();
  });

  it('issues single-use tickets to signed-in callers, stored only as a hash', async () => {
    expect((await core.client.anonymous().post('/api/v1/stream/ticket')).status).toBe(401);
    const res = await viewer.post('/api/v1/stream/ticket');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ ticket: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/), expiresIn: 30 });
    const rows = await core.core.database.knex('stream_tickets').select('token_hash', 'principal');
    expect(rows.map((r: { token_hash: string }) => r.token_hash)).toContain(hashToken(res.body.ticket));
    expect(JSON.stringify(rows)).not.toContain(res.body.ticket);

    const client = await StreamClient.connect(streamUrl(core.url, res.body.ticket));
    client.subscribe('streamer.tickets');
    await client.waitFor((m) => m.op === 'subscribed');
    const again = await refusal(streamUrl(core.url, res.body.ticket));
    expect(again.status).toBe(401);
    expect(JSON.parse(again.body).error).toMatchObject({ code: 'unauthenticated', message: expect.stringContaining('already used or expired') });
    client.close();
  });

  it('refuses a missing, made-up or expired ticket with 401 before upgrading', async () => {
    expect((await refusal(streamUrl(core.url))).status).toBe(401);
    expect((await refusal(streamUrl(core.url, 'x'.repeat(43)))).status).toBe(401);
    expect((await refusal(streamUrl(core.url, "'; drop table users; --"))).status).toBe(401);
    const { body } = await viewer.post('/api/v1/stream/ticket');
    await core.core.database.knex('stream_tickets').where({ token_hash: hashToken(body.ticket) }).update({ expires_at: new Date(Date.now() - 1000) });
    const expired = await refusal(streamUrl(core.url, body.ticket));
    expect(expired.status).toBe(401);
  });

  it('answers under PUBLIC_URL\'s path and delivers a plugin\'s events by audience', async () => {
    const admin = await openStream(`${core.url}/aiplat`, core.client.token!);
    const vera = await openStream(`${core.url}/aiplat`, viewer.token!);
    const topic = 'streamer.mixed';
    for (const c of [admin, vera]) c.subscribe(topic);
    await admin.waitFor((m) => m.op === 'subscribed');
    await vera.waitFor((m) => m.op === 'subscribed');
    const published = await core.client.post('/api/plugins/streamer/publish', { topic: 'mixed', count: 60, viewerId });
    expect(published.status).toBe(200);
    expect(published.body).toMatchObject({ topic, published: 60, first: 1, last: 60 });
    await admin.waitFor((m) => m.op === undefined && m.seq === 60);
    await vera.waitFor((m) => m.op === undefined && m.seq === 58); // i = 57: 57 % 6 = 3, for vera
    await new Promise((r) => setTimeout(r, 50));
    expect(admin.events(topic).map((m) => m.payload.i)).toEqual(Array.from({ length: 60 }, (_, i) => i));
    expect(vera.events(topic).map((m) => m.payload.i)).toEqual(Array.from({ length: 60 }, (_, i) => i).filter((i) => [0, 1, 3].includes(i % 6)));
    admin.close();
    vera.close();
  });

  it('lets a plugin publish only to its own topics', async () => {
    const res = await core.client.post('/api/plugins/streamer/publish-foreign', { topic: 'hello.greetings' });
    expect(res.body).toEqual({
      refused: true,
      name: 'EventUsageError',
      message: 'plugin streamer may publish only to its own topics "streamer.<name>" (optionally with /sub-topics), not to "hello.greetings"',
    });
  });

  it('publishes plugin state changes on the plugins topic, to holders of plugins:read and to plugin subscribers', async () => {
    const vera = await openStream(core.url, viewer.token!);
    vera.subscribe('plugins');
    await vera.waitFor((m) => m.op === 'subscribed');
    expect((await core.client.post('/api/v1/plugins/hello/disable')).status).toBe(200);
    expect((await core.client.post('/api/v1/plugins/hello/enable')).status).toBe(200);
    await vera.waitFor((m) => m.topic === 'plugins' && m.payload?.state === 'enabled');
    expect(vera.events('plugins').map((m) => m.payload)).toEqual([
      { id: 'hello', state: 'disabled', reason: expect.any(String) },
      { id: 'hello', state: 'enabled' },
    ]);
    // The fixture subscribed to the topic from its start hook.
    const seen = await core.client.get('/api/plugins/streamer/seen');
    expect(seen.body.items.map((e: { payload: unknown }) => e.payload)).toEqual([
      { id: 'hello', state: 'disabled', reason: expect.any(String) },
      { id: 'hello', state: 'enabled' },
    ]);
    vera.close();
  });

  it('closes stream connections with 1001 when the core stops', async () => {
    const other = await startTestCore({ plugins: [] });
    try {
      const client = await openStream(other.url, other.client.token!);
      client.subscribe('plugins');
      await client.waitFor((m) => m.op === 'subscribed');
      await other.stop();
      expect((await client.closed).code).toBe(1001);
    } finally {
      await other.stop();
    }
  });
});
