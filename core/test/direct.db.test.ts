/**
 * The direct path (core/src/http/direct.ts): data-plane routes (metered, not mutating, a
 * passthrough body, no path parameters) are served by the request listener without Koa, under the
 * same contract: the request id, authentication and query validation, errors in the route's style,
 * denied requests audited, the access log, the HTTP metrics, the requestFinished hook; a disabled
 * plugin's route is not served. Fixture: core/test/fixtures/plugins/relay.
 */
import http from 'node:http';
import Koa from 'koa';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { isDataPlane } from '../src/http/route-contract.js';

describe('the direct path for data-plane routes', () => {
  let core: TestCore;
  beforeAll(async () => {
    core = await startTestCore({ plugins: ['core/test/fixtures/plugins/relay'] });
  });
  afterAll(() => core?.stop());

  const send = (path: string, body: string, headers: Record<string, string> = {}) =>
    fetch(new URL(path, core.url), { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });

  it('knows a data-plane route by its declaration', () => {
    const base = { method: 'POST' as const, path: '/x', custom: { reason: 'its own keys, a test' }, mutates: false, audit: 'metered' as const, body: { mode: 'passthrough' as const }, handler: () => undefined };
    expect(isDataPlane(base)).toBe(true);
    expect(isDataPlane({ ...base, audit: 'explicit' })).toBe(false);
    expect(isDataPlane({ ...base, mutates: true })).toBe(false);
    expect(isDataPlane({ ...base, body: { mode: 'none' } })).toBe(false);
    expect(isDataPlane({ ...base, path: '/x/:id' })).toBe(false);
  });

  it('serves it at the plugin prefix and at its alias without making a Koa context; the Koa path serves its twin', async () => {
    const contexts = vi.spyOn(Koa.prototype, 'createContext');
    try {
      for (const path of ['/api/plugins/relay/echo', '/v7/echo']) {
        const res = await send(path, '{"hello":"world"}', { 'x-request-id': 'relay-test-1' });
        expect(res.status).toBe(200);
        expect(res.headers.get('x-request-id')).toBe('relay-test-1');
        expect(res.headers.get('x-relay-request')).toBe('relay-test-1');
        expect(await res.json()).toEqual({ echo: '{"hello":"world"}', ip: expect.stringMatching(/127\.0\.0\.1/), params: {}, plugin: 'relay' });
      }
      expect(contexts).not.toHaveBeenCalled();
      // The same handler behind a path parameter goes through Koa, and answers alike.
      const twin = await send('/v7/echo/ada', '{"a":1}');
      expect(twin.status).toBe(200);
      expect(await twin.json()).toMatchObject({ echo: '{"a":1}', params: { name: 'ada' } });
      expect(contexts).toHaveBeenCalled();
    } finally {
      contexts.mockRestore();
    }
  });

  it('parses the query string alike on both paths: repeated keys as arrays, "+" and percent-escapes decoded, bare keys empty', async () => {
    const search = '?tag=a+b&tag=%C3%A9t%C3%A9&empty=&bare&odd=100%&__proto__=x';
    const expected = { tag: ['a b', 'été'], empty: '', bare: '', odd: '100%', ['__proto__']: 'x' };
    for (const path of ['/v7/echo', '/v7/echo/ada']) {
      const res = await send(`${path}${search}`, '{}');
      expect(res.status).toBe(200);
      const body = (await res.json()) as { query: Record<string, unknown> };
      expect(Object.getPrototypeOf(body.query)).toBe(Object.prototype);
      expect(Object.entries(body.query)).toEqual(Object.entries(expected));
    }
  });

  it('writes what a handler returns as Koa would: a reply with its status and headers, text, nothing as 204', async () => {
    const r = await send('/v7/echo', 'abc', { 'x-relay': 'reply' });
    expect(r.status).toBe(201);
    expect(r.headers.get('x-relay-reply')).toBe('yes');
    expect(r.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await r.json()).toEqual({ got: 3 });
    const t = await send('/v7/echo', 'abc', { 'x-relay': 'text' });
    expect(t.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await t.text()).toBe('text:abc');
    const n = await send('/v7/echo', 'abc', { 'x-relay': 'nothing' });
    expect(n.status).toBe(204);
  });

  it('answers errors in the route’s style, hides a server fault’s message, and audits a refusal', async () => {
    const refused = await send('/v7/echo', '{}', { 'x-relay': 'refuse', 'x-request-id': 'relay-denied-1' });
    expect(refused.status).toBe(401);
    expect(await refused.json()).toEqual({ error: { message: 'Incorrect API key provided', type: 'authentication_error', param: null, code: 'invalid_api_key' } });
    const audit = await core.client.get('/api/v1/audit?outcome=denied&limit=50');
    expect(audit.status).toBe(200);
    expect(audit.body.items.some((row: any) => row.requestId === 'relay-denied-1' && row.action === 'relay:POST /echo')).toBe(true);

    const boom = await send('/v7/echo', '{}', { 'x-relay': 'boom' });
    expect(boom.status).toBe(500);
    expect(boom.headers.get('x-request-id')).toBeTruthy();
    const text = await boom.text();
    expect(text).not.toContain('secret');
    expect(JSON.parse(text).error.type).toBe('server_error');
  });

  it('closes the connection after an error when the handler left the body unread', async () => {
    const url = new URL('/v7/echo', core.url);
    const answer = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = http.request(url, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': '100000', 'x-relay': 'unread' } }, resolve);
      req.once('error', reject);
      // Half the body: the rest never comes, so it cannot have been read.
      req.write('x'.repeat(50_000));
    });
    answer.resume();
    expect(answer.statusCode).toBe(400);
    expect(answer.headers.connection).toBe('close');
  });

  it('authenticates and validates a data-plane route with a permission', async () => {
    const anonymous = await fetch(new URL('/v7/whoami', core.url), { method: 'POST' });
    expect(anonymous.status).toBe(401);
    expect(((await anonymous.json()) as { error: { code: string } }).error.code).toBe('unauthenticated');
    const ok = await core.client.post('/v7/whoami?n=3');
    expect(ok.status).toBe(200);
    expect(ok.body).toEqual({ user: 'admin', n: 3 });
    const bad = await core.client.post('/v7/whoami?n=zero');
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toBe('Invalid query: n: must be integer');
  });

  it('counts its requests in /metrics by route template', async () => {
    const metrics = await (await fetch(new URL('/metrics', core.url))).text();
    expect(metrics).toMatch(/aiplat_http_requests_total\{method="POST",route="\/v7\/echo",status="200"\} [1-9]/);
    expect(metrics).toMatch(/aiplat_http_requests_total\{method="POST",route="\/api\/plugins\/relay\/echo",status="200"\} [1-9]/);
  });

  it('serves it under PUBLIC_URL’s path when the reverse proxy in front does not strip it', async () => {
    const behind = await startTestCore({ plugins: ['core/test/fixtures/plugins/relay'], config: { publicUrl: 'https://example.com/aiplat/' } });
    const contexts = vi.spyOn(Koa.prototype, 'createContext');
    try {
      for (const path of ['/aiplat/v7/echo', '/v7/echo']) {
        const res = await fetch(new URL(path, behind.url), { method: 'POST', body: 'x' });
        expect(res.status).toBe(200);
        expect(await res.json()).toMatchObject({ echo: 'x' });
      }
      expect(contexts).not.toHaveBeenCalled();
    } finally {
      contexts.mockRestore();
      await behind.stop();
    }
  });

  it('does not serve a disabled plugin’s route, and serves it again once enabled', async () => {
    expect((await core.client.post('/api/v1/plugins/relay/disable')).status).toBe(200);
    const gone = await send('/v7/echo', '{}');
    expect(gone.status).toBe(404);
    const prefixed = await send('/api/plugins/relay/echo', '{}');
    expect(prefixed.status).toBe(404);
    expect(((await prefixed.json()) as { error: { message: string } }).error.message).toBe('Plugin "relay" is disabled');
    expect((await core.client.post('/api/v1/plugins/relay/enable')).status).toBe(200);
    expect((await send('/v7/echo', '{}')).status).toBe(200);
  });
});
