/**
 * A real tritonserver (the one nvidia-pytriton carries, from setup.sh's venv) serving the generated
 * Python-backend model of a tiny chat model: launch() → files written into a revision folder → its
 * argv spawned with PORT → KServe v2 and the OpenAI adapter against it. One server for the file.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RuntimeContext } from '@aiplat-plugins/serving/api';
import { DEFAULT_OPTIONS, clearEngineCache, inferOutputs, inferRequest, tritonRuntime } from '../src/index.js';

const run = promisify(execFile);
const here = import.meta.dirname;
const root = path.resolve(here, '../../..');
const SERVED = 'tiny-chat';

let python = '';
let work = '';
let server: ChildProcess | undefined;
let base = '';
let log = '';
const timings: Record<string, number> = {};
const runtime = tritonRuntime(() => ({ python }));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function post(pathname: string, body: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(base + pathname, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, json: await res.json() };
}

beforeAll(async () => {
  let t = Date.now();
  const setup = await run('sh', [path.join(here, '..', 'setup.sh')], { maxBuffer: 64 * 1024 * 1024 });
  python = setup.stdout.trim().split('\n').pop()!;
  timings.setupMs = Date.now() - t;

  work = await mkdtemp(path.join(os.tmpdir(), 'aiplat-triton-'));
  t = Date.now();
  const made = await run(python, [path.join(root, 'plugins/serving/test/fixtures/make_tiny_chat_model.py'), path.join(work, 'model'), '--seed', '1']);
  const model = JSON.parse(made.stdout.trim().split('\n').pop()!) as { path: string; parameters: number };
  timings.modelMs = Date.now() - t;

  const context: RuntimeContext = {
    deployment: { id: 'dep1', name: 'tiny', team: 'default' },
    revision: 1,
    servedModelName: SERVED,
    model: { versionId: 'v1', name: 'tiny', number: 1, path: model.path, metadata: { parameters: model.parameters } },
    revisionDir: path.join(work, 'revision'),
    executor: 'local',
    resources: { gpus: 0 },
    replicas: 1,
    options: { ...DEFAULT_OPTIONS, maxNewTokens: 16 },
    maxGpusPerNode: 0,
  };
  expect(runtime.check!(context)).toBeUndefined();
  const launch = await runtime.launch(context);
  for (const [name, content] of Object.entries(launch.files ?? {})) {
    const file = path.join(context.revisionDir, name);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, content);
  }

  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  t = Date.now();
  const [program, ...args] = launch.command;
  const child = spawn(program!, args, {
    cwd: launch.workingDir,
    env: { ...process.env, ...launch.env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  server = child;
  child.stdout!.on('data', (d) => (log += d));
  child.stderr!.on('data', (d) => (log += d));
  const deadline = Date.now() + 180_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`tritonserver exited (${server.exitCode}):\n${log.slice(-4000)}`);
    if (Date.now() > deadline) throw new Error(`tritonserver not ready after 180 s:\n${log.slice(-4000)}`);
    const ok = await fetch(base + launch.readiness.path).then((r) => r.ok, () => false);
    if (ok) break;
    await new Promise((r) => setTimeout(r, 300));
  }
  timings.readyMs = Date.now() - t;
  console.log(`serving-triton timings: ${JSON.stringify(timings)}`);
}, 900_000);

afterAll(async () => {
  const child = server;
  if (child && child.exitCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }
  if (work) await rm(work, { recursive: true, force: true });
}, 60_000);

describe('serving-triton on a real tritonserver', () => {
  it('reports the local engine: tritonserver and its python backend run', async () => {
    clearEngineCache();
    const status = await runtime.engine('local');
    expect(status).toMatchObject({ available: true, reason: null });
    expect(status.version).toMatch(/^tritonserver 2\.\d+\.\d+ \(nvidia-pytriton 0\.7\.0, torch 2\.13\.0.*transformers 5\.18\.0\)$/);
  });

  it('answers a KServe v2 infer with text and token counts', async () => {
    const { status, json } = await post(`/v2/models/${SERVED}/infer`, inferRequest('Hello', { maxTokens: 8 }));
    expect(status).toBe(200);
    expect(json.model_name).toBe(SERVED);
    const out = inferOutputs(json);
    expect(typeof out.text).toBe('string');
    expect(out.text.length).toBeGreaterThan(0);
    expect(out.promptTokens).toBeGreaterThan(0);
    expect(out.completionTokens).toBeGreaterThan(0);
    expect(out.completionTokens).toBeLessThanOrEqual(8);
    expect(['stop', 'length']).toContain(out.finishReason);
  });

  it('lists the inputs and outputs in the model metadata', async () => {
    const meta = (await (await fetch(`${base}/v2/models/${SERVED}`)).json()) as any;
    expect(meta).toMatchObject({ name: SERVED, platform: 'python', versions: ['1'] });
    expect(meta.inputs).toEqual(
      expect.arrayContaining([
        { name: 'text_input', datatype: 'BYTES', shape: [-1, 1] },
        { name: 'max_tokens', datatype: 'INT32', shape: [-1, 1] },
        { name: 'temperature', datatype: 'FP32', shape: [-1, 1] },
        { name: 'top_p', datatype: 'FP32', shape: [-1, 1] },
      ]),
    );
    expect(meta.outputs.map((o: { name: string }) => o.name)).toEqual(['text_output', 'prompt_tokens', 'completion_tokens', 'finish_reason']);
    const config = (await (await fetch(`${base}/v2/models/${SERVED}/config`)).json()) as any;
    expect(config).toMatchObject({ backend: 'python', max_batch_size: 8, dynamic_batching: { max_queue_delay_microseconds: 100 } });
    expect(config.instance_group[0]).toMatchObject({ count: 1, kind: 'KIND_CPU' });
  });

  it('round-trips an OpenAI chat completion through the adapter, equal to a direct greedy infer', async () => {
    const messages = [{ role: 'user', content: 'Say something.' }];
    const request = { model: SERVED, messages, max_tokens: 12, temperature: 0 };
    const upstream = runtime.openai!.request('/chat/completions', request, { servedModelName: SERVED });
    const { status, json } = await post(upstream.path, upstream.body);
    expect(status).toBe(200);
    const answer = runtime.openai!.response('/chat/completions', json, { servedModelName: SERVED, request }) as any;
    expect(answer).toMatchObject({ object: 'chat.completion', model: SERVED, choices: [{ index: 0, message: { role: 'assistant' } }] });
    expect(answer.id).toMatch(/^chatcmpl-/);
    expect(Number.isInteger(answer.created)).toBe(true);
    expect(answer.usage.total_tokens).toBe(answer.usage.prompt_tokens + answer.usage.completion_tokens);
    expect(answer.usage.completion_tokens).toBeLessThanOrEqual(12);

    const direct = await post(`/v2/models/${SERVED}/infer`, inferRequest(JSON.stringify(messages), { maxTokens: 12, temperature: 0, chat: true }));
    expect(direct.status).toBe(200);
    expect(answer.choices[0].message.content).toBe(inferOutputs(direct.json).text);
    expect(answer.usage.prompt_tokens).toBe(inferOutputs(direct.json).promptTokens);

    const completion = runtime.openai!.request('/completions', { model: SERVED, prompt: 'Once', max_tokens: 4 }, { servedModelName: SERVED });
    const text = await post(completion.path, completion.body);
    const answer2 = runtime.openai!.response('/completions', text.json, { servedModelName: SERVED, request: {} });
    expect(answer2).toMatchObject({ object: 'text_completion', model: SERVED, choices: [{ index: 0, text: expect.any(String) }] });
  });

  it('answers concurrent requests (the dynamic batcher hands them over together) each as alone', async () => {
    const prompts = ['a', 'bb', 'ccc', 'dddd'];
    const alone = [];
    for (const p of prompts) alone.push(inferOutputs((await post(`/v2/models/${SERVED}/infer`, inferRequest(p, { maxTokens: 6 }))).json).text);
    const together = await Promise.all(prompts.map((p) => post(`/v2/models/${SERVED}/infer`, inferRequest(p, { maxTokens: 6 }))));
    expect(together.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    expect(together.map((r) => inferOutputs(r.json).text)).toEqual(alone);
  });

  it('samples with temperature and a seed reproducibly', async () => {
    const body = inferRequest('Hi', { maxTokens: 8, temperature: 0.9, topP: 0.95, seed: 7 });
    const a = inferOutputs((await post(`/v2/models/${SERVED}/infer`, body)).json);
    const b = inferOutputs((await post(`/v2/models/${SERVED}/infer`, body)).json);
    expect(a.text).toBe(b.text);
  });

  it('answers a bad infer with a 4xx and an error message', async () => {
    const missing = await post(`/v2/models/${SERVED}/infer`, { inputs: [{ name: 'max_tokens', datatype: 'INT32', shape: [1, 1], data: [4] }] });
    expect(missing.status).toBeGreaterThanOrEqual(400);
    expect(missing.status).toBeLessThan(500);
    expect(missing.json.error).toMatch(/text_input/);
    const badShape = await post(`/v2/models/${SERVED}/infer`, { inputs: [{ name: 'text_input', datatype: 'INT32', shape: [1, 1], data: [1] }] });
    expect(badShape.status).toBe(400);
    expect(typeof badShape.json.error).toBe('string');
    const unknown = await post('/v2/models/no-such-model/infer', inferRequest('x'));
    expect(unknown.status).toBeGreaterThanOrEqual(400);
    expect(unknown.status).toBeLessThan(500);
  });
});
