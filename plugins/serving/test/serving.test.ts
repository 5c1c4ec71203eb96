// The serving plugin end to end on a real core with the models, lineage and serving-cpu plugins:
// tiny chat models imported as versions, deployed on the CPU runtime (transformers serve, a real
// process per replica on the local executor), called through the /v1 alias; a change makes a
// revision that takes the traffic once ready; rollback restores an earlier revision's answers and
// options; a canary splits traffic; the official openai client calls it with a gateway API key; the
// hooks fire. Bad requests are refused before anything starts (deployments.db.test.ts); restarts,
// crash loops and stop/start, which do not depend on the runtime, are replicas.test.ts's.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { API, chat, cpuRuntimePython, registerVersions, repo, servesOnly, tinyModel, waitDeployment } from './harness.js';

let core: TestCore;
let work: string;
let v1: string;
let v2: string;

describe('deployments on the CPU runtime', { timeout: 300_000 }, () => {
  beforeAll(async () => {
    const python = await cpuRuntimePython();
    work = await mkdtemp(path.join(os.tmpdir(), 'aiplat-serving-'));
    const m1 = await tinyModel(python, path.join(work, 'seed-1'), 1);
    const m2 = await tinyModel(python, path.join(work, 'seed-2'), 2);
    core = await startTestCore({
      plugins: [
        ...['models', 'lineage', 'serving', 'serving-cpu'].map((p) => path.join(repo, 'plugins', p)),
        path.join(repo, 'plugins', 'serving', 'test', 'fixtures', 'hook-probe'),
      ],
    });
    [v1, v2] = (await registerVersions(core, 'tiny-chat', work, [m1, m2])).versions as [string, string];
  }, 900_000);

  afterAll(async () => {
    await core?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  }, 120_000);

  let id: string;
  let answerV1: string;

  it('deploys a model version on the CPU runtime, serves it through /v1 once ready, and documents its API', async () => {
    const runtimes = await core.client.get(`${API}/runtimes`);
    expect(runtimes.body.items.find((r: any) => r.id === 'cpu')).toMatchObject({ protocol: 'openai', gpu: 'none', engine: { available: true } });

    const res = await core.client.post(`${API}/deployments`, { name: 'chat', modelVersion: v1, runtime: 'cpu', replicas: 1, options: { threads: 1 } });
    expect(res.status, res.text).toBe(201);
    expect(res.body).toMatchObject({ name: 'chat', servedModelName: 'chat', state: 'deploying', latestRevision: 1, traffic: [], pending: { revision: 1, canaryWeight: null } });
    expect(res.body.revisions[0]).toMatchObject({ number: 1, state: 'starting', modelVersion: v1, runtime: 'cpu', change: 'first revision', options: { dtype: 'auto', threads: 1 } });
    id = res.body.id;

    // Not ready yet: the alias says so instead of hanging.
    const early = await chat(core, 'chat');
    if (early.status !== 200) expect(early.body.error.message).toMatch(/no ready revision|cannot answer/);

    const ready = await waitDeployment(core, id, servesOnly(1));
    expect(ready.revisions[0]).toMatchObject({ number: 1, state: 'ready' });
    expect(ready.replicas).toEqual([expect.objectContaining({ revision: 1, replica: 0, state: 'ready', inRotation: true })]);

    const answer = await chat(core, 'chat');
    expect(answer.status, answer.text).toBe(200);
    expect(answer.headers.get('x-aiplat-revision')!).toBe('1');
    expect(answer.body).toMatchObject({ object: 'chat.completion', model: 'chat' });
    answerV1 = answer.body.choices[0].message.content;
    expect(typeof answerV1).toBe('string');
    // Greedy: the same prompt answers the same.
    expect((await chat(core, 'chat')).body.choices[0].message.content).toBe(answerV1);

    // Streamed: server-sent events, chunk by chunk, the served name in each.
    const stream = await fetch(new URL('/v1/chat/completions', core.url), {
      method: 'POST',
      headers: { authorization: `Bearer ${core.client.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 8, temperature: 0, stream: true }),
    });
    expect(stream.status).toBe(200);
    expect(stream.headers.get('content-type')).toMatch(/text\/event-stream/);
    const events = (await stream.text()).split('\n').filter((l) => l.startsWith('data: {'));
    expect(events.length).toBeGreaterThanOrEqual(2);
    for (const e of events) expect(JSON.parse(e.slice(6)).model).toBe('chat');

    const models = await core.client.get('/v1/models');
    expect(models.body).toMatchObject({ object: 'list', data: [{ id: 'chat', object: 'model' }] });

    const docs = await core.client.get(`${API}/deployments/${id}/api-docs`);
    expect(docs.status).toBe(200);
    expect(docs.body.baseUrl).toBe(`${core.url.replace(/\/$/, '')}/v1`);
    expect(docs.body.model).toBe('chat');
    expect(Object.keys(docs.body.openapi.paths)).toEqual(expect.arrayContaining(['/chat/completions', '/completions']));
    expect(docs.body.openapi.servers[0].url).toBe(docs.body.baseUrl);
    expect(docs.body.snippets.map((s: any) => s.id)).toEqual(['curl', 'python', 'javascript']);
    for (const s of docs.body.snippets) expect(s.code).toContain('chat');
    expect(docs.body.snippets[1].code).toContain(`base_url="${docs.body.baseUrl}"`);

    // Lineage: model version → deployment revision.
    const lineage = await core.client.get(`/api/plugins/lineage/graph?kind=models.version&id=${v1}&direction=down`);
    expect(JSON.stringify(lineage.body)).toContain(`${id}@1`);
  });

  it('the official openai client, unchanged, gets streamed and whole answers with a gateway API key', async () => {
    const key = await core.client.post(`${API}/keys`, { name: 'openai-client' });
    expect(key.status, key.text).toBe(201);
    const client = new OpenAI({ baseURL: `${core.url.replace(/\/$/, '')}/v1`, apiKey: key.body.secret, maxRetries: 0 });
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['chat']);

    const whole = await client.chat.completions.create({ model: 'chat', messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 8, temperature: 0 });
    expect(whole.object).toBe('chat.completion');
    expect(whole.model).toBe('chat');
    // Greedy: the same answer the platform user got through /v1.
    expect(whole.choices[0]!.message.content).toBe(answerV1);
    expect(whole.usage?.completion_tokens).toBeGreaterThan(0);

    const stream = await client.chat.completions.create({ model: 'chat', messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 8, temperature: 0, stream: true });
    let text = '';
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      expect(chunk.model).toBe('chat');
      text += chunk.choices[0]?.delta?.content ?? '';
    }
    expect(chunks).toBeGreaterThanOrEqual(2);
    // The same tokens; the tiny model's byte tokenizer may end a streamed piece inside a UTF-8
    // character, which decodes as U+FFFD on its own: compared without those.
    const printable = (t: string) => t.replace(/\uFFFD/g, '');
    expect(printable(text)).toBe(printable(answerV1));
    expect(printable(text).length).toBeGreaterThan(0);

    // The client's own errors: a wrong key and an unknown model, as the OpenAI classes.
    await expect(new OpenAI({ baseURL: client.baseURL, apiKey: 'sk-aiplat-wrong', maxRetries: 0 }).models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    await expect(client.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'x' }] })).rejects.toBeInstanceOf(OpenAI.NotFoundError);

    // Metered for the key's team: the usage report counts both calls with their tokens.
    const usage = await core.client.get(`${API}/usage?groupBy=key`);
    const mine = usage.body.items.find((i: any) => i.id === key.body.id);
    expect(mine).toMatchObject({ name: 'openai-client', requests: 2 });
    expect(mine.completionTokens).toBeGreaterThan(0);
  });

  it('a change makes a new revision that takes the traffic once ready; the old one stops', async () => {
    const res = await core.client.post(`${API}/deployments/${id}/revisions`, { modelVersion: v2, options: { threads: 1, seed: 7 } });
    expect(res.status, res.text).toBe(201);
    expect(res.body.pending).toEqual({ revision: 2, canaryWeight: null });
    expect(res.body.revisions[0]).toMatchObject({ number: 2, state: 'starting' });
    expect(res.body.revisions[0].change).toContain('model: tiny-chat v1 → tiny-chat v2');
    expect(res.body.revisions[0].change).toContain('options.seed: 0 → 7');
    // While it starts, revision 1 answers.
    expect((await chat(core, 'chat')).headers.get('x-aiplat-revision')!).toBe('1');
    // A second change waits for this one.
    const busy = await core.client.post(`${API}/deployments/${id}/revisions`, { replicas: 2 });
    expect(busy.status).toBe(409);

    const done = await waitDeployment(core, id, servesOnly(2));
    expect(done.revisions.find((r: any) => r.number === 1)).toMatchObject({ state: 'retired', reason: 'replaced by revision 2' });
    const answer = await chat(core, 'chat');
    expect(answer.headers.get('x-aiplat-revision')!).toBe('2');
    expect(answer.body.choices[0].message.content).not.toBe(answerV1);
  });

  it('rollback restores an earlier revision: its model version, its options, its answers', async () => {
    const res = await core.client.post(`${API}/deployments/${id}/rollback`, { revision: 1 });
    expect(res.status, res.text).toBe(201);
    expect(res.body.revisions[0]).toMatchObject({ number: 3, rollbackOf: 1, change: 'rollback to revision 1', modelVersion: v1 });
    const done = await waitDeployment(core, id, servesOnly(3));
    const r1 = done.revisions.find((r: any) => r.number === 1);
    const r3 = done.revisions.find((r: any) => r.number === 3);
    expect(r3.options).toEqual(r1.options);
    expect(r3.resources).toEqual(r1.resources);
    const answer = await chat(core, 'chat');
    expect(answer.headers.get('x-aiplat-revision')!).toBe('3');
    expect(answer.body.choices[0].message.content).toBe(answerV1);
  });

  it('a canary takes its share once ready; promoting it stops the other revision', async () => {
    const res = await core.client.post(`${API}/deployments/${id}/revisions`, { modelVersion: v2, canaryWeight: 30 });
    expect(res.status, res.text).toBe(201);
    const split = await waitDeployment(core, id, (d) => d.traffic.length === 2 && d.pending === null);
    expect(split.traffic).toEqual([
      { revision: 3, weight: 70 },
      { revision: 4, weight: 30 },
    ]);
    expect(split.state).toBe('ready');
    const counts: Record<string, number> = {};
    for (let i = 0; i < 40; i++) {
      const a = await chat(core, 'chat', 'hi', { max_tokens: 1 });
      expect(a.status, a.text).toBe(200);
      counts[a.headers.get('x-aiplat-revision')!] = (counts[a.headers.get('x-aiplat-revision')!] ?? 0) + 1;
    }
    // 30 % of 40: both revisions answer (p of a revision getting none < 1e-6).
    expect(counts['3']).toBeGreaterThan(0);
    expect(counts['4']).toBeGreaterThan(0);

    // Traffic only goes to running revisions, and adds up to 100.
    expect((await core.client.put(`${API}/deployments/${id}/traffic`, { traffic: [{ revision: 1, weight: 100 }] })).status).toBe(409);
    expect((await core.client.put(`${API}/deployments/${id}/traffic`, { traffic: [{ revision: 4, weight: 60 }] })).status).toBe(400);

    const promoted = await core.client.put(`${API}/deployments/${id}/traffic`, { traffic: [{ revision: 4, weight: 100 }] });
    expect(promoted.status, promoted.text).toBe(200);
    expect(promoted.body.traffic).toEqual([{ revision: 4, weight: 100 }]);
    expect(promoted.body.revisions.find((r: any) => r.number === 3)).toMatchObject({ state: 'retired', reason: 'taken out of traffic' });
  });

  it('the hooks hear of every change; stop and delete end the deployment', async () => {
    const seen = (await core.client.get('/api/plugins/serving-hook-probe/seen')).body.items as any[];
    const mine = seen.filter((e) => e.deployment === id);
    expect(mine.filter((e) => e.hook === 'revisionChanged').map((e) => e.cause)).toEqual(expect.arrayContaining(['created', 'rollout', 'rollback', 'canary', 'traffic']));
    expect(mine.some((e) => e.hook === 'deploymentReady' && e.revision === 1 && e.state === 'ready')).toBe(true);

    // Restarts, crash loops and stop/start are runtime-independent: replicas.test.ts (real responder processes).
    const stopped = await core.client.post(`${API}/deployments/${id}/stop`);
    expect(stopped.status, stopped.text).toBe(200);
    expect(stopped.body).toMatchObject({ state: 'stopped', replicas: [] });
    const deleted = await core.client.delete(`${API}/deployments/${id}`);
    expect(deleted.status).toBe(204);
    expect((await chat(core, 'chat')).status).toBe(404);
  });
});
