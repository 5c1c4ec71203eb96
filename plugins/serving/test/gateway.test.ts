// The gateway (/v1) against real replica processes: the test responder runtime
// (test/fixtures/responder-runtime: a small OpenAI-compatible Node server per replica, started by
// the scheduler's local executor, readiness-checked) behind a real core with the models and
// serving plugins. Covers API keys (scope, expiry, revocation), rate limits, pass-through of
// unknown fields, embeddings, OpenAI-style errors, least-outstanding balancing, the canary split
// over 2,000 requests, a replica killed during a stream of requests, passive ejection and
// re-admission, a slow client's bounded memory, metering into the usage report, /metrics and the
// `serving.sloBreached` hook.
import http from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { API, configOnlyModel, registerVersions, replicaPid, repo, servesOnly, waitDeployment } from './harness.js';

let core: TestCore;
let work: string;
let version: string;
let deployment: any;
let secret: string;

/** A call to /v1 with a bearer (a gateway key by default), answered as text. */
async function v1(pathname: string, body: unknown, bearer: string | null = secret, method = 'POST') {
  const res = await fetch(new URL(`/v1${pathname}`, core.url), {
    method,
    headers: { ...(bearer ? { authorization: `Bearer ${bearer}` } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

const chatBody = (extra: Record<string, unknown> = {}) => ({ model: 'gw', messages: [{ role: 'user', content: 'hi' }], max_tokens: 8, ...extra });

async function makeKey(body: Record<string, unknown>): Promise<any> {
  const res = await core.client.post(`${API}/keys`, body);
  expect(res.status, res.text).toBe(201);
  return res.body;
}

/** Until `fn` holds (polled). */
async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('the OpenAI-compatible gateway', { timeout: 240_000 }, () => {
  beforeAll(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'aiplat-gateway-'));
    const model = await configOnlyModel(path.join(work, 'm'), 256);
    core = await startTestCore({
      plugins: [
        ...['models', 'serving'].map((p) => path.join(repo, 'plugins', p)),
        path.join(repo, 'plugins', 'serving', 'test', 'fixtures', 'responder-runtime'),
        path.join(repo, 'plugins', 'serving', 'test', 'fixtures', 'hook-probe'),
      ],
    });
    const config = await core.client.put('/api/v1/plugins/serving/config', { upstreamTimeoutSeconds: 2, ejectAfterFailures: 2, ejectSeconds: 2 });
    expect(config.status, config.text).toBe(200);
    version = (await registerVersions(core, 'gw-model', work, [model])).versions[0]!;
    const res = await core.client.post(`${API}/deployments`, { name: 'gw', modelVersion: version, runtime: 'responder', replicas: 2, options: { tag: 'r1' } });
    expect(res.status, res.text).toBe(201);
    deployment = await waitDeployment(core, res.body.id, servesOnly(1), 60_000);
    secret = (await makeKey({ name: 'ci' })).secret;
  }, 300_000);

  afterAll(async () => {
    await core?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  }, 120_000);

  it('creates a key shown once, stored hashed, and lets it call the deployed model', async () => {
    expect(secret).toMatch(/^sk-aiplat-[A-Za-z0-9_-]{43}$/);
    const list = await core.client.get(`${API}/keys`);
    expect(list.status).toBe(200);
    expect(list.text).not.toContain(secret);
    expect(list.body.items[0]).toMatchObject({ name: 'ci', status: 'active', models: [], prefix: `${secret.slice(0, 16)}…` });
    const stored = (await core.core.database.knex('p_serving_api_keys').first()) as { hash: string };
    expect(stored.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(stored)).not.toContain(secret);

    const models = await v1('/models', undefined, secret, 'GET');
    expect(models.status).toBe(200);
    expect(models.json).toMatchObject({ object: 'list', data: [{ id: 'gw', object: 'model' }] });

    // Unknown fields are passed on untouched; the answer comes back as the replica gave it.
    const answer = await v1('/chat/completions', chatBody({ x_vendor: { keep: [1, 2, 3] }, temperature: 0.3 }));
    expect(answer.status, answer.text).toBe(200);
    expect(answer.json).toMatchObject({ object: 'chat.completion', model: 'gw', system_fingerprint: 'r1', usage: { total_tokens: 12 } });
    expect(answer.json.echo).toMatchObject({ x_vendor: { keep: [1, 2, 3] }, temperature: 0.3, model: 'gw' });
    expect(answer.headers.get('x-aiplat-revision')).toBe('1');

    const embeddings = await v1('/embeddings', { model: 'gw', input: ['abc', 'de'] });
    expect(embeddings.status, embeddings.text).toBe(200);
    expect(embeddings.json.data.map((d: any) => d.embedding[0])).toEqual([3, 2]);
  });

  it('answers bad requests in OpenAI’s error shape with the right status, never hanging', async () => {
    const shape = { error: { message: expect.any(String), type: expect.any(String), code: expect.anything() } };
    const missing = await v1('/chat/completions', chatBody(), null);
    expect(missing.status).toBe(401);
    expect(missing.json).toMatchObject({ error: { type: 'authentication_error', code: 'missing_api_key' } });
    const wrong = await v1('/chat/completions', chatBody(), 'sk-aiplat-not-a-key');
    expect(wrong.status).toBe(401);
    expect(wrong.json).toMatchObject({ error: { code: 'invalid_api_key' } });
    const unknown = await v1('/chat/completions', chatBody({ model: 'no-such-model' }));
    expect(unknown.status).toBe(404);
    expect(unknown.json).toMatchObject({ error: { code: 'model_not_found', param: 'model', type: 'invalid_request_error' } });
    expect(unknown.json.error.message).toContain('no-such-model');
    const malformed = await v1('/chat/completions', '{"model": "gw", "messages": [');
    expect(malformed.status).toBe(400);
    expect(malformed.json).toMatchObject(shape);
    expect(malformed.json.error.message).toMatch(/not valid JSON/);
    const notObject = await v1('/chat/completions', '[1,2]');
    expect(notObject.status).toBe(400);
    const tooLong = await v1('/chat/completions', chatBody({ max_tokens: 100_000 }));
    expect(tooLong.status).toBe(400);
    expect(tooLong.json).toMatchObject({ error: { param: 'max_tokens', code: 'context_length_exceeded' } });
    expect(tooLong.json.error.message).toContain('at most 256 tokens');
    const noModel = await v1('/chat/completions', { messages: [] });
    expect(noModel.status).toBe(400);
    expect(noModel.json).toMatchObject({ error: { param: 'model' } });
    // Larger than 16 MiB: refused with 413 (the rest of the body is read and dropped), the connection answered.
    const huge = await v1('/chat/completions', JSON.stringify(chatBody({ messages: [{ role: 'user', content: 'x'.repeat(17 * 1024 * 1024) }] })));
    expect(huge.status).toBe(413);
    expect(huge.json).toMatchObject({ error: { type: 'invalid_request_error', code: 'payload_too_large' } });
    expect(huge.json.error.message).toContain('16 MiB');
    // The replica's own refusal comes back as it is (status and body).
    const refused = await v1('/chat/completions', chatBody({ responder: { status: 422 } }));
    expect(refused.status).toBe(422);
    expect(refused.json.error.message).toContain('answers 422');
  });

  it('keeps a key to its team’s models, refuses it once revoked or expired', async () => {
    const other = await makeKey({ name: 'other-model-only', models: [] });
    expect((await v1('/chat/completions', chatBody(), other.secret)).status).toBe(200);
    const badScope = await core.client.post(`${API}/keys`, { name: 'x', models: ['no-such-model'] });
    expect(badScope.status).toBe(400);
    expect(badScope.body.error.message).toContain('no-such-model');
    const past = await core.client.post(`${API}/keys`, { name: 'x', expiresAt: new Date(Date.now() - 1000).toISOString() });
    expect(past.status).toBe(400);

    // A key limited to "gw" sees it; the same team's other models are hidden from it (404, as unknown).
    const scoped = await makeKey({ name: 'gw-only', models: ['gw'] });
    expect((await v1('/models', undefined, scoped.secret, 'GET')).json.data.map((m: any) => m.id)).toEqual(['gw']);

    const revoked = await core.client.delete(`${API}/keys/${other.id}`);
    expect(revoked.status).toBe(200);
    expect(revoked.body.status).toBe('revoked');
    const after = await v1('/chat/completions', chatBody(), other.secret);
    expect(after.status).toBe(401);
    expect(after.json.error.message).toContain('revoked');

    const soon = await makeKey({ name: 'short-lived', expiresAt: new Date(Date.now() + 1500).toISOString() });
    expect((await v1('/chat/completions', chatBody(), soon.secret)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1700));
    const expired = await v1('/chat/completions', chatBody(), soon.secret);
    expect(expired.status).toBe(401);
    expect(expired.json.error.message).toContain('expired');
    const listed = (await core.client.get(`${API}/keys`)).body.items;
    expect(listed.find((k: any) => k.id === soon.id).status).toBe('expired');
    // Creating and revoking keys is audited (never with the secret).
    const audit = await core.client.get('/api/v1/audit?action=serving:key.revoke');
    expect(audit.body.items.length).toBe(1);
    expect(JSON.stringify((await core.client.get('/api/v1/audit?action=serving:key.create')).body)).not.toContain(soon.secret);
  });

  it('applies a key’s requests-per-minute and tokens-per-minute limits', async () => {
    const rpm = await makeKey({ name: 'rpm-3', requestsPerMinute: 3 });
    for (let i = 0; i < 3; i++) expect((await v1('/chat/completions', chatBody(), rpm.secret)).status).toBe(200);
    const over = await v1('/chat/completions', chatBody(), rpm.secret);
    expect(over.status).toBe(429);
    expect(over.json).toMatchObject({ error: { type: 'rate_limit_error', code: 'rate_limit_exceeded' } });
    expect(over.json.error.message).toContain('3 per minute');
    expect(Number(over.headers.get('retry-after'))).toBeGreaterThan(0);
    // Another key is not affected.
    expect((await v1('/chat/completions', chatBody())).status).toBe(200);

    // Each answer uses 12 tokens: two fit a budget of 20 (the second goes over it), the third is refused.
    const tpm = await makeKey({ name: 'tpm-20', tokensPerMinute: 20 });
    expect((await v1('/chat/completions', chatBody(), tpm.secret)).status).toBe(200);
    expect((await v1('/chat/completions', chatBody(), tpm.secret)).status).toBe(200);
    const spent = await until('the second answer’s tokens to be counted', async () => {
      const r = await v1('/chat/completions', chatBody(), tpm.secret);
      return r.status === 429 ? r : undefined;
    });
    expect(spent.json.error.message).toMatch(/tokens: 20 per minute/);
  });

  it('streams through event by event with usage noted, and keeps the client’s stream_options', async () => {
    const res = await fetch(new URL('/v1/chat/completions', core.url), {
      method: 'POST',
      headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
      body: JSON.stringify(chatBody({ stream: true, responder: { chunks: 5, chunkDelayMs: 150 } })),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    // The first event comes long before the stream ends (no buffering).
    const reader = res.body!.getReader();
    const t0 = Date.now();
    const first = new TextDecoder().decode((await reader.read()).value);
    const firstAfter = Date.now() - t0;
    expect(first).toContain('chat.completion.chunk');
    let rest = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      rest += new TextDecoder().decode(value);
    }
    expect(Date.now() - t0).toBeGreaterThan(firstAfter + 500);
    const events = (first + rest).split('\n\n').filter((e) => e.startsWith('data: '));
    expect(events.at(-1)).toBe('data: [DONE]');
    // The gateway asked for usage for its meter; the client did not, so it does not see that event.
    expect(events.some((e) => e.includes('"usage"'))).toBe(false);

    const asked = await v1('/chat/completions', chatBody({ stream: true, stream_options: { include_usage: true } }));
    const usage = asked.text.split('\n\n').filter((e) => e.includes('"usage"'));
    expect(usage).toHaveLength(1);
    expect(JSON.parse(usage[0]!.slice(6))).toMatchObject({ choices: [], usage: { completion_tokens: 7 } });
  });

  it('sends a request to the replica with fewest in flight under least-outstanding balancing', async () => {
    const set = await core.client.put(`${API}/deployments/${deployment.id}/gateway`, { balancing: 'least-outstanding' });
    expect(set.status, set.text).toBe(200);
    expect(set.body.gateway.balancing).toBe('least-outstanding');
    // Two slow requests hold one replica each... then one more slow one, so one replica has two.
    const slow = [v1('/chat/completions', chatBody({ responder: { delayMs: 1500 } })), v1('/chat/completions', chatBody({ responder: { delayMs: 1500 } }))];
    await new Promise((r) => setTimeout(r, 200));
    const busy = await core.client.get(`${API}/deployments/${deployment.id}/metrics`);
    expect(busy.body.replicas.map((r: any) => r.outstanding).sort()).toEqual([1, 1]);
    const third = v1('/chat/completions', chatBody({ responder: { delayMs: 1500 } }));
    await new Promise((r) => setTimeout(r, 200));
    const heavy = (await core.client.get(`${API}/deployments/${deployment.id}/metrics`)).body.replicas.find((r: any) => r.outstanding === 2);
    expect(heavy).toBeDefined();
    // Quick requests now all go to the replica with one in flight, not the one with two.
    // One at a time: each finds one request in flight there against two on the other.
    for (let i = 0; i < 4; i++) expect((await v1('/chat/completions', chatBody())).headers.get('x-aiplat-replica')).not.toBe(String(heavy.replica));
    await Promise.all([...slow, third]);
    await core.client.put(`${API}/deployments/${deployment.id}/gateway`, { balancing: 'round-robin' });
  });

  it('splits 90/10 between two revisions within ±5% over 2,000 requests', async () => {
    const change = await core.client.post(`${API}/deployments/${deployment.id}/revisions`, { options: { tag: 'r2' }, replicas: 1, canaryWeight: 10 });
    expect(change.status, change.text).toBe(201);
    await waitDeployment(core, deployment.id, (d) => d.traffic.length === 2 && d.pending === null, 60_000);
    const counts: Record<string, number> = {};
    let sent = 0;
    const worker = async () => {
      while (sent < 2000) {
        sent++;
        const r = await v1('/chat/completions', chatBody());
        expect(r.status).toBe(200);
        const revision = r.headers.get('x-aiplat-revision')!;
        // The answer comes from that revision's replicas.
        expect(r.json.system_fingerprint).toBe(revision === '2' ? 'r2' : 'r1');
        counts[revision] = (counts[revision] ?? 0) + 1;
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    const total = (counts['1'] ?? 0) + (counts['2'] ?? 0);
    expect(total).toBe(2000);
    const share = (counts['2'] ?? 0) / total;
    expect(share).toBeGreaterThanOrEqual(0.05);
    expect(share).toBeLessThanOrEqual(0.15);
    // The live metrics saw both revisions.
    const m = await core.client.get(`${API}/deployments/${deployment.id}/metrics?window=120`);
    expect(m.body.revisions.map((r: any) => r.revision)).toEqual([1, 2]);
    expect(m.body.totals.requests).toBeGreaterThanOrEqual(2000);
    // Back to revision 1 alone for what follows.
    const back = await core.client.put(`${API}/deployments/${deployment.id}/traffic`, { traffic: [{ revision: 1, weight: 100 }] });
    expect(back.status, back.text).toBe(200);
  });

  it('moves traffic to the other replica when one is killed; only requests in flight on it fail', async () => {
    const detail = (await core.client.get(`${API}/deployments/${deployment.id}`)).body;
    const workloadId = detail.revisions.find((r: any) => r.number === 1).workloadId;
    const pid0 = replicaPid(core, workloadId, 0);
    const results: { start: number; end: number; ok: boolean; replica: string | null }[] = [];
    let stop = false;
    let killedAt = Infinity;
    const worker = async (stream: boolean) => {
      while (!stop) {
        const start = Date.now();
        try {
          const res = await fetch(new URL('/v1/chat/completions', core.url), {
            method: 'POST',
            headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
            body: JSON.stringify(chatBody(stream ? { stream: true, responder: { chunks: 10, chunkDelayMs: 30 } } : {})),
          });
          const text = await res.text();
          results.push({ start, end: Date.now(), ok: res.status === 200 && (!stream || text.includes('[DONE]')), replica: res.headers.get('x-aiplat-replica') });
        } catch {
          results.push({ start, end: Date.now(), ok: false, replica: null });
        }
      }
    };
    const workers = [worker(true), worker(true), worker(false), worker(false)];
    await new Promise((r) => setTimeout(r, 1500));
    killedAt = Date.now();
    process.kill(pid0, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 2500));
    stop = true;
    await Promise.all(workers);
    const before = results.filter((r) => r.end < killedAt);
    expect(before.every((r) => r.ok)).toBe(true);
    expect(new Set(before.map((r) => r.replica))).toEqual(new Set(['0', '1']));
    // Failed: only requests that were in flight when the replica died (at most one per worker).
    const failed = results.filter((r) => !r.ok);
    for (const f of failed) expect(f.start).toBeLessThan(killedAt);
    expect(failed.length).toBeLessThanOrEqual(4);
    // Everything started after the kill was answered, by replica 1 (or replica 0 restarted on a new port).
    const after = results.filter((r) => r.start > killedAt);
    expect(after.length).toBeGreaterThan(10);
    expect(after.every((r) => r.ok)).toBe(true);
    // The scheduler restarts the replica; the deployment is ready with two replicas again.
    await waitDeployment(core, deployment.id, (d) => d.state === 'ready' && d.replicas.filter((r: any) => r.revision === 1 && r.inRotation).length === 2, 60_000);
  });

  it('takes a replica that keeps failing out of the rotation, and back once its readiness answers', async () => {
    const detail = (await core.client.get(`${API}/deployments/${deployment.id}`)).body;
    const workloadId = detail.revisions.find((r: any) => r.number === 1).workloadId;
    const pid = replicaPid(core, workloadId, 0);
    // Frozen: it accepts connections and answers nothing (the gateway waits 2 s, then counts a failure).
    process.kill(pid, 'SIGSTOP');
    try {
      const ejected = await until('replica 0 to be ejected', async () => {
        await Promise.all([v1('/chat/completions', chatBody()), v1('/chat/completions', chatBody())]);
        const m = (await core.client.get(`${API}/deployments/${deployment.id}/metrics`)).body;
        return m.replicas.find((r: any) => r.replica === 0 && r.ejected) ?? (m.replicas.every((r: any) => r.replica !== 0) ? { gone: true } : undefined);
      });
      expect(ejected).toBeDefined();
      // Out of the rotation: every request goes to replica 1 and succeeds.
      const answers = await Promise.all(Array.from({ length: 8 }, () => v1('/chat/completions', chatBody())));
      for (const a of answers) {
        expect(a.status).toBe(200);
        expect(a.headers.get('x-aiplat-replica')).toBe('1');
      }
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    // Awake: after its time out and a readiness check that answers, it takes requests again.
    await until(
      'replica 0 to answer again',
      async () => {
        const r = await v1('/chat/completions', chatBody());
        return r.status === 200 && r.headers.get('x-aiplat-replica') === '0';
      },
      30_000,
    );
    const m = (await core.client.get(`${API}/deployments/${deployment.id}/metrics`)).body;
    expect(m.replicas.every((r: any) => !r.ejected)).toBe(true);
  });

  it('keeps a slow client from growing the gateway’s memory: the replica is held back, and a client that leaves cancels it', async () => {
    const detail = (await core.client.get(`${API}/deployments/${deployment.id}`)).body;
    const url = new URL('/v1/chat/completions', core.url);
    const port = detail.replicas.find((r: any) => r.revision === 1 && r.replica === 0).port;
    const writtenOf = async (p: number) => ((await (await fetch(`http://127.0.0.1:${p}/written`)).json()) as { written: number }).written;
    const ports = detail.replicas.filter((r: any) => r.revision === 1).map((r: any) => r.port as number);
    const before = await Promise.all(ports.map(writtenOf));
    const heapBefore = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
    // 256 MiB offered (4,096 events of 64 KiB); the client reads nothing.
    const req = http.request(url, { method: 'POST', headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' } });
    req.end(JSON.stringify(chatBody({ stream: true, responder: { chunks: 4096, chunkBytes: 65536 } })));
    const res = await new Promise<http.IncomingMessage>((resolve) => req.once('response', resolve));
    res.pause();
    await new Promise((r) => setTimeout(r, 3000));
    const stalled = await Promise.all(ports.map(writtenOf));
    const sent = stalled.reduce((a, v, i) => a + v - before[i]!, 0);
    // What the replica could write is bounded by the socket buffers on the way, not 256 MiB.
    expect(sent).toBeGreaterThan(0);
    expect(sent).toBeLessThan(32 * 1024 * 1024);
    const heapGrowth = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers - heapBefore;
    expect(heapGrowth).toBeLessThan(64 * 1024 * 1024);
    // The client goes away: the upstream request is cancelled and the replica stops writing.
    res.destroy();
    req.destroy();
    await new Promise((r) => setTimeout(r, 500));
    const gone = await Promise.all(ports.map(writtenOf));
    await new Promise((r) => setTimeout(r, 1000));
    const later = await Promise.all(ports.map(writtenOf));
    expect(later).toEqual(gone);
    void port;
  });

  it('meters use into the usage report and /metrics, and calls serving.sloBreached when an objective breaks', async () => {
    const byKey = await core.client.get(`${API}/usage?groupBy=key`);
    expect(byKey.status, byKey.text).toBe(200);
    const ci = byKey.body.items.find((i: any) => i.name === 'ci');
    expect(ci.requests).toBeGreaterThan(2000);
    expect(ci.promptTokens).toBeGreaterThan(0);
    expect(ci.completionTokens).toBeGreaterThan(0);
    const byTeam = await core.client.get(`${API}/usage?groupBy=team`);
    expect(byTeam.body.items).toHaveLength(1);
    expect(byTeam.body.items[0].requests).toBeGreaterThanOrEqual(ci.requests);
    expect(byTeam.body).toMatchObject({ groupBy: 'team', currency: 'USD' });
    const bad = await core.client.get(`${API}/usage?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z`);
    expect(bad.status).toBe(400);

    const metrics = await core.client.get('/metrics');
    expect(metrics.text).toMatch(/aiplat_serving_requests_total\{deployment="gw",revision="1",outcome="ok"\} \d+/);
    expect(metrics.text).toMatch(/aiplat_serving_request_duration_seconds\{deployment="gw",revision="1",quantile="0.99"\}/);
    expect(metrics.text).toMatch(/aiplat_serving_qps\{deployment="gw",revision="1"\}/);
    expect(metrics.text).toMatch(/aiplat_serving_tokens_total\{deployment="gw",revision="1",kind="completion"\} \d+/);

    // An objective of at most 1% failures over 10 s: the requests before were all answered, these 20 fail.
    const slo = await core.client.put(`${API}/deployments/${deployment.id}/gateway`, { slo: { errorRate: 0.01, windowSeconds: 10 } });
    expect(slo.status, slo.text).toBe(200);
    expect(slo.body.gateway.slo).toEqual({ errorRate: 0.01, p99LatencyMs: null, windowSeconds: 10 });
    for (let i = 0; i < 20; i++) expect((await v1('/chat/completions', chatBody({ responder: { status: 503 } }))).status).toBe(503);
    const seen = await until('serving.sloBreached', async () => {
      const res = await core.client.get('/api/plugins/serving-hook-probe/seen');
      expect(res.status, res.text).toBe(200);
      const items = res.body.items as any[];
      return items.find((i) => i.hook === 'sloBreached');
    });
    expect(seen).toMatchObject({ deployment: deployment.id, objective: 'errorRate', limit: 0.01 });
    expect(seen.observed).toBeGreaterThan(0.01);
    // The deployment's live view says so while the errors are in its window.
    const m = (await core.client.get(`${API}/deployments/${deployment.id}/metrics`)).body;
    if (m.slo.observed.errorRate > 0.01) expect(m.slo.breached, JSON.stringify(m.slo)).toBe(true);
    expect(m.totals.errors).toBeGreaterThanOrEqual(10);
  });
});
