// The CPU runtime for real: setup.sh builds the venv (transformers serve), two tiny chat models are
// made with the serving plugin's fixture (seeds 1 and 2), the runtime's launch() gives the argv and
// exactly that argv is spawned with $PORT (as the local executor does: no shell), both replicas at
// once. Readiness, OpenAI answers (plain, streamed, completions), determinism and the difference
// between the two models are asserted on the live servers; engine() and check() on their own.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { servingExtensionPoints, type RuntimeContext, type RuntimeLaunch, type ServingRuntime } from '@aiplat-plugins/serving/api';
import plugin, { cpuRuntime, optionsSchema, READINESS_PATH, SERVE_SCRIPT } from '../src/index.js';

const run = promisify(execFile);
const repo = path.resolve(import.meta.dirname, '../../..');
const fixture = path.join(repo, 'plugins', 'serving', 'test', 'fixtures', 'make_tiny_chat_model.py');

let python: string;
let work: string;
const runtime = cpuRuntime(() => ({}));

interface Replica {
  context: RuntimeContext;
  launch: RuntimeLaunch;
  child: ChildProcess;
  port: number;
  base: string;
  log: string[];
  readyMs: number;
}
const replicas: Replica[] = [];

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

function contextFor(modelPath: string, revisionDir: string, over: Partial<RuntimeContext> = {}): RuntimeContext {
  return {
    deployment: { id: 'dep-1', name: 'tiny', team: 'team-1' },
    revision: 1,
    servedModelName: 'tiny-chat',
    model: { versionId: 'ver-1', name: 'tiny', number: 1, path: modelPath, metadata: { architecture: 'LlamaForCausalLM' } },
    revisionDir,
    executor: 'local',
    resources: { gpus: 0 },
    replicas: 1,
    options: { dtype: 'auto', seed: 0, threads: 1 },
    maxGpusPerNode: 0,
    ...over,
  };
}

async function makeModel(out: string, seed: number): Promise<string> {
  const { stdout } = await run(python, [fixture, out, '--seed', String(seed)], { timeout: 120_000 });
  return (JSON.parse(stdout.trim().split('\n').pop()!) as { path: string }).path;
}

/** Spawn the launch's argv as the local executor does ($PORT in the env, the working folder, no shell); wait for readiness. */
async function start(context: RuntimeContext): Promise<Replica> {
  const launch = await runtime.launch(context);
  // The serving plugin makes the revision folder before it submits the workload.
  await mkdir(context.revisionDir, { recursive: true });
  const port = await freePort();
  const log: string[] = [];
  const t0 = Date.now();
  const child = spawn(launch.command[0]!, launch.command.slice(1), {
    cwd: launch.workingDir,
    env: { ...process.env, ...launch.env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (b: Buffer) => log.push(b.toString()));
  child.stderr!.on('data', (b: Buffer) => log.push(b.toString()));
  let spawnError: Error | undefined;
  child.on('error', (err) => (spawnError = err));
  const base = `http://127.0.0.1:${port}`;
  const replica: Replica = { context, launch, child, port, base, log, readyMs: 0 };
  replicas.push(replica);
  for (;;) {
    if (spawnError) throw spawnError;
    if (child.exitCode !== null) throw new Error(`the replica exited (${child.exitCode}) before it was ready:\n${log.join('').slice(-3000)}`);
    if (Date.now() - t0 > 240_000) throw new Error(`the replica was not ready after 240 s:\n${log.join('').slice(-3000)}`);
    const ok = await fetch(base + launch.readiness.path, { signal: AbortSignal.timeout(2000) }).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  replica.readyMs = Date.now() - t0;
  return replica;
}

async function post(replica: Replica, route: string, body: Record<string, unknown>): Promise<{ status: number; json: any; text: string; type: string }> {
  const res = await fetch(replica.base + route, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: replica.launch.upstreamModel, ...body }) });
  const text = await res.text();
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {
    /* a stream */
  }
  return { status: res.status, json, text, type: res.headers.get('content-type') ?? '' };
}

const chat = (replica: Replica, content: string, extra: Record<string, unknown> = {}) =>
  post(replica, '/v1/chat/completions', { messages: [{ role: 'user', content }], max_tokens: 12, temperature: 0, ...extra });

/** The `data:` payloads of an SSE answer. */
function events(text: string): string[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('data: '))
    .map((l) => l.slice(6));
}

