import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestCore } from '@aiplat/testing';

describe('route contract and bad input', () => {
  let core: TestCore;
  beforeAll(async () => {
    core = await startTestCore({ plugins: ['examples', 'core/test/fixtures/plugins/probe'] });
  });
  afterAll(() => core?.stop());

  const post = (path: string, raw: string, headers: Record<string, string> = { 'content-type': 'application/json' }) =>
    core.client.request('POST', path, { raw, headers });

  it('answers health without credentials', async () => {
    const res = await core.client.anonymous().get('/api/v1/health');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      status: 'ok',
      version: '0.1.0',
      pluginApi: '1.0.0',
      database: core.databaseUrl ? 'postgres' : 'embedded',
      redis: core.core.config.redisUrl !== undefined,
    });
  });

  it('validates the greeting name: 1 to 64 characters', async () => {
    const long = await core.client.get(`/api/plugins/hello/greeting?name=${'a'.repeat(65)}`);
    expect(long.status).toBe(400);
    expect(long.body.error).toMatchObject({ code: 'validation_failed', message: 'Invalid query: name: must be at most 64 characters long' });
    const empty = await core.client.get('/api/plugins/hello/greeting?name=');
    expect(empty.status).toBe(400);
    expect(empty.body.error.message).toBe('Invalid query: name: must be at least 1 character long');
    const missing = await core.client.get('/api/plugins/hello/greeting');
    expect(missing.body.error.message).toBe('Invalid query: name: "name" is required');
    const extra = await core.client.get('/api/plugins/hello/greeting?name=Ada&shout=1');
    expect(extra.body.error.message).toBe('Invalid query: shout: unknown field "shout"');
  });

  it('refuses malformed JSON with a readable message', async () => {
    const res = await post('/api/plugins/hello/greetings', '{"name": "Ada"');
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_json');
    expect(res.body.error.message).toMatch(/^The request body is not valid JSON: /);
  });

  it('refuses the wrong content type', async () => {
    const res = await post('/api/plugins/hello/greetings', 'name=Ada', { 'content-type': 'application/x-www-form-urlencoded' });
    expect(res.status).toBe(415);
    expect(res.body.error.message).toBe('This route accepts application/json, but the request says application/x-www-form-urlencoded in Content-Type');
    const none = await post('/api/plugins/hello/greetings', '{"name":"Ada"}', {});
    expect(none.status).toBe(415);
  });

  it('refuses a missing body, unknown fields and wrong types', async () => {
    expect((await core.client.post('/api/plugins/hello/greetings')).body.error.message).toBe('This route needs a JSON request body');
    const unknown = await core.client.post('/api/plugins/hello/greetings', { name: 'Ada', mood: 'happy' });
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.details.problems).toEqual([{ path: 'mood', message: 'unknown field "mood"' }]);
    const wrong = await core.client.post('/api/plugins/hello/greetings', { name: 42 });
    expect(wrong.body.error.message).toBe('Invalid request body: name: must be string');
    const notObject = await core.client.post('/api/plugins/hello/greetings', ['Ada']);
    expect(notObject.body.error.message).toBe('Invalid request body: request body must be object');
    const nested = await core.client.post('/api/plugins/probe/items', { name: 'x', tags: ['a', 3] });
    expect(nested.body.error.message).toBe('Invalid request body: tags.1: must be string');
  });

  it('refuses bodies over the route limit: declared and streamed', async () => {
    const big = JSON.stringify({ name: 'x', tags: ['y'.repeat(3000)] });
    const declared = await core.client.post('/api/plugins/probe/items', JSON.parse(big));
    expect(declared.status).toBe(413);
    expect(declared.body.error.message).toBe('The request body is larger than this route accepts (2048 bytes at most)');
    // chunked: no Content-Length, so the limit is enforced while reading
    const stream = new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(big));
        controller.close();
      },
    });
    const chunked = await fetch(`${core.url}/api/plugins/probe/items`, {
      method: 'POST',
      headers: { authorization: `Bearer ${core.client.token}`, 'content-type': 'application/json' },
      body: stream,
      duplex: 'half',
    } as RequestInit);
    expect(chunked.status).toBe(413);
    const defaultLimit = await core.client.post('/api/plugins/hello/greetings', { name: 'x'.repeat(1024 * 1024 + 10) });
    expect(defaultLimit.status).toBe(413);
    expect(defaultLimit.body.error.details).toEqual({ limit: 1048576 });
  });

  it('checks raw bodies for type and size', async () => {
    const ok = await core.client.request('PUT', '/api/plugins/probe/blob', { raw: new Uint8Array(10), headers: { 'content-type': 'application/octet-stream' } });
    expect(ok.body).toEqual({ bytes: 10 });
    const big = await core.client.request('PUT', '/api/plugins/probe/blob', { raw: new Uint8Array(17), headers: { 'content-type': 'application/octet-stream' } });
    expect(big.status).toBe(413);
    const wrongType = await core.client.request('PUT', '/api/plugins/probe/blob', { raw: 'abc', headers: { 'content-type': 'text/plain' } });
    expect(wrongType.status).toBe(415);
  });

  it('streams multipart parts in order and caps the whole body', async () => {
    const content = new Uint8Array(40_000).map((_, i) => i % 251);
    const form = new FormData();
    form.append('title', 'weights');
    form.append('file', new Blob([content]), 'w.bin');
    const res = await fetch(`${core.url}/api/plugins/probe/upload`, { method: 'POST', headers: { authorization: `Bearer ${core.client.token}` }, body: form });
    expect(res.status).toBe(200);
    const { createHash } = await import('node:crypto');
    expect(((await res.json()) as { parts: unknown[] }).parts).toEqual([
      { field: 'title', value: 'weights' },
      { file: 'file', filename: 'w.bin', bytes: 40_000, sha256: createHash('sha256').update(content).digest('hex') },
    ]);
    const big = new FormData();
    big.append('a', new Blob([new Uint8Array(40_000)]), 'a.bin');
    big.append('b', new Blob([new Uint8Array(40_000)]), 'b.bin');
    const tooBig = await fetch(`${core.url}/api/plugins/probe/upload`, { method: 'POST', headers: { authorization: `Bearer ${core.client.token}` }, body: big });
    expect(tooBig.status).toBe(413);
    const notMultipart = await core.client.post('/api/plugins/probe/upload', { a: 1 });
    expect(notMultipart.status).toBe(415);
  });

  it('refuses a body on routes that take none', async () => {
    const res = await core.client.request('POST', '/api/v1/plugins/hello-shout/enable', { body: { force: true } });
    expect(res.status).toBe(400);
    expect(res.body.error.message).toBe('POST /api/v1/plugins/hello-shout/enable takes no request body');
  });

  it('coerces and defaults query parameters by schema', async () => {
    const res = await core.client.get('/api/plugins/probe/items');
    expect(res.body.limit).toBe(10);
    const bad = await core.client.get('/api/plugins/probe/items?limit=abc');
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toBe('Invalid query: limit: must be integer');
  });

  it('requires a valid bearer token and the route permission', async () => {
    const anon = await core.client.anonymous().get('/api/plugins/hello/greeting?name=Ada');
    expect(anon.status).toBe(401);
    expect(anon.body.error.code).toBe('unauthenticated');
    const forged = await core.client.withToken('eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.bad').get('/api/plugins/hello/greeting?name=Ada');
    expect(forged.status).toBe(401);
  });

  it('signs in only with the right password', async () => {
    const wrong = await core.client.anonymous().post('/api/v1/auth/login', { username: 'admin', password: 'nope-nope-nope' });
    expect(wrong.status).toBe(401);
    expect(wrong.body.error.code).toBe('invalid_credentials');
    const unknown = await core.client.anonymous().post('/api/v1/auth/login', { username: 'ghost', password: 'nope-nope-nope' });
    expect(unknown.status).toBe(401);
    const me = await core.client.get('/api/v1/auth/me');
    expect(me.body).toMatchObject({ username: 'admin', roles: ['admin'] });
  });

  it('rotates refresh tokens and revokes the family when an old one is reused', async () => {
    const login = await core.client.anonymous().post('/api/v1/auth/login', { username: 'admin', password: 'test-admin-password-1234' });
    expect(login.body).toMatchObject({ expiresIn: 900, tokenType: 'Bearer' });
    const first = login.body.refreshToken as string;
    const rotated = await core.client.anonymous().post('/api/v1/auth/refresh', { refreshToken: first });
    expect(rotated.status).toBe(200);
    const reuse = await core.client.anonymous().post('/api/v1/auth/refresh', { refreshToken: first });
    expect(reuse.status).toBe(401);
    expect(reuse.body.error.message).toBe('The refresh token was already used; sign in again');
    // the reuse revoked the whole family, including the rotated token
    const after = await core.client.anonymous().post('/api/v1/auth/refresh', { refreshToken: rotated.body.refreshToken });
    expect(after.status).toBe(401);
  });

  it('runs a mutating handler and its audit row in one transaction', async () => {
    const created = await core.client.post('/api/plugins/probe/items', { name: 'kept', size: 3 });
    expect(created.status).toBe(201);
    const exploded = await core.client.post('/api/plugins/probe/items', { name: 'explode' });
    expect(exploded.status).toBe(500);
    expect(exploded.body.error.code).toBe('internal');
    expect(exploded.body.error.message).not.toContain('exploded');
    const conflict = await core.client.post('/api/plugins/probe/items', { name: 'taken' });
    expect(conflict.status).toBe(409);
    const items = await core.client.get('/api/plugins/probe/items');
    expect(items.body.items.map((i: { name: string }) => i.name)).toEqual(['kept']);
    const audit = await core.core.database.knex('audit_log').where({ plugin: 'probe' }).whereLike('action', '%/items').select('action', 'status', 'actor_name');
    expect(audit).toEqual([{ action: 'probe:POST /items', status: 201, actor_name: 'admin' }]);
    const gone = await core.client.delete('/api/plugins/probe/items/kept');
    expect(gone.status).toBe(204);
    expect((await core.client.delete('/api/plugins/probe/items/kept')).status).toBe(404);
  });

  it('explains a global-connection query inside a request transaction instead of hanging (embedded), or serves it (PostgreSQL)', async () => {
    const started = Date.now();
    const res = await core.client.post('/api/plugins/probe/global', {});
    if (core.core.database.kind === 'embedded') {
      // the handler waits for the single connection its own transaction holds, until the acquire timeout
      expect(res.status).toBe(503);
      expect(res.body.error.message).toContain('use ctx.db in route handlers');
      expect(Date.now() - started).toBeLessThan(15_000);
    } else {
      expect(res.status).toBe(200);
    }
  });

  it('answers unknown paths and methods with catalog errors', async () => {
    const missing = await core.client.get('/api/v1/nothing-here');
    expect(missing.status).toBe(404);
    expect(missing.body.error.code).toBe('not_found');
    const method = await core.client.request('PATCH', '/api/plugins/hello/greeting');
    expect(method.status).toBe(405);
    expect(method.body.error.code).toBe('method_not_allowed');
  });

  it('lets a handler take over the response for streaming', async () => {
    const res = await core.client.get('/api/plugins/probe/events');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    expect(res.text).toBe('data: 1\n\ndata: 2\n\ndata: 3\n\n');
  });

  it('answers custom routes in the OpenAI error style when they ask for it', async () => {
    const res = await core.client.anonymous().get('/api/plugins/probe/openai-style');
    expect(res.status).toBe(401);
    expect(res.body).toEqual({ error: { message: 'bad key', type: 'authentication_error', param: null, code: 'unauthenticated' } });
  });

  it('writes one access log line per request, with secrets redacted', async () => {
    await core.client.get('/api/plugins/hello/greeting?name=Logged', { headers: { 'x-request-id': 'access-1' } });
    await core.client.anonymous().get('/api/v1/health?probe=test-admin-password-1234', { headers: { 'x-request-id': 'access-2' } });
    const lines = core.logs.filter((l) => l.msg === 'request' && String(l.reqId).startsWith('access-'));
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ level: 30, service: 'aiplat', reqId: 'access-1', method: 'GET', url: '/api/plugins/hello/greeting?name=Logged', status: 200, user: 'admin' });
    expect(typeof lines[0]!.ms).toBe('number');
    expect(typeof lines[0]!.time).toBe('number');
    expect(lines[1]).toMatchObject({ reqId: 'access-2', url: '/api/v1/health?probe=••••', status: 200 });
    expect(lines[1]).not.toHaveProperty('user');
  });

  it('echoes a valid request id and makes one otherwise', async () => {
    const given = await core.client.get('/api/v1/health', { headers: { 'x-request-id': 'abc-123' } });
    expect(given.headers.get('x-request-id')).toBe('abc-123');
    const made = await core.client.get('/api/v1/health', { headers: { 'x-request-id': 'bad id with spaces' } });
    expect(made.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    const failed = await core.client.get('/api/v1/nothing', { headers: { 'x-request-id': 'trace-me' } });
    expect(failed.body.error.requestId).toBe('trace-me');
  });

  it('describes core and plugin routes in OpenAPI 3.1 from the validating schemas', async () => {
    const res = await core.client.anonymous().get('/api/v1/openapi.json');
    expect(res.status).toBe(200);
    expect(res.body.openapi).toBe('3.1.0');
    const greeting = res.body.paths['/api/plugins/hello/greeting'].get;
    expect(greeting.parameters).toEqual([{ name: 'name', in: 'query', required: true, schema: { type: 'string', minLength: 1, maxLength: 64 } }]);
    expect(greeting['x-aiplat-auth']).toEqual({ permission: 'greetings:read' });
    const post = res.body.paths['/api/plugins/hello/greetings'].post;
    expect(post.requestBody.content['application/json'].schema).toMatchObject({ required: ['name'], additionalProperties: false });
    expect(res.body.paths['/api/v1/plugins/{id}/disable'].post['x-aiplat-mutates']).toBe(true);
    expect(res.body.paths['/api/v1/health'].get['x-aiplat-auth'].public).toMatch(/load balancers/);
  });

  it('exposes Prometheus metrics by route template', async () => {
    await core.client.get('/api/plugins/hello/greeting?name=Metrics');
    const res = await core.client.anonymous().get('/metrics');
    expect(res.status).toBe(200);
    expect(res.text).toMatch(/aiplat_http_requests_total\{method="GET",route="\/api\/plugins\/hello\/greeting",status="200"\} \d+/);
    expect(res.text).toContain('aiplat_http_request_duration_seconds_bucket');
  });
});

describe('metrics scrape token', () => {
  it('restricts /metrics to the configured token', async () => {
    const core = await startTestCore({ config: { metricsToken: 'scrape-token-0123456789' } });
    try {
      expect((await core.client.anonymous().get('/metrics')).status).toBe(401);
      expect((await core.client.get('/metrics')).status).toBe(401);
      const ok = await core.client.anonymous().get('/metrics', { headers: { authorization: 'Bearer scrape-token-0123456789' } });
      expect(ok.status).toBe(200);
    } finally {
      await core.stop();
    }
  });
});
