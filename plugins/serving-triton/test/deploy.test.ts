// The Triton runtime deployed through the platform: a real core with the models, lineage, serving
// and serving-triton plugins; a tiny chat model imported as a version and deployed on runtime
// `triton` (the local executor, a CPU instance group: a real tritonserver per replica); the /v1
// alias answers through the runtime's OpenAI adapter (chat, completions, and a stream the serving
// proxy synthesises); the API docs list the adapter's paths; a change of an option makes revision 2,
// which takes the traffic; rollback to revision 1 makes revision 3 with revision 1's options.
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { API, chat, registerVersions, repo, servesOnly, tinyModel, waitDeployment } from '../../serving/test/harness.js';

const run = promisify(execFile);
const SERVED = 'triton-chat';

let core: TestCore;
let work: string;
let version: string;

/** The Triton venv's python (torch, transformers, nvidia-pytriton), made by its setup.sh. */
async function tritonPython(): Promise<string> {
  const out = await run('sh', [path.join(repo, 'plugins', 'serving-triton', 'setup.sh')], { timeout: 900_000, maxBuffer: 64 << 20 });
  return out.stdout.trim().split('\n').pop()!;
}

/** A request to the /v1 alias with fetch (the test client parses JSON; a stream is text). */
function raw(pathname: string, body: Record<string, unknown>): Promise<Response> {
  return fetch(new URL(pathname, core.url), {
    method: 'POST',
    headers: { authorization: `Bearer ${core.client.token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

describe('deployments on the Triton runtime', { timeout: 300_000 }, () => {
  beforeAll(async () => {
    const python = await tritonPython();
    work = await mkdtemp(path.join(os.tmpdir(), 'aiplat-serving-triton-'));
    const model = await tinyModel(python, path.join(work, 'seed-1'), 1);
    core = await startTestCore({ plugins: ['models', 'lineage', 'serving', 'serving-triton'].map((p) => path.join(repo, 'plugins', p)) });
    version = (await registerVersions(core, 'tiny-chat', work, [model])).versions[0]!;
  }, 900_000);

  afterAll(async () => {
    await core?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  }, 120_000);

  let id: string;
  /** Revision 1's greedy answer to a request that names no max_tokens (its maxNewTokens applies). */
  let defaultAnswer: { content: string; completionTokens: number };
  const options1 = { instanceGroups: [{ count: 1, kind: 'KIND_CPU' }], maxNewTokens: 12 };

  async function defaultLength() {
    const res = await chat(core, SERVED, 'Hello there', { max_tokens: undefined });
    expect(res.status, res.text).toBe(200);
    return { revision: res.headers.get('x-aiplat-revision'), content: res.body.choices[0].message.content as string, completionTokens: res.body.usage.completion_tokens as number };
  }

  it('deploys a model version on Triton, serves chat, completions and streams through /v1 once ready, and documents its API', async () => {
    const runtimes = await core.client.get(`${API}/runtimes`);
    expect(runtimes.body.items.find((r: any) => r.id === 'triton')).toMatchObject({ protocol: 'kserve-v2', gpu: 'optional', engine: { available: true } });

    const res = await core.client.post(`${API}/deployments`, { name: SERVED, modelVersion: version, runtime: 'triton', executor: 'local', replicas: 1, options: options1 });
    expect(res.status, res.text).toBe(201);
    expect(res.body).toMatchObject({ name: SERVED, servedModelName: SERVED, state: 'deploying', latestRevision: 1, pending: { revision: 1, canaryWeight: null } });
    expect(res.body.revisions[0]).toMatchObject({
      number: 1,
      state: 'starting',
      runtime: 'triton',
      options: { instanceGroups: [{ count: 1, kind: 'KIND_CPU' }], maxNewTokens: 12, maxBatchSize: 8, dynamicBatching: true, dtype: 'auto' },
    });
    id = res.body.id;

    const ready = await waitDeployment(core, id, servesOnly(1), 180_000);
    expect(ready.replicas).toEqual([expect.objectContaining({ revision: 1, replica: 0, state: 'ready', inRotation: true })]);

    // Chat through the adapter: a chat.completion under the served name, from revision 1.
    const answer = await chat(core, SERVED);
    expect(answer.status, answer.text).toBe(200);
    expect(answer.headers.get('x-aiplat-revision')).toBe('1');
    expect(answer.body).toMatchObject({ object: 'chat.completion', model: SERVED, choices: [{ index: 0, message: { role: 'assistant' } }] });
    const text = answer.body.choices[0].message.content;
    expect(typeof text).toBe('string');
    expect(answer.body.usage.completion_tokens).toBeGreaterThan(0);
    expect(answer.body.usage.completion_tokens).toBeLessThanOrEqual(8);
    // Greedy: the same prompt answers the same.
    expect((await chat(core, SERVED)).body.choices[0].message.content).toBe(text);

    // Streamed: the runtime answers whole; the proxy sends it as chunks, then [DONE].
    const stream = await raw('/v1/chat/completions', { model: SERVED, messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 8, temperature: 0, stream: true });
    expect(stream.status).toBe(200);
    expect(stream.headers.get('content-type')).toMatch(/text\/event-stream/);
    expect(stream.headers.get('x-aiplat-revision')).toBe('1');
    const lines = (await stream.text()).split('\n').filter((l) => l.startsWith('data: '));
    expect(lines.at(-1)).toBe('data: [DONE]');
    const chunks = lines.slice(0, -1).map((l) => JSON.parse(l.slice(6)));
    expect(chunks.length).toBeGreaterThanOrEqual(2);
    for (const c of chunks) expect(c).toMatchObject({ object: 'chat.completion.chunk', model: SERVED });
    expect(chunks.map((c) => c.choices[0].delta.content ?? '').join('')).toBe(text);
    expect(chunks.at(-1).choices[0].finish_reason).toMatch(/stop|length/);

    // Completions: the prompt as text_input, a text_completion back.
    const completion = await core.client.post('/v1/completions', { model: SERVED, prompt: 'Once upon a time', max_tokens: 6, temperature: 0 });
    expect(completion.status, completion.text).toBe(200);
    expect(completion.headers.get('x-aiplat-revision')).toBe('1');
    expect(completion.body).toMatchObject({ object: 'text_completion', model: SERVED, choices: [{ index: 0 }] });
    expect(typeof completion.body.choices[0].text).toBe('string');
    expect(completion.body.usage.completion_tokens).toBeLessThanOrEqual(6);
    const streamed = await raw('/v1/completions', { model: SERVED, prompt: 'Once upon a time', max_tokens: 6, temperature: 0, stream: true });
    expect(streamed.status).toBe(200);
    const completionLines = (await streamed.text()).split('\n').filter((l) => l.startsWith('data: '));
    expect(completionLines.at(-1)).toBe('data: [DONE]');
    const completionChunks = completionLines.slice(0, -1).map((l) => JSON.parse(l.slice(6)));
    expect(completionChunks.map((c) => c.choices[0].text).join('')).toBe(completion.body.choices[0].text);
    for (const c of completionChunks) expect(c.model).toBe(SERVED);

    // What the model refuses comes back as an OpenAI error with Triton's reason.
    const refused = await chat(core, SERVED, 'Hello there', { max_tokens: 0 });
    expect(refused.status, refused.text).toBe(400);
    expect(refused.body.error).toMatchObject({ code: 'upstream_error', message: expect.stringMatching(/max_tokens/) });

    // A path the adapter does not answer is refused, not forwarded.
    const embeddings = await core.client.post('/v1/embeddings', { model: SERVED, input: 'hi' });
    expect(embeddings.status).toBe(503);
    expect(embeddings.body.error.message).toMatch(/does not answer \/embeddings/);

    // The API docs list what the adapter answers.
    const docs = await core.client.get(`${API}/deployments/${id}/api-docs`);
    expect(docs.status, docs.text).toBe(200);
    expect(docs.body.model).toBe(SERVED);
    expect(Object.keys(docs.body.openapi.paths).sort()).toEqual(['/chat/completions', '/completions', '/models']);
    expect(docs.body.openapi.info.description).toContain('triton runtime');

    // With no max_tokens the revision's maxNewTokens applies.
    defaultAnswer = await defaultLength();
    expect(defaultAnswer.completionTokens).toBeGreaterThan(4);
    expect(defaultAnswer.completionTokens).toBeLessThanOrEqual(12);
  });

  it('a change of an option makes revision 2, which takes the traffic once ready', async () => {
    const res = await core.client.post(`${API}/deployments/${id}/revisions`, { options: { ...options1, maxNewTokens: 4 } });
    expect(res.status, res.text).toBe(201);
    expect(res.body.pending).toEqual({ revision: 2, canaryWeight: null });
    expect(res.body.revisions[0]).toMatchObject({ number: 2, state: 'starting', modelVersion: version, runtime: 'triton' });
    expect(res.body.revisions[0].change).toContain('options.maxNewTokens: 12 → 4');
    // While it starts, revision 1 answers.
    expect((await chat(core, SERVED)).headers.get('x-aiplat-revision')).toBe('1');

    const done = await waitDeployment(core, id, servesOnly(2), 180_000);
    expect(done.revisions.find((r: any) => r.number === 1)).toMatchObject({ state: 'retired', reason: 'replaced by revision 2' });
    const after = await defaultLength();
    expect(after.revision).toBe('2');
    expect(after.completionTokens).toBeLessThanOrEqual(4);
    // Greedy and the same weights: revision 2's answer is the start of revision 1's.
    expect(defaultAnswer.content.startsWith(after.content)).toBe(true);
  });

  it('rollback to revision 1 makes revision 3 with revision 1’s options and answers', async () => {
    const res = await core.client.post(`${API}/deployments/${id}/rollback`, { revision: 1 });
    expect(res.status, res.text).toBe(201);
    expect(res.body.revisions[0]).toMatchObject({ number: 3, rollbackOf: 1, change: 'rollback to revision 1', modelVersion: version, runtime: 'triton' });
    const done = await waitDeployment(core, id, servesOnly(3), 180_000);
    const r1 = done.revisions.find((r: any) => r.number === 1);
    const r3 = done.revisions.find((r: any) => r.number === 3);
    expect(r3.options).toEqual(r1.options);
    expect(r3.options.maxNewTokens).toBe(12);
    expect(done.revisions.find((r: any) => r.number === 2)).toMatchObject({ state: 'retired' });
    const after = await defaultLength();
    expect(after.revision).toBe('3');
    expect(after).toEqual({ ...defaultAnswer, revision: '3' });

    const deleted = await core.client.delete(`${API}/deployments/${id}`);
    expect(deleted.status).toBe(204);
    expect((await chat(core, SERVED)).status).toBe(404);
  });
});