describe('CPU runtime (transformers serve)', () => {
  let one: Replica;
  let two: Replica;

  beforeAll(async () => {
    const t0 = Date.now();
    const { stdout } = await run('sh', [path.join(repo, 'plugins', 'serving-cpu', 'setup.sh')], { timeout: 900_000, maxBuffer: 64 * 1024 * 1024 });
    python = stdout.trim().split('\n').pop()!;
    const setupMs = Date.now() - t0;
    work = await mkdtemp(path.join(os.tmpdir(), 'aiplat-serve-cpu-'));
    const [m1, m2] = await Promise.all([makeModel(path.join(work, 'models', 'seed1'), 1), makeModel(path.join(work, 'models', 'seed2'), 2)]);
    [one, two] = await Promise.all([start(contextFor(m1, path.join(work, 'rev1'))), start(contextFor(m2, path.join(work, 'rev2'), { revision: 2 }))]);
    console.log(`serving-cpu: setup.sh ${setupMs} ms; replicas ready ${one.readyMs} ms and ${two.readyMs} ms after spawn (started together)`);
  }, 1_200_000);

  afterAll(async () => {
    await Promise.all(
      replicas.map(
        (r) =>
          new Promise<void>((resolve) => {
            if (r.child.exitCode !== null || r.child.signalCode !== null) return resolve();
            const kill = setTimeout(() => r.child.kill('SIGKILL'), 10_000);
            r.child.once('exit', () => {
              clearTimeout(kill);
              resolve();
            });
            r.child.kill('SIGTERM');
          }),
      ),
    );
    if (work) await rm(work, { recursive: true, force: true });
  }, 30_000);

  it('is contributed to serving.runtimes as an OpenAI runtime without GPU, on the local executor', () => {
    const contributed: { ref: unknown; item: ServingRuntime }[] = [];
    plugin.register({
      id: 'serving-cpu',
      manifest: { id: 'serving-cpu' } as never,
      contribute: (ref: unknown, item: unknown) => contributed.push({ ref, item: item as ServingRuntime }),
    } as never);
    expect(contributed).toHaveLength(1);
    expect(contributed[0]!.ref).toBe(servingExtensionPoints.runtimes);
    expect(contributed[0]!.item).toMatchObject({ id: 'cpu', protocol: 'openai', gpu: 'none', executors: ['local'] });
    expect(optionsSchema.properties.dtype).toMatchObject({ enum: ['auto', 'float32', 'bfloat16'], default: 'auto' });
  });

  it('launches the venv python with the launcher; the port only in $PORT; readiness on /health; the engine names the model by its folder', () => {
    const l = one.launch;
    expect(l.command.slice(0, 2)).toEqual([python, SERVE_SCRIPT]);
    expect(l.command).not.toContain(String(one.port));
    expect(l.command.join(' ')).toContain(`--model ${one.context.model.path} `);
    expect(l.readiness.path).toBe(READINESS_PATH);
    expect(l.upstreamModel).toBe(`${one.context.model.path}@main`);
    expect(l.workingDir).toBe(one.context.revisionDir);
    expect(runtime.metricsPath).toBeUndefined();
  });

  it('answers /health 200 once ready, and keeps its caches inside the revision folder', async () => {
    const res = await fetch(one.base + READINESS_PATH);
    expect(res.status).toBe(200);
    expect(existsSync(path.join(one.context.revisionDir, 'cache', 'huggingface', 'hub'))).toBe(true);
    // With HF_HOME there, /v1/models answers (it lists the hub cache: empty).
    const models = await fetch(one.base + '/v1/models');
    expect(models.status).toBe(200);
  });

  it('answers a chat completion', async () => {
    const res = await chat(one, 'hello');
    expect(res.status, res.text).toBe(200);
    expect(res.json.object).toBe('chat.completion');
    expect(res.json.model).toBe(one.launch.upstreamModel);
    expect(typeof res.json.choices[0].message.content).toBe('string');
    expect(res.json.choices[0].message.content.length).toBeGreaterThan(0);
    expect(res.json.usage).toMatchObject({ completion_tokens: 12, prompt_tokens: expect.any(Number), total_tokens: expect.any(Number) });
  });

  it('streams a chat completion as SSE chunks, ending with data: [DONE]', async () => {
    const res = await chat(one, 'hello', { stream: true });
    expect(res.status).toBe(200);
    expect(res.type).toContain('text/event-stream');
    const data = events(res.text);
    expect(data.at(-1)).toBe('[DONE]');
    const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
    expect(chunks.length).toBeGreaterThanOrEqual(2);
    expect(chunks.every((c) => c.object === 'chat.completion.chunk')).toBe(true);
    const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
    expect(text.length).toBeGreaterThan(0);
    // The streamed text is the plain answer's text, but for a trailing incomplete UTF-8 sequence that
    // the plain answer shows as U+FFFD and the stream holds back (this byte-level model emits stray bytes).
    const plain = (await chat(one, 'hello')).json.choices[0].message.content as string;
    expect(plain.startsWith(text)).toBe(true);
    expect(plain.slice(text.length)).toMatch(/^\uFFFD*$/);
    expect(data.filter((d) => d === '[DONE]')).toHaveLength(1);
  });

  it('answers a text completion', async () => {
    const res = await post(one, '/v1/completions', { prompt: 'Once upon a time', max_tokens: 8, temperature: 0 });
    expect(res.status, res.text).toBe(200);
    expect(res.json.object).toBe('text_completion');
    expect(typeof res.json.choices[0].text).toBe('string');
    expect(res.json.usage.completion_tokens).toBe(8);
  });

  it('answers the same prompt the same way twice (greedy), and the seed-2 model differently', async () => {
    const a = await chat(one, 'What is the capital of France?');
    const b = await chat(one, 'What is the capital of France?');
    const c = await chat(two, 'What is the capital of France?');
    expect(c.status, c.text).toBe(200);
    expect(b.json.choices[0].message.content).toBe(a.json.choices[0].message.content);
    expect(c.json.choices[0].message.content).not.toBe(a.json.choices[0].message.content);
    expect(c.json.model).toBe(two.launch.upstreamModel);
  });

  it('refuses a request for another model (400): the /v1 alias must send upstreamModel', async () => {
    const res = await post(one, '/v1/chat/completions', { model: 'tiny-chat', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
    expect(res.status).toBe(400);
  });

  it('reports its engine: available with the venv, unavailable with a reason and the fix when the python is missing', async () => {
    const ok = await runtime.engine('local');
    expect(ok).toMatchObject({ available: true, reason: null });
    expect(ok.version).toMatch(/^transformers 5\.18\.0 \(torch 2\.13\.0/);
    const missing = await cpuRuntime(() => ({ python: path.join(work, 'no-venv', 'bin', 'python') })).engine('local');
    expect(missing.available).toBe(false);
    expect(missing.version).toBeNull();
    expect(missing.reason).toContain('no-venv/bin/python does not exist');
    expect(missing.reason).toContain('setup.sh');
    // A python without transformers: imports fail, the reason says which module.
    const bare = await cpuRuntime(() => ({ python: '/usr/bin/python3' })).engine('local');
    if (existsSync('/usr/bin/python3')) {
      expect(bare.available).toBe(false);
      expect(bare.reason).toMatch(/does not import in \/usr\/bin\/python3: .*No module named/);
    }
    expect((await runtime.engine('docker')).available).toBe(false);
  });

  it('refuses nonsense before anything starts', () => {
    const ctx = (over: Partial<RuntimeContext>) => contextFor('/srv/models/v1', '/srv/rev', over);
    expect(runtime.check!(ctx({}))).toBeUndefined();
    expect(runtime.check!(ctx({ resources: { gpus: 1 } }))).toMatch(/the CPU runtime uses no GPU/i);
    expect(runtime.check!(ctx({ resources: { gpus: 0, gpuMemoryMiB: 4096 } }))).toMatch(/uses no GPU/);
    expect(runtime.check!(ctx({ executor: 'docker' }))).toMatch(/local executor only/);
    expect(runtime.check!(ctx({ resources: { gpus: 0, cpu: 2 }, options: { dtype: 'auto', seed: 0, threads: 8 } }))).toMatch(/threads \(8\)/);
    expect(runtime.check!(ctx({ model: { versionId: 'v', name: 'n', number: 1, path: '/data@x/models/v1', metadata: {} } }))).toMatch(/"@"/);
  });

  it('fills in the defaults and derives threads from resources.cpu', async () => {
    const l = await runtime.launch(contextFor('/srv/models/v1', '/srv/rev', { options: {}, resources: { gpus: 0, cpu: 3.5 } }));
    const arg = (flag: string) => l.command[l.command.indexOf(flag) + 1];
    expect([arg('--dtype'), arg('--seed'), arg('--threads'), arg('--state-dir')]).toEqual(['auto', '0', '3', '/srv/rev']);
  });
});
